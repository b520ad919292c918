"""A private PulseAudio null sink and a recorder of its monitor, for the benchmarks.

Mirrors tests/soundcard.py (same recipe, AUDIO_TESTING.md), plus what long benchmark runs need:
the recording can be trimmed so memory stays bounded, and loud samples can be searched from an
absolute index. Everything this module starts is stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .procs import environ_with, terminate

SINK = "benchsink"
RATE = 48000
THRESHOLD = 300  # |int16| above this is sound (BENCH_METHOD.md)
_READY_TRIES = 100  # `pactl info` attempts 50 ms apart: at most 5 s


class SoundCardError(RuntimeError):
    """The private PulseAudio could not be started or recorded."""


class PulseNullSink:
    """A private PulseAudio (own XDG_RUNTIME_DIR) with one 48 kHz mono null sink, `norewinds=1`.

    ``env`` holds what clients need; nothing is set in os.environ here.
    """

    def __init__(self, sink: str = SINK, rate: int = RATE) -> None:
        self.sink = sink
        self.rate = rate
        self.runtime_dir: Path | None = None
        self.pid: int | None = None

    @property
    def monitor(self) -> str:
        return f"{self.sink}.monitor"

    @property
    def env(self) -> dict[str, str]:
        assert self.runtime_dir is not None, "start() first"
        return {
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PULSE_SERVER": f"unix:{self.runtime_dir}/pulse/native",
        }

    def start(self) -> None:
        """Start the server; returns once it answers (bounded), else raises SoundCardError."""
        for tool in ("pulseaudio", "pactl", "parec", "pacat"):
            if shutil.which(tool) is None:
                raise SoundCardError(f"{tool} not found: apt-get install pulseaudio-utils")
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="playspeak-bench-pulse-"))
        command = [
            "pulseaudio",
            "-D",
            "-n",
            "--exit-idle-time=-1",
            f"--log-target=file:{self.runtime_dir}/pulse.log",
            "--load=module-native-protocol-unix",
            f"--load=module-null-sink sink_name={self.sink} rate={self.rate} channels=1 "
            "norewinds=1",
            "--load=module-always-sink",
        ]
        started = subprocess.run(command, env=self.child_env(), capture_output=True, timeout=30)
        if started.returncode != 0:
            self._fail(f"pulseaudio exited {started.returncode}: {started.stderr!r}")
        for _ in range(_READY_TRIES):
            if self.pactl("info", check=False).returncode == 0:
                break
            time.sleep(0.05)
        else:
            self._fail("pulseaudio did not answer `pactl info`")
        with contextlib.suppress(OSError, ValueError, IndexError):
            self.pid = int((self.runtime_dir / "pulse" / "pid").read_text().split()[0])
        if self.pid is None:
            self._fail("no pid file")
        self.pactl("set-default-sink", self.sink)

    def stop(self) -> None:
        """Stop our server by its pid and remove its directory; safe to call twice."""
        if self.pid is not None:
            terminate(self.pid)
            self.pid = None
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

    def child_env(self, **extra: str) -> dict[str, str]:
        """os.environ plus what points PulseAudio (and ALSA's pulse plugin) here."""
        return environ_with(**self.env, **extra)

    def recorder(self) -> Recorder:
        return Recorder(self.child_env(), self.monitor, self.rate)

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

    def samples(self, start: int, end: int | None = None) -> np.ndarray:
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

    def first_loud(self, start: int, threshold: int = THRESHOLD) -> int | None:
        """Absolute index of the first sample after `start` louder than `threshold`, or None."""
        pcm = self.samples(start)
        hits = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
        return max(start, self._base) + int(hits[0]) if len(hits) else None

    def wait_loud(self, start: int, timeout: float, threshold: int = THRESHOLD) -> int | None:
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

    def _wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    return False
                self._cond.wait(min(left, 0.05))
            return True
