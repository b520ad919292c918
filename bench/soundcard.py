"""The benchmarks' private PulseAudio null sink and recorder: `playspeak.testing.soundcard`
(shared with the tests), under a sink name of their own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from playspeak.testing.soundcard import RATE, Recorder, SoundCardError
from playspeak.testing.soundcard import SOUND_THRESHOLD as THRESHOLD
from playspeak.testing.soundcard import PulseNullSink as _PulseNullSink

__all__ = [
    "RATE",
    "SINK",
    "THRESHOLD",
    "PulseNullSink",
    "Recorder",
    "SoundCardError",
    "in_process_sink",
]

SINK = "benchsink"


class PulseNullSink(_PulseNullSink):
    """A private PulseAudio with one 48 kHz mono null sink named `benchsink`."""

    def __init__(self, sink: str = SINK, rate: int = RATE) -> None:
        super().__init__(sink, rate)


@contextmanager
def in_process_sink() -> Iterator[tuple[PulseNullSink, Recorder]]:
    """The sink and its recorder for a daemon run in this process: the sink's environment is
    set before PortAudio is first loaded (it lists devices once)."""
    with PulseNullSink() as card:
        os.environ.update(card.env)
        with card.recorder() as recorder:
            yield card, recorder
