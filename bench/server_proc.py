"""The local PlayAI-compatible server as a child process (`playspeak serve-local`), so that a
daemon measured in this process does not share its event loop with the server."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .procs import terminate

_LISTENING = re.compile(rb"local PlayAI server on (http://\S+)")


@contextmanager
def serve_local(
    env: dict[str, str], *, first_byte_delay: float, realtime_factor: float, timeout: float = 30
) -> Iterator[str]:
    """Start `playspeak serve-local --port 0` with the credentials in `env`
    (PLAYAI_API_KEY/PLAYAI_USER_ID); yields its base URL once it listens. Blocking start,
    bounded by `timeout`; stopped by its pid on leaving."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "playspeak",
            "serve-local",
            "--port",
            "0",
            "--first-byte-delay",
            str(first_byte_delay),
            "--realtime-factor",
            str(realtime_factor),
            "--synth",
            "espeak",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = _wait_for_url(process, timeout)
        # keep draining its log so that it never blocks on a full pipe
        threading.Thread(target=_drain, args=(process,), daemon=True).start()
        yield url
    finally:
        terminate(process.pid)
        process.wait(timeout=5)


def _wait_for_url(process: subprocess.Popen[bytes], timeout: float) -> str:
    found: list[str] = []
    seen: list[bytes] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            seen.append(line)
            if match := _LISTENING.search(line):
                found.append(match.group(1).decode())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        raise RuntimeError(f"serve-local did not start: {b''.join(seen)[-2000:]!r}")
    return found[0]


def _drain(process: subprocess.Popen[bytes]) -> None:
    assert process.stderr is not None
    for _ in process.stderr:
        pass
