"""The tests' real-time software sound card: `playspeak.testing.soundcard` (shared with bench/)."""

from playspeak.testing.soundcard import (
    RATE,
    SINK,
    SOUND_THRESHOLD,
    PulseNullSink,
    Recorder,
    SoundCardError,
)

__all__ = ["RATE", "SINK", "SOUND_THRESHOLD", "PulseNullSink", "Recorder", "SoundCardError"]
