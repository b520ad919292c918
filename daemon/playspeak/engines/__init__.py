"""The one place where text, a voice and a speed become PCM: the local voice's engines.

The local server's streaming and whole-reply renders, the daemon's direct local voice and the
fallback voice all ask `Synthesizer.pcm` for one sentence at a time (sentences.py splits a
text). espeak-ng runs as a subprocess (spare processes started ahead of need, when `run` is
running); the generated test voice is computed in a worker thread. Under a trio MockClock the
work runs inline, so that virtual time stands still while it is done.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import trio
import trio.testing

from playspeak.engines import espeak, generated
from playspeak.errors import ConfigError

T = TypeVar("T")


class EngineName(enum.Enum):
    """An engine that turns text into PCM."""

    ESPEAK = "espeak"
    GENERATED = "generated"  # a deterministic voice-like signal: for tests, or no espeak-ng


def resolve_engine(mode: str) -> EngineName:
    """The engine that a `synth` setting ("auto", "espeak", "generated") means here."""
    if mode == "generated":
        return EngineName.GENERATED
    if espeak.espeak_available():
        return EngineName.ESPEAK
    if mode == "espeak":
        raise ConfigError("synth = 'espeak' but espeak-ng is not installed")
    return EngineName.GENERATED


def virtual_time() -> bool:
    """Whether trio runs on a MockClock: time leaps while a task waits on a thread or a
    process, so work runs inline there."""
    return isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)


async def cpu(work: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound `work` in a worker thread (inline under a MockClock). Cancellation waits
    for it to finish."""
    if virtual_time():
        await trio.lowlevel.checkpoint()
        return work(*args)
    return await trio.to_thread.run_sync(work, *args)


class Synthesizer:
    """Text → int16 mono PCM with one engine. Owned by the trio thread; `run` (optional) lives
    in a nursery of its owner and keeps espeak-ng processes ready."""

    def __init__(self, mode: str = "auto") -> None:
        self.engine = resolve_engine(mode)
        self.espeak_spares = espeak.EspeakSpares()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep spare espeak-ng processes until cancelled."""
        await self.espeak_spares.run(task_status=task_status)

    async def pcm(self, text: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        """One sentence's samples and their rate. Raises RuntimeError (or OSError) when the
        engine fails; cancellable (a running espeak-ng is killed)."""
        if self.engine is EngineName.ESPEAK:
            if virtual_time():
                return espeak.espeak_pcm_blocking(text, voice, speed)
            return await self.espeak_spares.pcm(text, voice, speed)
        return await cpu(generated.generate, text, voice, speed), generated.RATE
