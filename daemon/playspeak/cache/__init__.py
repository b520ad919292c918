"""The phrase cache: complete service replies kept on disk, keyed by all that shapes the audio."""
