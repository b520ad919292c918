"""A player that writes a WAV file instead of a sound card: for machines without one.

Same verbs as the sound-card player; nothing is paced, so each utterance "leaves the device" as
soon as it is written.
"""

from __future__ import annotations

import logging
import wave
from pathlib import Path
from typing import Any

import numpy as np
import trio

log = logging.getLogger(__name__)


class WavFilePlayer:
    def __init__(self, path: str | Path, *, samplerate: int = 48000, channels: int = 1) -> None:
        self.path = Path(path)
        self.samplerate = samplerate
        self.channels = channels
        self.volume = 1.0
        self._written = 0
        self._file: wave.Wave_write | None = None
        self.prefill_seconds = 0.0  # a file never runs dry

    @property
    def frames_written(self) -> int:
        return self._written

    @property
    def frames_read(self) -> int:
        return self._written  # a file takes every frame at once

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._file = wave.open(str(self.path), "wb")  # noqa: SIM115 - closed in finally
        self._file.setnchannels(self.channels)
        self._file.setsampwidth(2)
        self._file.setframerate(self.samplerate)
        log.info("audio goes to the WAV file %s", self.path)
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._file.close()

    async def play(self, pcm: np.ndarray) -> int:
        assert self._file is not None
        scaled = np.clip(pcm * self.volume, -1.0, 1.0)
        self._file.writeframes((scaled * 32767).astype("<i2").tobytes())
        self._written += len(pcm)
        await trio.lowlevel.checkpoint()
        return self._written

    async def wait_played(self, position: int) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    async def wait_ready(self) -> None:
        await trio.lowlevel.checkpoint()

    async def drain(self) -> None:
        await trio.lowlevel.checkpoint()

    def cancel(self) -> int:
        return 0

    def skip_to(self, position: int) -> int:
        return 0

    def truncate(self, position: int) -> int:
        return 0

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "device": f"wav:{self.path}",
            "samplerate": self.samplerate,
            "underruns": 0,
            "frames_played": self._written,
        }
