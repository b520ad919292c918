"""A player that writes a WAV file instead of a sound card: for machines without one.

Same verbs as the sound-card player; nothing is paced, so each utterance "leaves the device" as
soon as it is written. A WAV file holds at most 4 GiB of audio (its sizes are 32-bit): when the
next frames would pass that, the file is closed and the audio goes on in the next one,
`NAME-2.wav`, `NAME-3.wav`, … beside it (about 12 hours each at 48 kHz mono).
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

from playspeak.errors import AudioDeviceError, ConfigError
from playspeak.health import DeviceHealth

log = logging.getLogger(__name__)

# The most audio bytes one WAV file may hold: its RIFF size (data + 36 header bytes) is 32-bit.
MAX_DATA_BYTES = 0xFFFFFFFF - 36


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
        self.max_bytes = MAX_DATA_BYTES  # per file (tests lower it)
        self.files = 0  # files opened so far: the current one is files_path(files)
        self._file_bytes = 0  # audio bytes in the current file

    @property
    def frames_written(self) -> int:
        return self._written

    @property
    def health(self) -> DeviceHealth:
        return DeviceHealth()  # a file is always open and takes every frame

    @property
    def frames_read(self) -> int:
        return self._written  # a file takes every frame at once

    def file_path(self, number: int) -> Path:
        """The `number`th file (1: the configured path; then NAME-2.wav, …)."""
        if number == 1:
            return self.path
        return self.path.with_name(f"{self.path.stem}-{number}{self.path.suffix}")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            self._next_file()
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._close_file()

    def _next_file(self) -> None:
        """Close the current file (if any) and open the next. Raises ConfigError (open_output)."""
        self._close_file()
        path = self.file_path(self.files + 1)
        self._raw = open_output(path)
        self.files += 1
        self._file_bytes = 0
        self._file = wave.open(self._raw, "wb")  # noqa: SIM115 - closed in _close_file
        self._file.setnchannels(self.channels)
        self._file.setsampwidth(2)
        self._file.setframerate(self.samplerate)
        log.info("audio goes to the WAV file %s", path)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    async def play(self, pcm: np.ndarray) -> int:
        assert self._file is not None
        scaled = np.clip(pcm * self.volume, -1.0, 1.0)
        data = (scaled * 32767).astype("<i2").tobytes()
        frame = 2 * self.channels
        while data:
            room = (self.max_bytes - self._file_bytes) // frame * frame
            if room <= 0:
                try:
                    self._next_file()  # this one is full: the audio goes on in the next
                except ConfigError as e:
                    raise AudioDeviceError(str(e)) from None
                continue
            part, data = data[:room], data[room:]
            self._file.writeframes(part)
            self._file_bytes += len(part)
        self._written += len(pcm)
        await trio.lowlevel.checkpoint()
        return self._written

    async def pad_until(self, when: float) -> int:
        """A file is not played in time: a scheduled start is written at once."""
        await trio.lowlevel.checkpoint()
        return 0

    async def wait_played(self, position: int) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    async def wait_ready(self) -> None:
        await trio.lowlevel.checkpoint()

    async def drain(self) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_quiet(self) -> None:
        await trio.lowlevel.checkpoint()

    def prepare(self) -> None:
        """Nothing to open ahead: a file is written at once."""

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
