"""The audio output supervisor: keeps the player's device open, and when the device or the
sound server goes away, reports it and reopens with backoff while speech waits.

Positions stay absolute across reopenings: frames written to a device that was lost belong to
an older generation, and waiting for them answers False (not heard).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import trio

from playspeak.audio.devicestate import DeviceState
from playspeak.audio.player import Player
from playspeak.backoff import Backoff
from playspeak.errors import AudioDeviceError, leaves
from playspeak.health import DeviceHealth

log = logging.getLogger(__name__)


def _device_error(error: BaseException) -> AudioDeviceError | None:
    """The AudioDeviceError inside trio's exception groups, if that is all there is."""
    found = leaves(error)
    if all(isinstance(e, AudioDeviceError) for e in found):
        return found[0]  # type: ignore[return-value]  # checked just above
    return None


class AudioOutput:
    """A Player kept open. `run` raises if the device cannot be opened at start-up; after that
    it never raises for the device: losses are reported through `on_change(state, error)`."""

    def __init__(
        self,
        player: Player,
        *,
        on_change: Callable[[DeviceState, str], None] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
    ) -> None:
        self.player = player
        self.on_change = on_change
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.state = DeviceState.CLOSED
        self.error = ""
        self.losses = 0
        self._base = 0  # absolute position where the current device's frame 0 is
        self._ready = trio.Event()

    # ---- the sink verbs (see speaker.AudioSink) -----------------------------------------

    @property
    def samplerate(self) -> int:
        return self.player.samplerate

    @property
    def channels(self) -> int:
        return self.player.channels

    @property
    def volume(self) -> float:
        return self.player.volume

    @volume.setter
    def volume(self, value: float) -> None:
        self.player.volume = value

    @property
    def prefill_seconds(self) -> float:
        return self.player.prefill_seconds

    @property
    def frames_written(self) -> int:
        return self._base + self.player.frames_written

    @property
    def frames_read(self) -> int:
        return self._base + self.player.frames_read

    async def wait_ready(self) -> None:
        """Wait while the device is lost."""
        await self._ready.wait()

    async def play(self, pcm: np.ndarray) -> int:
        """Queue PCM, waiting for space, and first for the device if it is lost. Raises
        AudioDeviceError if the device is lost while this call holds PCM for it."""
        await self._ready.wait()
        base = self._base
        try:
            end = await self.player.play(pcm)
        except AudioDeviceError as e:
            if not self.player.running:
                # known lost now (the stream could not start): waiters wait from here on,
                # not from when the supervisor gets round to it
                self._lost(str(e))
            raise
        if base != self._base:
            # The device was lost and reopened while this call waited for space: the start of
            # this audio is gone, so what was just written would be a fragment. Drop it.
            self.player.skip_to(end)
            raise AudioDeviceError(self.error or "the audio device was lost")
        return base + end

    async def pad_until(self, when: float) -> int:
        """Silence so that the next frame written is heard at monotonic `when` (Player's);
        returns the frames it will be late. Raises AudioDeviceError as play() does."""
        await self._ready.wait()
        try:
            return await self.player.pad_until(when)
        except AudioDeviceError as e:
            if not self.player.running:
                self._lost(str(e))
            raise

    async def wait_played(self, position: int) -> bool:
        """True once frame `position` left the device; False if it never will (its device was
        lost). Frames dropped by cancel/skip_to count as done (True)."""
        base = self._base
        if position <= base:
            return position <= 0
        try:
            await self.player.wait_played(position - base)
        except AudioDeviceError:
            return False
        return base == self._base

    async def wait_quiet(self) -> None:
        """Return once the device holds nothing of what was dropped (Player.wait_quiet)."""
        if self.state is DeviceState.OPEN:
            await self.player.wait_quiet()
        else:
            await trio.lowlevel.checkpoint()

    def prepare(self) -> None:
        if self.state is DeviceState.OPEN:
            self.player.prepare()

    def cancel(self) -> int:
        return self.player.cancel() if self.state is DeviceState.OPEN else 0

    def skip_to(self, position: int) -> int:
        if self.state is not DeviceState.OPEN or position <= self._base:
            return 0
        return self.player.skip_to(position - self._base)

    def truncate(self, position: int) -> int:
        if self.state is not DeviceState.OPEN:
            return 0
        return self.player.truncate(max(0, position - self._base))

    def pause(self) -> None:
        self.player.pause()

    def resume(self) -> None:
        self.player.resume()

    @property
    def health(self) -> DeviceHealth:
        return DeviceHealth(self.state, self.player.running, self.error)

    @property
    def stats(self) -> dict[str, Any]:
        return {
            **self.player.stats,
            "state": self.state,
            "error": self.error,
            "losses": self.losses,
        }

    # ---- supervision --------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        backoff = Backoff(self.backoff_initial, self.backoff_max)
        first = True
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.player.run)
                    self._set_state(DeviceState.OPEN, "")
                    if first:
                        first = False
                        task_status.started()
                    backoff.reset()
            except (AudioDeviceError, BaseExceptionGroup) as e:
                error = _device_error(e)
                if error is None:
                    raise
                if first:
                    raise error from None  # nothing to play on at start-up: a clear error
                self._lost(str(error))
            wait = backoff.next()
            log.info("reopening the audio device in %.1f s", wait)
            await trio.sleep(wait)

    def _lost(self, error: str) -> None:
        if self.state is DeviceState.OPEN:
            self._base += self.player.frames_written  # that device's frames are gone
            self.losses += 1
            self._ready = trio.Event()
            self._set_state(DeviceState.LOST, error)
        else:
            self.error = error
            log.debug("audio device still unavailable: %s", error)

    def _set_state(self, state: DeviceState, error: str) -> None:
        self.state, self.error = state, error
        if state is DeviceState.OPEN:
            self._ready.set()
            log.info("audio device %r open (%d Hz)", self.player.device_name, self.samplerate)
        else:
            log.warning("audio device lost: %s", error)
        if self.on_change is not None:
            self.on_change(state, error)
