"""A player that writes a WAV file instead of a sound card: for machines without one.

Same verbs as the sound-card player; nothing is paced, so each utterance "leaves the device" as
soon as it is written.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import wave
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import trio

from playspeak.errors import ConfigError

log = logging.getLogger(__name__)


def open_output(path: Path) -> BinaryIO:
    """Open `path` for writing without following a planted link: created exclusively when new
    (O_EXCL); an existing one is opened with O_NOFOLLOW and truncated only if it is a regular
    file of ours with no other name (no hard link to someone's file). Raises ConfigError
    naming the path and the refusal otherwise. Blocks briefly (local file system)."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            fd = os.open(path, flags)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ConfigError(
                    f"wav output {path} is a symbolic link: refusing to follow it (remove it or "
                    "name another file)"
                ) from None
            raise ConfigError(f"wav output {path}: {e.strerror}") from None
        try:
            _check_own_file(path, os.fstat(fd))
            os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
    except OSError as e:
        raise ConfigError(f"wav output {path}: {e.strerror}") from None
    return io.FileIO(fd, "wb")


def _check_own_file(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"wav output {path} exists and is not a regular file: refusing it")
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"wav output {path} belongs to uid {st.st_uid}, not to us: refusing to overwrite it"
        )
    if st.st_nlink != 1:
        raise ConfigError(
            f"wav output {path} has {st.st_nlink} names (hard links): refusing to overwrite it"
        )


class WavFilePlayer:
    def __init__(self, path: str | Path, *, samplerate: int = 48000, channels: int = 1) -> None:
        self.path = Path(path)
        self.samplerate = samplerate
        self.channels = channels
        self.volume = 1.0
        self._written = 0
        self._file: wave.Wave_write | None = None
        self._raw: BinaryIO | None = None  # the file under `_file` (wave does not close it)
        self.prefill_seconds = 0.0  # a file never runs dry
        self.losses = 0  # a file is never lost

    @property
    def frames_written(self) -> int:
        return self._written

    @property
    def frames_read(self) -> int:
        return self._written  # a file takes every frame at once

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._raw = open_output(self.path)
        try:
            self._file = wave.open(self._raw, "wb")  # noqa: SIM115 - closed in finally
            self._file.setnchannels(self.channels)
            self._file.setsampwidth(2)
            self._file.setframerate(self.samplerate)
            log.info("audio goes to the WAV file %s", self.path)
            task_status.started()
            await trio.sleep_forever()
        finally:
            if self._file is not None:
                self._file.close()
            self._raw.close()

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
