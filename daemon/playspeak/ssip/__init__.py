"""Speech Dispatcher compatibility: an SSIP listener so `spd-say` and SSIP clients speak here."""
