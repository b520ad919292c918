"""A real-time software sound card for tests: a private PulseAudio null sink and a recorder."""

from __future__ import annotations

import contextlib
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
SOUND_THRESHOLD = 300  # |int16| above this is sound (as in BENCH_METHOD.md)


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
        self._owned = True

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
        for tool in ("pulseaudio", "pactl", "parec"):
            if shutil.which(tool) is None:
                raise SoundCardError(
                    f"{tool} not found: apt-get install pulseaudio pulseaudio-utils"
                )
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="playspeak-pulse-"))  # mode 700
        log = self.runtime_dir / "pulse.log"
        command = [
            "pulseaudio",
            "-D",
            "-n",
            "--exit-idle-time=-1",
            f"--log-target=file:{log}",
            "--load=module-native-protocol-unix",
            f"--load=module-null-sink sink_name={self.sink} rate={self.rate} "
            f"channels={self.channels} norewinds=1",
            "--load=module-always-sink",
        ]
        started = subprocess.run(
            command, env=self._child_env(), capture_output=True, text=True, timeout=30
        )
        if started.returncode != 0:
            self._fail(f"pulseaudio exited {started.returncode}: {started.stderr.strip()}")
        for _ in range(READY_TRIES):
            if self.pactl("info", check=False).returncode == 0:
                break
            time.sleep(0.05)
        else:
            self._fail("pulseaudio did not answer `pactl info`")
        pid_file = self.runtime_dir / "pulse" / "pid"
        with contextlib.suppress(OSError, ValueError):
            self.pid = int(pid_file.read_text().split()[0])
        if self.pid is None:
            self._fail(f"no pid in {pid_file}")
        self.pactl("set-default-sink", self.sink)

    def stop(self) -> None:
        """Stop our server by its pid and remove its directory; safe to call twice."""
        if not self._owned:
            return
        if self.pid is not None:
            _terminate(self.pid)
            self.pid = None
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["pactl", *args], env=self._child_env(), capture_output=True, text=True, timeout=10
        )
        if check and result.returncode != 0:
            raise SoundCardError(f"pactl {' '.join(args)}: {result.stderr.strip()}")
        return result

    def recorder(self) -> Recorder:
        """A recorder of this sink's monitor (use it as a context manager, or start/stop)."""
        return Recorder(self._child_env(), self.monitor, self.rate, self.channels)

    def _child_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def _fail(self, message: str) -> None:
        log = self.runtime_dir / "pulse.log" if self.runtime_dir else None
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        self.stop()
        raise SoundCardError(f"{message}\n--- pulse.log ---\n{tail}")


def _terminate(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM `pid`, wait for it to go (bounded), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)


class Recorder:
    """Records a PulseAudio source with parec in a background thread (int16, `rate` Hz).

    Usable from plain and trio tests alike: the blocking waits have async twins that run in
    a worker thread. Every chunk read is stamped with time.monotonic(), so a sample's
    capture time can be estimated (``time_of``).
    """

    def __init__(self, env: dict[str, str], source: str, rate: int, channels: int) -> None:
        self._env = env
        self.source = source
        self.rate = rate
        self.channels = channels
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._data = bytearray()
        self._stamps: list[tuple[int, float]] = []  # (samples so far, monotonic time read)
        self._cond = threading.Condition()
        self._eof = False
        self.mark = 0  # samples recorded before start() returned: what came before "now"

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 5.0) -> None:
        """Spawn parec and return once it delivers audio (bounded by `timeout`)."""
        self._process = subprocess.Popen(
            [
                "parec",
                "-d",
                self.source,
                "--format=s16le",
                f"--rate={self.rate}",
                f"--channels={self.channels}",
                "--raw",
                "--latency-msec=10",
            ],
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._thread = threading.Thread(target=self._read, name="parec-reader", daemon=True)
        self._thread.start()
        if not self.wait_samples(1, timeout):
            self.stop()
            raise SoundCardError(f"parec delivered nothing from {self.source} in {timeout} s")
        self.mark = self.count

    def stop(self) -> np.ndarray:
        """Stop parec (by its own process handle) and return everything recorded."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stderr is not None:
                self._process.stderr.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.samples()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stream = self._process.stdout
        while chunk := stream.read1(4096):
            now = time.monotonic()
            with self._cond:
                self._data += chunk
                self._stamps.append((len(self._data) // (2 * self.channels), now))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def count(self) -> int:
        """Samples (frames) recorded so far."""
        with self._cond:
            return len(self._data) // (2 * self.channels)

    def samples(self, start: int = 0) -> np.ndarray:
        """A copy of the recorded int16 samples from frame `start` (frames × channels flat)."""
        with self._cond:
            whole = len(self._data) - len(self._data) % (2 * self.channels)
            raw = bytes(self._data[start * 2 * self.channels : whole])
        return np.frombuffer(raw, dtype="<i2").copy()

    def time_of(self, index: int) -> float:
        """Estimated monotonic time at which sample `index` was captured.

        The chunk holding it was read at its stamp; its samples were captured at the rate
        before that, so the estimate is within parec's 10 ms latency plus pipe delay.
        """
        with self._cond:
            for count, stamp in self._stamps:
                if count > index:
                    return stamp - (count - 1 - index) / self.rate
        raise ValueError(f"sample {index} not recorded yet")

    def wait_samples(self, count: int, timeout: float) -> bool:
        """Block until `count` samples were recorded in all (False on timeout or EOF)."""
        return self._wait(lambda: len(self._data) // (2 * self.channels) >= count, timeout)

    def wait_sound(
        self, count: int, timeout: float, *, start: int = 0, threshold: int = SOUND_THRESHOLD
    ) -> bool:
        """Block until `count` samples louder than `threshold` arrived after frame `start`."""

        def loud_enough() -> bool:
            pcm = np.frombuffer(self._data, dtype="<i2", count=len(self._data) // 2)
            return int(np.count_nonzero(np.abs(pcm[start:]) > threshold)) >= count

        return self._wait(loud_enough, timeout)

    def _wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    return False
                self._cond.wait(left)
            return True

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
