"""The player stage: a sounddevice OutputStream fed from a PcmRing, with MPD's output verbs.

``run()`` opens the device once to check it, but a stream is open and running only while there is
something to play: ``play()`` starts one once the first frames are in the ring, and it is stopped
and closed a moment after the last frame has been heard, or at once when ``cancel()`` dropped
everything. Opening a stream and starting it take milliseconds through ALSA and PulseAudio
(docs/benchmarks.md, "Output streams"), so ``prepare()`` (speech is on its way: the speaker calls
it as it asks for an utterance's audio) has the owner open one ahead, in parallel with the
synthesis, and ``play()`` then only starts it; one not started within PREPARED_SECONDS, or when
``cancel()`` comes first, is closed again. A stream that keeps running between utterances keeps its
device buffer full of silence that new audio queues behind (a device buffer's worth: "Output
streams"); a fresh stream started with the audio already in the ring plays it at once. Closing also
drops what the device still holds after a cancel, no callback runs while nothing plays, the device
is free for others meanwhile, and a sound server restarted in between is simply found again (a
stream left open on a server that went away never starts again: PulseAudio's ALSA plugin waits
forever). ``stop_when_idle=False`` keeps one stream running instead (for devices that are slow to
wake, e.g. HDMI or Bluetooth, which may clip the first syllable).

A stretch starts on a stream with a shallow device buffer (``latency``): a stream takes a full
buffer from the ring at once, so a deep one would hold speech back until that much had arrived.
But on PulseAudio the shallow buffer costs wake-ups: a silent stream costs more CPU the
shallower its buffer (``bench.stream_cpu``: docs/benchmarks.md, "What a running stream
costs"). So with ``steady_latency`` the stretch moves to a stream with that deeper
buffer at its first pause: the shallow stream plays up to a point inside the pause, and once
that has been heard the deep one starts from there, both playing silence meanwhile: the pause
keeps its length (the tests allow one quick buffer either way on a loaded machine).

Threads and ownership: every PortAudio call (open, start, abort, close, device queries) is made
by one owner, the task that runs ``run()``, each in a worker thread under a cancel shield, one
at a time: a cancellation can delay a close but never skip it (a running stream that Python
frees takes its callback with it while PortAudio still calls it: a native crash). The other
verbs only ask the owner (``play()`` asks for a start and waits for its outcome; ``cancel()``
asks for a close) through a PlayerControl (audio/playercontrol.py). The PortAudio callback runs
on PortAudio's thread: it only reads the ring (a short lock), applies the gain, pads with
silence and updates a few counters; it never blocks and never calls into trio except
``TrioToken.run_sync_soon``.

Two decisions live outside this class, free of I/O: the playout clock (audio/playout.py: which
block was read when, so when frame N is heard) that the callback feeds, and the quick→steady
switch policy (audio/switch.py) whose decision the owner acts on.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import trio

from playspeak.errors import AudioDeviceError
from playspeak.schedule import frames_until

from .devices import NO_DEVICES_HINT, list_devices, resolve_device, sounddevice
from .playercontrol import Command, PlayerControl
from .playout import PlayoutClock
from .ring import PcmRing
from .switch import StartSteadyAt, SteadySwitch, SwitchAt

__all__ = ["Player", "list_devices", "resolve_device"]

log = logging.getLogger(__name__)

BLOCK_SECONDS = 0.010  # callback period: small enough for prompt cancel, large enough for Python
_STALL_SECONDS = 2.0  # no callback for this long while open: the device or server is gone
_WATCH_SECONDS = 0.25  # how often run() looks for a stalled or idle stream (4 wake-ups a second)
# While no stream is open (stop_when_idle), the device is opened and closed this often to see
# that it is still there: a sound server that went away is then reported (and waited for)
# before speech is sent to it, not found gone by the next announcement.
IDLE_CHECK_SECONDS = 2.0
_REFILL_DIVISOR = 4  # a full ring is topped up once a quarter of it is free again
# Silence after the last frame was heard before the stream stops: utterances queued back to
# back (pipelined) keep it running; a restart is cheap ("Output streams" in
# docs/benchmarks.md), so this can stay short.
IDLE_STOP_SECONDS = 0.2
# A stream opened by prepare() and not started within this long is closed again (the speech
# did not come: it failed, or its service is slow; play() then opens one itself).
PREPARED_SECONDS = 1.0
_STEADY_BLOCKS = 2  # the steady stream's callback block, in quick-stream blocks
# A scheduled start (pad_until) opens its stream this long before its instant: time to start
# it on silence and let it settle (_SCHEDULE_SETTLE beyond the stream's prefill) before the
# rest of the silence is reckoned from a block it played.
SCHEDULE_LEAD_SECONDS = 0.3
_SCHEDULE_SETTLE = 0.1


class Player:
    """Plays float32 PCM blocks on one output device; see the module docstring for threads.

    `samplerate` None means the device's default rate; `blocksize` 0 means 10 ms at that rate
    (a fixed block: prompt cancel and pause, while Python's per-callback cost stays small).
    `latency` is PortAudio's suggested latency ("low", "high" or seconds). Positions are
    absolute frame counts since the player was created (``play`` returns them).
    """

    def __init__(
        self,
        *,
        device: str | int | None = None,
        samplerate: int | None = None,
        channels: int = 1,
        blocksize: int = 0,
        latency: str | float = "low",
        buffer_seconds: float = 2.0,
        stop_when_idle: bool = True,
        steady_latency: float = 0.0,
        idle_check_seconds: float = IDLE_CHECK_SECONDS,
    ) -> None:
        # Settings, read by trio and the owner's worker thread, never by the callback; the
        # owner's _open (in its worker thread, while the owner awaits it) sets the two that
        # the device decides:
        self._device_spec = device
        self.samplerate = samplerate or 0  # 0 until _open took the device's default rate
        self.channels = channels
        self.blocksize = blocksize  # 0 until _open made it 10 ms at the rate
        # a number that came as text (configuration files) is seconds; "low"/"high" stay names
        with contextlib.suppress(ValueError):
            latency = float(latency)
        self._latency_setting = latency
        self._buffer_seconds = buffer_seconds
        self.stop_when_idle = stop_when_idle
        self.steady_latency = steady_latency  # 0: a stretch stays on its first stream
        self.idle_check_seconds = idle_check_seconds  # 0: the idle device is not checked
        # No field below has a lock: the ring's own lock guards the PCM, and every other field
        # the PortAudio thread touches is a single load or store whose staleness costs one
        # block at most (the order of the owner's writes is what matters).
        #
        # Trio thread only (the callback never reads them); `_open`, on the owner's worker
        # thread while the owner awaits it, also writes the first three:
        self.device_name = ""
        self.latency = 0.0  # the quick (first) stream's reported output latency, seconds
        self._opened = 0  # streams opened: each one's callback knows its number
        self._running = False  # run() sets it while the owner task lives
        self._died = trio.Event()  # the callback sets only the run's own (bound in _open)
        self._changed = trio.Event()  # set (and replaced) whenever waiters should look again
        self._starts = 0  # streams started (status)
        self._switches = 0  # quick→steady switches made (status)
        self._checked_at = 0.0  # monotonic time the idle device was last opened to check it
        self._stream: Any = None  # the open stream; only the owner opens and closes streams
        # The verbs' requests to the owner task, and its one wake-up (audio/playercontrol.py);
        # the field is set once here: the PortAudio thread only passes its `wake` to trio.
        self._control = PlayerControl()
        # Written by the owner task (the ring in _open, on its worker thread); read by the
        # PortAudio thread:
        self._token: trio.lowlevel.TrioToken | None = None  # set before any stream opens
        self._ring: PcmRing | None = None  # replaced only while no stream is open
        self._stream_latency = 0.0  # the open stream's reported latency
        self._active = False  # the stream is started; cleared *before* a deliberate abort
        self._steady = False  # the open stream is the steady (deep-buffered) one
        self._feeding = 0  # the stream whose callback reads the ring (others play silence)
        # Written by trio (the owner and the verbs), read by the PortAudio thread:
        self._switch = SteadySwitch()  # the switch plan; the callback reads its `at` only
        self._paused = False  # pause()/resume(); the callback plays silence while set
        self._volume = 1.0  # the volume setter; the callback scales each block by it
        self._expecting = False  # an utterance is being fed: running dry is an underrun
        self._wake_at = 0  # wake trio once the read position reaches this (lowest waiter's)
        # Written by both, each write a whole value:
        self._want_wake = False  # trio arms it, the callback disarms it as it wakes trio
        self._switch_signalled = False  # the callback sets it; trio resets it per switch point
        self._failure = ""  # the owner's reason, or the callback's just before it aborts
        self._last_callback = 0.0  # the callback's stamp; the owner's when a stream starts
        # Written by the PortAudio thread, read by trio (counters and stamps: a torn or stale
        # read is harmless; trio reacts to them only after a wake-up through the token):
        self._underflows = 0  # output_underflow status flags
        self._starved = 0  # times the ring ran dry while more audio was expected
        self._wakeups = 0  # times the callback woke the trio side
        self._clock = PlayoutClock()  # what was read and when it is heard (audio/playout.py)
        # Private to one side:
        self._thresholds: list[int] = []  # trio: every waiter's wake position
        self._starving = False  # callback: inside one dry spell
        self._dropped: deque[tuple[int, int]] = deque(maxlen=32)  # trio: (after, upto] dropped

    # --- lifetime: the owner task ---------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Open the device (and, with stop_when_idle, close it again until there is something
        to play; else start it), report started, then own every stream until cancelled.

        Raises AudioDeviceError if the device cannot be opened or started, or the stream dies
        (callback error, device or server gone); the owner may call run() again to reopen.
        On cancellation the stream is closed first (shielded: never skipped).
        """
        self._token = trio.lowlevel.current_trio_token()
        self._died = trio.Event()
        self._failure = ""
        self.cancel()  # audio left from an earlier run is stale
        self._switch.refused = ""  # a device that refused may take a second stream now
        self._control.take(Command.START)  # (a start asked of an earlier run is stale)
        try:
            await self._open_stream()  # the device works
            self._checked_at = time.monotonic()
            self._running = True
            if self.stop_when_idle:
                await self._close_stream()  # opened again for each stretch of speech
            else:
                await self._start()
            task_status.started()
            await self._watch()
        finally:
            self._running = False
            self._control.take(Command.START)
            self._wake()  # waiters see the player closed
            await self._close_stream(abort=False)

    async def _portaudio(self, fn: Callable[..., Any], *args: Any) -> Any:
        """The owner task only: one PortAudio call in a worker thread, shielded, so that a
        cancellation can neither skip it nor lose its result (to_thread.run_sync checkpoints
        before it starts the worker)."""
        with trio.CancelScope(shield=True):
            return await trio.to_thread.run_sync(fn, *args)

    async def _open_stream(self, steady: bool = False) -> Any:
        """Owner: open a stream (not started) and make it the one that reads the ring. Any
        stream open before is the caller's to close (the steady switch keeps the quick one
        playing silence until the steady one runs)."""
        opened = await self._portaudio(self._open, self._died, steady)
        # from here on the stream is ours to close: nothing may checkpoint before it is kept
        self._stream, self._feeding, self._stream_latency = opened, self._opened, opened.latency
        return opened

    def _open(self, died: trio.Event, steady: bool = False) -> Any:
        """Worker thread (called by the owner only): resolve the device, build the ring (kept
        if it fits: it may hold frames to play; replaced only when its size changes, which a
        switch to the steady stream at the same rate never does), open a stream
        (not started): the quick one, or the steady one with the deeper buffer. Its callback
        reads the ring once `_feeding` is its number."""
        sd = sounddevice()
        index = resolve_device(self._device_spec)
        try:
            info = sd.query_devices(index, "output") if index is not None else None
            info = info or sd.query_devices(kind="output")
        except (sd.PortAudioError, ValueError) as e:
            raise AudioDeviceError(f"no default output device ({e}): {NO_DEVICES_HINT}") from e
        self.device_name = info["name"]
        rate = self.samplerate or int(info["default_samplerate"])
        blocksize = self.blocksize or round(rate * BLOCK_SECONDS)
        latency = self.steady_latency if steady else self._latency_setting
        self._opened += 1
        number = self._opened
        capacity = max(1, round(rate * self._buffer_seconds))
        ring = self._ring
        if ring is None or (ring.capacity, ring.channels) != (capacity, self.channels):
            self._ring = PcmRing(capacity, self.channels)
        self._last_callback = time.monotonic()
        try:
            stream = sd.OutputStream(
                device=index,
                samplerate=rate,
                channels=self.channels,
                dtype="float32",
                blocksize=blocksize * _STEADY_BLOCKS if steady else blocksize,
                latency=latency,
                callback=lambda outdata, frames, time_info, status: self._callback_of(
                    number, outdata, frames, time_info, status
                ),
                # bound to this run's event: a stream closed earlier must not end a later run
                finished_callback=lambda: self._finished_callback(died, number),
            )
        except (sd.PortAudioError, ValueError) as e:
            raise AudioDeviceError(
                f"cannot open output device {info['name']!r} at {rate} Hz, {self.channels} "
                f"channel(s): {e}; `playspeak devices` lists what is available"
            ) from e
        self.samplerate, self.blocksize = rate, blocksize
        if not steady:
            self.latency = float(stream.latency)
        return stream

    async def _start(self) -> None:
        """Owner: open (if closed) and start the stream: the ring's frames play at once.
        Raises AudioDeviceError if the device refuses (run() then ends with it)."""
        sd = sounddevice()
        try:
            if self._stream is None:
                await self._open_stream()
            await self._portaudio(self._stream.start)
        except AudioDeviceError as e:
            self._fail(str(e))
            raise
        except sd.PortAudioError as e:
            self._fail(f"cannot start output device {self.device_name!r}: {e}")
            raise AudioDeviceError(self._failure) from e
        self._last_callback = time.monotonic()
        self._active = True
        self._starts += 1
        self._control.speech_came()
        self._wake()  # play() waits for the outcome

    async def _close_stream(self, *, abort: bool = True) -> None:
        """Owner: close the stream, if one is open: aborted (what the device holds is dropped)
        or stopped (played out). `_active` is cleared first, so that its finished callback is
        not taken for a death. Shielded, and the field is cleared only with the close done."""
        stream = self._stream
        if stream is None:
            return
        self._active = False
        self._end_stretch()
        await self._portaudio(_abort_and_close if abort else _close, stream)
        self._stream = None

    def _fail(self, reason: str) -> None:
        """The stream cannot go on: run() ends with `reason`."""
        self._failure = reason
        self._died.set()
        self._control.wake()

    async def _watch(self) -> None:
        """The owner's loop; returns never: start a stream when play() asks, close it when
        idle (see _close_if_idle), switch to the steady one at a pause; raise AudioDeviceError
        once the stream has died or stalled."""
        while True:
            due = self._switch.due
            # (at least 2 ms: a due switch waits for the callback's progress, not a spin)
            wait = _WATCH_SECONDS if due is None else max(0.002, due - time.monotonic())
            await self._control.wait(min(wait, _WATCH_SECONDS))
            if self._died.is_set():
                reason = self._failure or "the device stopped"
                raise AudioDeviceError(f"audio stream on {self.device_name!r} ended: {reason}")
            if self._control.take(Command.START):
                if not self._active and self._ring is not None and self._ring.used:
                    await self._start()
                self._wake()
                continue
            if not self._active:
                await self._keep_prepared()
            stream = self._stream
            if stream is None:
                await self._check_idle_device()
                continue
            if not self._active:
                continue  # prepared: waits for play() to start it
            silent_for = time.monotonic() - self._last_callback
            if self._failure and not stream.active:
                # the callback failed and aborted its stream; its finished callback, which
                # reports that, may not have reached the trio thread yet: the same error
                raise AudioDeviceError(
                    f"audio stream on {self.device_name!r} ended: {self._failure}"
                )
            if silent_for > _STALL_SECONDS or not stream.active:
                raise AudioDeviceError(
                    f"audio stream on {self.device_name!r} stalled ({silent_for:.1f} s without "
                    "a callback): the device or sound server is gone"
                )
            if self.stop_when_idle:
                await self._close_if_idle()
                if not self._active:
                    await self._keep_prepared()  # cancelled, with the next speech on its way
                else:
                    await self._toward_steady()

    async def _check_idle_device(self) -> None:
        """Owner: no stream is open (idle): every `idle_check_seconds`, open one and close it
        again; one that cannot be opened raises AudioDeviceError (run() ends: the device is
        lost, and waited for). A little work through ALSA and PulseAudio ("Output streams" in
        docs/benchmarks.md)."""
        interval = self.idle_check_seconds
        if not (interval and self.stop_when_idle):
            return
        if time.monotonic() - self._checked_at < interval:
            return
        self._checked_at = time.monotonic()
        if self._ring is not None and self._ring.used:
            return  # a start is wanted: that open is the check
        await self._open_stream()
        await self._close_stream()

    async def _keep_prepared(self) -> None:
        """Owner, while no stream runs: a stream open (not started) while speech is expected
        (prepare()), none otherwise."""
        expected = self._control.open_wanted(time.monotonic())
        if expected and self._stream is None:
            await self._open_stream()
            self._checked_at = time.monotonic()  # that open was the idle device's check
        elif not expected and self._stream is not None:
            await self._close_stream()
        else:
            return
        self._wake()  # waiters on the stream's state (until()) look again

    async def _close_if_idle(self) -> None:
        """Owner: close the stream once nothing has played for IDLE_STOP_SECONDS after the
        device latency, or at once after cancel() emptied the ring (dropping what the device
        holds)."""
        urgent = self._control.take(Command.STOP_NOW)
        if not self._idle():
            return
        quiet_for = self._clock.quiet_for(time.monotonic())
        if not urgent and quiet_for < self._stream_latency + IDLE_STOP_SECONDS:
            return
        await self._close_stream()
        self._wake()  # play() may be waiting for a fresh start (_fresh_if_drained)

    def _end_stretch(self) -> None:
        """The next stretch starts on a quick stream again; a planned switch is void."""
        self._steady = False
        self._switch.forget()

    async def _toward_steady(self) -> None:
        """Owner, with a stream running: do what the switch policy (audio/switch.py) decides:
        plan the switch at the next pause, or make it once the quick stream has played up to
        that point and it is being heard."""
        ring = self._ring
        if ring is None:
            return
        decision = self._switch.decide(
            ring,
            self._clock,
            rate=self.samplerate,
            blocksize=self.blocksize,
            quick_latency=self.latency,
            prefill_seconds=self.prefill_seconds,
            steady_latency=self.steady_latency,
            on_steady=self._steady,
            now=time.monotonic(),
        )
        if isinstance(decision, SwitchAt):
            self._switch_signalled = False  # the callback wakes us when it gets there
        elif isinstance(decision, StartSteadyAt) and time.monotonic() >= decision.when:
            await self._switch_to_steady()  # (before it, _watch wakes at the due time)

    async def _switch_to_steady(self) -> None:
        """Owner: open and start the steady stream where the quick one stopped; the quick one
        plays silence from then on and is closed. A device that refuses a second stream (an
        ALSA hw device without dmix is busy) keeps the quick one: it goes on from the switch
        point, and no switch is tried again until run() restarts."""
        sd = sounddevice()
        quick = (self._stream, self._feeding, self._stream_latency)
        self._switch.forget()
        try:
            # from here the quick stream's callback plays silence (`_feeding` moved on)
            steady = await self._open_stream(steady=True)
        except AudioDeviceError as e:
            self._keep_quick(quick, f"cannot open a second stream: {e}")
            return
        self._steady = True  # before its first callback: its latency is not a quick one's
        try:
            await self._portaudio(steady.start)
        except sd.PortAudioError as e:
            self._keep_quick(quick, f"cannot start a second stream: {e}")
            await self._portaudio(_abort_and_close, steady)
            return
        self._switches += 1
        self._last_callback = time.monotonic()
        await self._portaudio(_abort_and_close, quick[0])

    def _keep_quick(self, quick: tuple[Any, int, float], reason: str) -> None:
        """The steady stream is not to be had: the quick one (stream, number, latency) plays
        on from the switch point."""
        self._stream, self._feeding, self._stream_latency = quick
        self._steady = False
        self._switch.refuse(reason)
        log.info("audio: staying on the first stream (%s)", reason)

    def _idle(self) -> bool:
        ring = self._ring
        return ring is not None and ring.used == 0 and not self._expecting

    # --- the PortAudio thread -----------------------------------------------------------

    def _callback_of(
        self, number: int, outdata: np.ndarray, frames: int, time_info: Any, status: Any
    ) -> None:
        """PortAudio thread: stream `number`'s callback. One that is being replaced plays
        silence until it is closed."""
        if number == self._feeding:
            self._callback(outdata, frames, time_info, status)
        else:
            outdata.fill(0)

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio thread: fill one block from the ring; never blocks, never calls trio."""
        try:
            now = time.monotonic()
            self._last_callback = now
            if status.output_underflow:
                self._underflows += 1
            ring = self._ring
            if self._paused or ring is None:
                outdata.fill(0)
                return
            switch_at = self._switch.at
            start, count = ring.read_block(outdata, switch_at)
            if switch_at is not None and start + count >= switch_at:
                outdata[count:].fill(0)  # inside the pause: silence until the steady stream
                if not self._switch_signalled:
                    self._switch_signalled = True
                    self._call_trio(self._control.wake)  # the owner's switch is due
            elif count < frames:
                outdata[count:].fill(0)
                if self._expecting and not self._starving:
                    self._starved += 1
                self._starving = self._expecting
            else:
                self._starving = False
            if not count:
                return
            if self._volume != 1.0:
                outdata[:count] *= self._volume
            self._clock.read(
                start,
                count,
                now,
                time_info.outputBufferDacTime,
                time_info.currentTime,
                self._stream_latency,
                quick=not self._steady,
            )
            if self._want_wake and start + count >= self._wake_at:
                self._want_wake = False
                self._wakeups += 1
                self._call_trio(self._wake)
        except Exception as e:
            self._failure = f"callback failed: {e!r}"
            raise sounddevice().CallbackAbort from e

    def _finished_callback(self, died: trio.Event, number: int) -> None:
        """PortAudio thread: stream `number` became inactive (stopped, aborted or failed).
        Closed when idle, or replaced by the steady one, it is not dead: `_active` was cleared,
        or `_feeding` moved on, before the abort."""
        if self._active and number == self._feeding:
            self._call_trio(died.set)
            self._call_trio(self._control.wake)
        self._call_trio(self._wake)

    def _call_trio(self, fn: Callable[[], object]) -> None:
        token = self._token
        if token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(fn)

    # --- trio side: the verbs -----------------------------------------------------------

    @property
    def prefill_seconds(self) -> float:
        """Audio a stretch's (quick) stream takes from the ring at once when it starts: its device
        buffer (as last reported: PulseAudio keeps more than it was asked for, see "Output streams"
        in docs/benchmarks.md) and a block. An utterance must have that much beyond what covers the
        wait for its next chunk, or the callback pads the device buffer with silence (a gap)
        although the chunk came in time."""
        if not self.samplerate:
            return 0.0
        return max(self.latency, self._clock.quick_latency) + self.blocksize / self.samplerate

    @property
    def frames_written(self) -> int:
        """Absolute position after the last frame handed to play()."""
        return self._ring.frames_written if self._ring else 0

    @property
    def frames_read(self) -> int:
        """Absolute position after the last frame the callback took (heard, or about to be)."""
        return self._ring.frames_read if self._ring else 0

    def prepare(self) -> None:
        """Speech is on its way: have the owner open a stream now (not started), so that the
        first play() only starts it. No-op while a stream plays on (the speech follows in it)
        and with stop_when_idle off. Returns at once; the stream is closed again by cancel()
        or if no play() starts it within PREPARED_SECONDS."""
        closing = self._control.pending(Command.STOP_NOW)
        if not self.stop_when_idle or (self._active and not closing):
            return
        self._control.keep_open_until(time.monotonic() + PREPARED_SECONDS)

    async def play(self, pcm: np.ndarray) -> int:
        """Queue `pcm` (frames, channels) float32, waiting for space as the device plays.

        Returns the absolute position after its last frame (for wait_played). Cancellable:
        frames already queued stay queued (cancel() drops them), and nothing more is written
        once the caller is cancelled. One task should feed. Raises AudioDeviceError if the
        stream cannot be started or the player stops.
        """
        ring = self._live_ring()
        await trio.lowlevel.checkpoint()
        samples = np.asarray(pcm, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples.reshape(-1, 1)
        if samples.shape[1] != self.channels:
            raise ValueError(f"expected (frames, {self.channels}) samples, got {samples.shape}")
        refill = max(1, ring.capacity // _REFILL_DIVISOR)
        await self._fresh_if_drained(ring)
        offset = 0
        while True:
            # A wait below may have ended together with a cancel (cancel(), truncate()):
            # nothing more of a cancelled caller's audio may follow what was dropped.
            await trio.lowlevel.checkpoint_if_cancelled()
            offset += ring.write(samples[offset:])
            if offset:
                self._expecting = True
            if not self._active and ring.used:
                await self._started(ring)
            if offset >= len(samples):
                return ring.frames_written
            # Wake once a good share of the ring is free rather than after every block (or
            # every small decoded frame): the trio loop then runs a few times a second while a
            # long utterance plays, not 100. The ring stays at least 3/4 full meanwhile.
            wake_at = ring.frames_written - ring.capacity + refill
            await self._wait_until(lambda: ring.free >= refill, wake_at)

    async def pad_until(self, when: float) -> int:
        """Write silence so that the next frame written is heard at monotonic time `when` (a
        scheduled start: schedule.py); returns how many frames late that next frame will be
        (0: on time). Waits until shortly before `when`, starts a stream on silence, and
        reckons the rest of the silence from a block that stream has played, so the device's
        output latency and the stream's start-up are both allowed for. No switch to the steady
        stream happens before that frame (it would move it). Cancellable like play()."""
        await trio.sleep(max(0.0, when - SCHEDULE_LEAD_SECONDS - time.monotonic()))
        ring = self._live_ring()
        rate = self.samplerate
        self._switch.forget()
        self._switch.floor = None  # no switch until the frame after the silence is written
        try:
            if not (self._active and ring.used):
                # no stream plays audio whose blocks tell the DAC time: start one on silence
                ahead = when - time.monotonic()
                if ahead <= 0:
                    return round(-ahead * rate)
                first = ring.frames_written
                lead = min(ahead, self.prefill_seconds + _SCHEDULE_SETTLE)
                await self.play(np.zeros((round(lead * rate), self.channels), np.float32))
                # a block read after the stream's start-up burst: its DAC time is a steady one
                settled = first + round(rate * (self.prefill_seconds + 2 * BLOCK_SECONDS))
                settled = min(settled, ring.frames_written)
                await self._wait_until(lambda: ring.frames_read >= settled, settled)
            block = self._clock.last_block
            if block is None:  # (no block played: nothing to reckon from)
                return 0
            missing = frames_until(when, block.start, block.heard, rate, ring.frames_written)
            if missing > 0:
                await self.play(np.zeros((missing, self.channels), np.float32))
            return max(0, -missing)
        finally:
            self._switch.floor = ring.frames_written

    async def _fresh_if_drained(self, ring: PcmRing) -> None:
        """New audio for a stream that has played out everything it had would queue behind
        the silence now filling the device's buffer (40 ms on the quick stream, 150 ms on the
        steady one): ask the owner to close it first, so that a fresh stream starts with the
        audio ("A fresh stream for audio after a drained one" in docs/benchmarks.md). Before
        the write, so the callback cannot have taken any of it."""
        while self._active and self.stop_when_idle and self._idle():
            if self._clock.quiet_for(time.monotonic()) < self._stream_latency:
                return  # the last sound is still in the device: follow it seamlessly
            self._control.ask(Command.STOP_NOW)
            event = self._changed
            await event.wait()
            self._live_ring()

    async def _started(self, ring: PcmRing) -> None:
        """Ask the owner for a running stream and wait for the outcome (a few ms)."""
        while not self._active and ring.used:
            self._control.ask(Command.START)
            event = self._changed
            await event.wait()
            self._live_ring()  # the owner failed to start it: run() is ending

    async def wait_played(self, position: int) -> None:
        """Return once frame `position` has left the device, i.e. was consumed by the callback
        and the device latency has passed; at once for frames dropped by cancel() or skip_to().
        A position not written yet is waited for too (an utterance's first frame, asked for
        before it is written).

        Waiting for exactly the last frame written ends the utterance: the ring running dry
        after it is not counted as an underrun. Cancellable; raises AudioDeviceError if the
        stream dies meanwhile. Accuracy: within a block, later if the trio loop was busy.
        """
        ring = self._live_ring()
        await trio.lowlevel.checkpoint()
        if position == ring.frames_written:
            self._expecting = False
        if position <= 0 or self._was_dropped(position):
            return
        await self._wait_until(
            lambda: ring.frames_read >= position or self._was_dropped(position), position
        )
        heard = self._clock.heard_at(position, self.samplerate)
        if self._was_dropped(position) or heard is None:
            return
        await trio.sleep(max(0.0, heard - time.monotonic()))

    async def drain(self) -> None:
        """Wait until everything written so far has been heard (wait_played of the end)."""
        await self.wait_played(self.frames_written)

    async def wait_quiet(self) -> None:
        """Return once what the device held at the call has left it: the stream was closed
        (cancel() closes it at once) or its latency has passed. At once when none plays."""
        await trio.lowlevel.checkpoint()
        with trio.move_on_after(self._stream_latency):
            while self._active:
                event = self._changed
                await event.wait()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds, looking again at each change the player wakes its
        waiters for: a stream started, or closed when idle or cancelled; a prepared stream
        opened or closed; frames played up to a waiter's position, or dropped; run() ending.
        So `condition` should look at that state (e.g. ``stats["stream_open"]``); a counter
        or clock of the callback's is seen only at the next such change. Cancellable."""
        await trio.lowlevel.checkpoint()
        while not condition():
            event = self._changed
            await event.wait()

    def cancel(self) -> int:
        """Drop everything buffered; returns the number of frames dropped.

        Audio stops within one callback block: the owner closes the stream at once, which
        drops what the device holds too. Waiters for the dropped frames return at once.
        """
        self._expecting = False
        self._switch.forget()  # the pause it was planned in is gone
        self._control.unprepare()  # a prepared stream is not wanted any more
        ring = self._ring
        if ring is None:
            return 0
        dropped = ring.clear()
        if dropped:
            self._dropped.append((ring.frames_written - dropped, ring.frames_written))
        if self._active:
            # close the stream now: that also drops what the device holds
            self._control.ask(Command.STOP_NOW)
        self._wake()
        return dropped

    def skip_to(self, position: int) -> int:
        """Drop the buffered frames before absolute `position`; later frames play on seamlessly
        (cancelling the oldest utterance while the next is queued). Returns frames dropped;
        waiters for them return at once."""
        ring = self._ring
        if ring is None:
            return 0
        dropped = ring.discard_until(position)
        if dropped:
            self._switch.forget()
            upto = min(position, ring.frames_written)  # where the read position now is
            self._dropped.append((upto - dropped, upto))
            if upto == ring.frames_written:
                self._expecting = False  # nothing left of the utterance being fed
                if self._active:
                    self._control.ask(Command.STOP_NOW)
            self._wake()
        return dropped

    def truncate(self, position: int) -> int:
        """Drop the buffered frames from absolute `position` on (an utterance queued behind
        the one playing is cancelled); earlier frames play on untouched and the next write
        goes at `position` (or at the read position, if the device has got past it). Returns
        the number of frames dropped. The frames dropped end what was being fed: a feeder
        must not write more of it (its caller is cancelled first)."""
        ring = self._ring
        if ring is None:
            return 0
        dropped = ring.truncate(position)
        end = ring.frames_written
        # positions from `end` on will be written again: they are no longer "dropped"
        kept = [(after, min(upto, end)) for after, upto in self._dropped if after < end]
        self._dropped.clear()
        self._dropped.extend(kept)
        self._expecting = False
        if self._switch.at is not None and self._switch.at >= end:
            self._switch.forget()
        self._wake()
        return dropped

    def pause(self) -> None:
        """Output silence without consuming; what is buffered stays for resume()."""
        self._paused = True

    def resume(self) -> None:
        """Continue exactly where pause() stopped."""
        self._paused = False

    @property
    def steady_refused(self) -> str:
        """Why the device would not take the steady stream in this run ("": it did, or no
        switch was tried)."""
        return self._switch.refused

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def running(self) -> bool:
        """True from run()'s start to its end (the device opened, not lost)."""
        return self._running

    @property
    def volume(self) -> float:
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"volume must be within 0..1, not {value}")
        self._volume = float(value)

    @property
    def stats(self) -> dict[str, Any]:
        """Counters for `status` and benchmarks; cheap, no I/O."""
        return {
            "device": self.device_name,
            "samplerate": self.samplerate,
            "channels": self.channels,
            "blocksize": self.blocksize,
            "latency": self.latency,
            "dac_latency": self._clock.latency,
            "underruns": self._underflows + self._starved,
            "device_underflows": self._underflows,
            "starved": self._starved,
            "frames_played": self._clock.frames_played,
            "wakeups": self._wakeups,
            "stream_starts": self._starts,
            "stream_active": self._active,
            "stream_open": self._stream is not None,
            "steady": self._steady,
            "steady_switches": self._switches,
            "steady_refused": self.steady_refused,
            "buffered": self._ring.used if self._ring else 0,
            "paused": self._paused,
            "volume": self._volume,
            "running": self._running,
        }

    # --- helpers ------------------------------------------------------------------------

    def _live_ring(self) -> PcmRing:
        if not self._running or self._ring is None:
            reason = f": {self._failure}" if self._failure else ""
            raise AudioDeviceError(f"the audio output is not running{reason}")
        return self._ring

    async def _wait_until(self, ready: Callable[[], bool], wake_at: int) -> None:
        """Sleep until `ready()`, re-checking whenever cancel() and the like wake us, or the
        callback once the read position reached `wake_at` (the lowest of all waiters')."""
        self._thresholds.append(wake_at)
        try:
            while True:
                event = self._changed
                self._wake_at = min(self._thresholds)
                self._want_wake = True  # armed before the check, so no wake-up can be missed
                if ready():
                    return
                await event.wait()
                self._live_ring()
        finally:
            self._thresholds.remove(wake_at)

    def _wake(self) -> None:
        event, self._changed = self._changed, trio.Event()
        event.set()

    def _was_dropped(self, position: int) -> bool:
        return any(after < position <= upto for after, upto in self._dropped)


def _abort_and_close(stream: Any) -> None:
    """Worker thread: drop what the device holds and close (errors ignored, as in _close)."""
    sd = sounddevice()
    with contextlib.suppress(sd.PortAudioError):
        stream.abort()
    with contextlib.suppress(sd.PortAudioError):
        stream.close()


def _close(stream: Any) -> None:
    """Worker thread: let the device play out what it holds, then close (errors ignored:
    a dead device cannot be closed more cleanly)."""
    sd = sounddevice()
    with contextlib.suppress(sd.PortAudioError):
        stream.stop()
    with contextlib.suppress(sd.PortAudioError):
        stream.close()
