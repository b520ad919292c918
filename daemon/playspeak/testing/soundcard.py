"""A real-time software sound card: a private PulseAudio null sink and a recorder of its
monitor, for tests and benchmarks (the method of docs/benchmarks.md).

Everything started here is stopped by its own pid, never by name, and dies with the process
that started it (setpriv --pdeathsig), so a test run killed or cancelled leaves no server
behind. The recorder reads parec's
output in a thread of its own (test and benchmark code, not the daemon) and stamps every chunk
with time.monotonic(); its sample indices are absolute, also after trim().
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trio

SINK = "testsink"
RATE = 48000
READY_TRIES = 100  # pactl info attempts, 50 ms apart: a process-readiness check, 5 s at most
SOUND_THRESHOLD = 300  # |int16| above this is sound (the benchmarks' method: docs/benchmarks.md)
# A command prefix: the server gets SIGTERM when the thread that started it ends, however it
# ends (util-linux, in every Debian).
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM"]


def terminate(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM `pid`, wait until it ended (bounded), then SIGKILL. Never by name."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _gone(pid):
                return
            time.sleep(0.01)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # a zombie has ended


class SoundCardError(RuntimeError):
    """The private PulseAudio could not be started or used."""


class PulseNullSink:
    """A private PulseAudio (own XDG_RUNTIME_DIR) with one null sink at 48 kHz mono.

    ``start()`` sets nothing in os.environ; ``env`` holds what clients need. Stopped by its
    own pid, never by name. ``external()`` wraps a server someone else runs.
    """

    def __init__(self, sink: str = SINK, rate: int = RATE, channels: int = 1) -> None:
        self.sink = sink
        self.rate = rate
        self.channels = channels
        self.runtime_dir: Path | None = None
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owned = True

    def __enter__(self) -> PulseNullSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    def external(cls, sink: str = SINK) -> PulseNullSink:
        """A sink on a PulseAudio configured by the environment (PLAYSPEAK_TEST_PULSE)."""
        card = cls(sink)
        card._owned = False
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        card.runtime_dir = Path(runtime) if runtime else None
        return card

    @property
    def monitor(self) -> str:
        return f"{self.sink}.monitor"

    @property
    def env(self) -> dict[str, str]:
        """Environment entries that point PulseAudio clients (and ALSA's pulse plugin) here."""
        if not self._owned:
            keys = ("XDG_RUNTIME_DIR", "PULSE_SERVER")
            return {k: os.environ[k] for k in keys if k in os.environ}
        assert self.runtime_dir is not None, "start() first"
        return {
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PULSE_SERVER": f"unix:{self.runtime_dir}/pulse/native",
        }

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers; SoundCardError if not."""
        for tool in ("setpriv", "pulseaudio", "pactl", "parec"):
            if shutil.which(tool) is None:
                raise SoundCardError(
                    f"{tool} not found: apt-get install pulseaudio pulseaudio-utils"
                )
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="playspeak-pulse-"))  # mode 700
        log = self.runtime_dir / "pulse.log"
        command = [
            *DIE_WITH_PARENT,
            "pulseaudio",  # in the foreground: a daemonized one (-D) would outlive us
            "-n",
            "--exit-idle-time=-1",
            f"--log-target=file:{log}",
            "--load=module-native-protocol-unix",
            f"--load=module-null-sink sink_name={self.sink} rate={self.rate} "
            f"channels={self.channels} norewinds=1",
            "--load=module-always-sink",
        ]
        errors = self.runtime_dir / "pulse.stderr"  # a file: a pipe nobody reads could fill
        with errors.open("w") as stderr:
            self._process = subprocess.Popen(
                command, env=self.child_env(), stdin=subprocess.DEVNULL, stderr=stderr
            )
        self.pid = self._process.pid
        for _ in range(READY_TRIES):
            if (code := self._process.poll()) is not None:
                self.pid = None
                self._fail(f"pulseaudio exited {code}: {errors.read_text().strip()}")
            if self.pactl("info", check=False).returncode == 0:
                break
            time.sleep(0.05)
        else:
            self._fail("pulseaudio did not answer `pactl info`")
        self.pactl("set-default-sink", self.sink)

    def stop(self) -> None:
        """Stop our server by its pid and remove its directory; safe to call twice."""
        if not self._owned:
            return
        if self.pid is not None:
            terminate(self.pid)
            self.pid = None
        if self._process is not None:
            self._process.wait(timeout=5)  # reaped: terminate() saw it end
            self._process = None
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["pactl", *args], env=self.child_env(), capture_output=True, text=True, timeout=10
        )
        if check and result.returncode != 0:
            raise SoundCardError(f"pactl {' '.join(args)}: {result.stderr.strip()}")
        return result

    def recorder(self) -> Recorder:
        """A recorder of this sink's monitor (use it as a context manager, or start/stop)."""
        return Recorder(self.child_env(), self.monitor, self.rate)

    def child_env(self, **extra: str) -> dict[str, str]:
        """os.environ plus what points PulseAudio clients (and ALSA's pulse plugin) here."""
        return {**os.environ, **self.env, **extra}

    def _fail(self, message: str) -> None:
        log = self.runtime_dir / "pulse.log" if self.runtime_dir else None
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        self.stop()
        raise SoundCardError(f"{message}\n--- pulse.log ---\n{tail}")


class Recorder:
    """Records a mono source with parec (int16) in a thread; every chunk read is stamped with
    time.monotonic(). Indices are absolute sample numbers since start, also after trim()."""

    def __init__(self, env: dict[str, str], source: str, rate: int) -> None:
        self._env = env
        self.source = source
        self.rate = rate
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._data = bytearray()
        self._base = 0  # absolute index of self._data[0]
        self._stamps: list[tuple[int, float]] = []  # (absolute samples read, monotonic time)
        self._cond = threading.Condition()
        self._eof = False
        self.mark = 0  # samples recorded before start() returned: what came before "now"

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 5.0) -> None:
        """Spawn parec; returns once it delivers audio (bounded by `timeout`)."""
        self._process = subprocess.Popen(
            [
                "parec",
                "-d",
                self.source,
                "--format=s16le",
                f"--rate={self.rate}",
                "--channels=1",
                "--raw",
                "--latency-msec=10",
            ],
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._thread = threading.Thread(target=self._read, name="parec-reader", daemon=True)
        self._thread.start()
        if not self._wait(lambda: self._count() > 0, timeout):
            self.stop()
            raise SoundCardError(f"parec delivered nothing from {self.source} in {timeout} s")
        self.mark = self.count

    def stop(self) -> None:
        """Stop parec by its own pid (bounded)."""
        if self._process is not None:
            terminate(self._process.pid, timeout=5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
            self._process = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stream = self._process.stdout
        assert isinstance(stream, io.BufferedReader)  # Popen's default buffering: read1 exists
        while chunk := stream.read1(4096):
            now = time.monotonic()
            with self._cond:
                self._data += chunk
                self._stamps.append((self._count(), now))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _count(self) -> int:
        return self._base + len(self._data) // 2

    @property
    def count(self) -> int:
        """Absolute number of samples recorded so far."""
        with self._cond:
            return self._count()

    def trim(self, before: int) -> None:
        """Forget samples before absolute index `before` (bounded memory on long runs)."""
        with self._cond:
            drop = max(0, min(before, self._count()) - self._base)
            del self._data[: 2 * drop]
            self._base += drop
            keep = next((i for i, (n, _) in enumerate(self._stamps) if n > self._base), 0)
            del self._stamps[: max(0, keep - 1)]

    def samples(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """A copy of the int16 samples [start, end) (absolute indices; end None: all so far)."""
        with self._cond:
            stop = self._count() if end is None else min(end, self._count())
            lo = max(start, self._base) - self._base
            raw = bytes(self._data[2 * lo : 2 * (stop - self._base)])
        return np.frombuffer(raw, dtype="<i2").copy()

    def time_of(self, index: int) -> float:
        """Estimated monotonic capture time of sample `index`: its chunk's read stamp minus the
        samples after it in that chunk (uncalibrated: see calibrate.py)."""
        with self._cond:
            for count, stamp in self._stamps:
                if count > index:
                    return stamp - (count - 1 - index) / self.rate
        raise ValueError(f"sample {index} not recorded yet")

    def first_loud(self, start: int, threshold: int = SOUND_THRESHOLD) -> int | None:
        """Absolute index of the first sample after `start` louder than `threshold`, or None."""
        pcm = self.samples(start)
        hits = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
        return max(start, self._base) + int(hits[0]) if len(hits) else None

    def wait_loud(self, start: int, timeout: float, threshold: int = SOUND_THRESHOLD) -> int | None:
        """Block (a worker thread's job) until a loud sample after `start` was recorded; its
        absolute index, or None on timeout. Scans only what is new on each wake-up."""
        state = {"scanned": start, "found": -1}

        def ready() -> bool:
            begin = max(state["scanned"], self._base)
            raw = bytes(self._data[2 * (begin - self._base) : 2 * (self._count() - self._base)])
            pcm = np.frombuffer(raw, dtype="<i2").astype(np.int32)
            hits = np.flatnonzero(np.abs(pcm) > threshold)
            state["scanned"] = begin + len(pcm)
            if len(hits):
                state["found"] = begin + int(hits[0])
            return state["found"] >= 0

        self._wait(ready, timeout)
        return state["found"] if state["found"] >= 0 else None

    def wait_count(self, count: int, timeout: float) -> bool:
        """Block until `count` samples (absolute) were recorded; False on timeout."""
        return self._wait(lambda: self._count() >= count, timeout)

    wait_samples = wait_count

    def wait_sound(
        self, count: int, timeout: float, *, start: int = 0, threshold: int = SOUND_THRESHOLD
    ) -> bool:
        """Block until `count` samples louder than `threshold` arrived after index `start`."""

        def loud_enough() -> bool:
            lo = max(start, self._base) - self._base
            pcm = np.frombuffer(self._data, dtype="<i2", count=len(self._data) // 2)[lo:]
            return int(np.count_nonzero(np.abs(pcm.astype(np.int32)) > threshold)) >= count

        return self._wait(loud_enough, timeout)

    def wait_past(self, when: float, timeout: float) -> bool:
        """Block until a chunk read after monotonic time `when` came in: what the sink played
        up to then (less the capture's own latency) has been recorded."""
        return self._wait(lambda: bool(self._stamps) and self._stamps[-1][1] >= when, timeout)

    async def heard(self, start: int | None = None, *, margin: float = 0.1) -> np.ndarray:
        """The samples from `start` (default: the mark) up to what the sink has played by now.
        The capture lags behind playback (parec's 10 ms, more on a loaded machine), so this
        first waits for chunks read `margin` seconds later; reading at once could miss the
        end of what was just heard."""
        when = time.monotonic() + margin
        caught_up = await trio.to_thread.run_sync(
            self.wait_past, when, 10.0, abandon_on_cancel=True
        )
        if not caught_up:
            raise SoundCardError(f"the recorder of {self.source} stopped delivering audio")
        return self.samples(self.mark if start is None else start)

    async def wait_samples_async(self, count: int, timeout: float) -> bool:
        """wait_samples from trio, in a worker thread (abandoned if the caller is cancelled)."""
        return await trio.to_thread.run_sync(
            self.wait_samples, count, timeout, abandon_on_cancel=True
        )

    async def wait_sound_async(
        self, count: int, timeout: float, *, start: int = 0, threshold: int = SOUND_THRESHOLD
    ) -> bool:
        """wait_sound from trio, in a worker thread (abandoned if the caller is cancelled)."""
        return await trio.to_thread.run_sync(
            lambda: self.wait_sound(count, timeout, start=start, threshold=threshold),
            abandon_on_cancel=True,
        )

    def _wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    return False
                self._cond.wait(min(left, 0.05))
            return True
