"""The daemon as systemd runs it, without systemd: socket activation by systemd-socket-activate,
sd_notify messages on a notify socket the test binds (READY, STATUS, WATCHDOG, STOPPING), the
exit status after SIGTERM, and log lines formatted for the journal."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from soundcard import PulseNullSink

PLAYSPEAK = str(Path(sys.executable).with_name("playspeak"))
TIMEOUT = 20  # seconds for any one step; each takes well under a few seconds here
CONFIG = """\
[audio]
samplerate = 48000

[local_server]
embedded = "server"
first_byte_delay = 0.05
realtime_factor = 3.0
"""


def needs(program: str, package: str) -> str:
    """The path of a program the test needs; fails (not skips) with how to install it."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} not found: apt-get install {package}", pytrace=False)
    return path


class NotifySocket:
    """Stands in for systemd's notify socket: an AF_UNIX datagram socket that keeps every
    message with the (trio) time it arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM) as sock:
            await sock.bind(str(self.path))
            task_status.started()
            while True:
                data = await sock.recv(65536)
                self.messages.append((trio.current_time(), data.decode()))
                self._changed.set()
                self._changed = trio.Event()

    def lines(self, prefix: str = "") -> list[tuple[float, str]]:
        return [
            (t, line)
            for t, message in self.messages
            for line in message.split("\n")
            if line.startswith(prefix)
        ]

    async def wait_for(self, line: str | Callable[[str], bool]) -> tuple[float, str]:
        """The first message with that line (or a line the predicate accepts); waits for it."""
        match = line if callable(line) else line.__eq__
        with trio.fail_after(TIMEOUT):
            while True:
                for t, message in self.messages:
                    if any(match(x) for x in message.split("\n")):
                        return t, message
                await self._changed.wait()


class Output:
    """Everything a process writes to one pipe, collected as it comes."""

    def __init__(self, fd: int) -> None:
        self.stream = trio.lowlevel.FdStream(fd)
        self.text = ""
        self._changed = trio.Event()

    async def run(self) -> None:
        async with self.stream:
            while data := await self.stream.receive_some(65536):
                self.text += data.decode(errors="replace")
                self._changed.set()
                self._changed = trio.Event()

    async def wait_for(self, text: str) -> None:
        with trio.fail_after(TIMEOUT):
            while text not in self.text:
                await self._changed.wait()


class LineClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream, self.buffer = stream, b""

    async def send(self, command: dict) -> None:
        await self.stream.send_all(json.dumps(command).encode() + b"\n")

    async def next(self) -> dict:
        with trio.fail_after(TIMEOUT):
            while b"\n" not in self.buffer:
                data = await self.stream.receive_some(65536)
                assert data, "the daemon closed the connection"
                self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


@asynccontextmanager
async def running(
    argv: list[str], env: dict[str, str]
) -> AsyncIterator[tuple[trio.Process, Output]]:
    """Start a process with its stderr collected; killed by its pid if still running at the end."""
    read_end, write_end = os.pipe()
    journal = os.fstat(write_end)
    if env.get("JOURNAL_STREAM") == "<this pipe>":
        env = {**env, "JOURNAL_STREAM": f"{journal.st_dev}:{journal.st_ino}"}
    try:
        proc = await trio.lowlevel.open_process(argv, env=env, stderr=write_end)
    finally:
        os.close(write_end)
    stderr = Output(read_end)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stderr.run)
            yield proc, stderr
            nursery.cancel_scope.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()


@pytest.fixture
def env(tmp_path: Path, sound_card: PulseNullSink) -> dict[str, str]:
    """What the daemon needs: a way to the null sink, a fast local server, a private socket."""
    config = tmp_path / "playspeak.toml"
    config.write_text(CONFIG)
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/"),
        **sound_card.env,
        "PLAYSPEAK_CONFIG": str(config),
        "PLAYSPEAK_SOCKET": str(tmp_path / "playspeak.sock"),
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
    }


async def test_socket_activation_end_to_end(tmp_path: Path, env: dict[str, str]) -> None:
    """The first connection starts the daemon, which serves it on the passed socket; READY and
    STATUS follow its state, WATCHDOG=1 comes every half WatchdogSec, and SIGTERM ends it with
    STOPPING=1 and exit status 0."""
    control = tmp_path / "activated.sock"  # not PLAYSPEAK_SOCKET: the passed socket is used
    notify = NotifySocket(Path(env["NOTIFY_SOCKET"]))
    argv = [needs("systemd-socket-activate", "systemd"), "-l", str(control), "--fdname=control"]
    for key, value in {**env, "WATCHDOG_USEC": "200000"}.items():
        argv += ["-E", f"{key}={value}"]
    argv += [PLAYSPEAK, "run"]
    async with trio.open_nursery() as nursery:
        await nursery.start(notify.run)
        async with running(argv, env) as (proc, stderr):
            await stderr.wait_for(f"Listening on {control}")
            assert not notify.messages  # nothing runs before the first connection

            client = LineClient(await trio.open_unix_socket(str(control)))
            await client.send({"cmd": "ping"})
            assert (await client.next())["event"] == "ok"
            assert not Path(env["PLAYSPEAK_SOCKET"]).exists()  # it did not bind its own
            _, ready = await notify.wait_for("READY=1")
            assert re.search(r"^STATUS=(idle|connecting to the TTS service)$", ready, re.M)

            text = "Activated by a socket."
            await client.send({"cmd": "speak", "text": text, "id": "sa1"})
            events = [await client.next()]
            while events[-1]["event"] not in ("finished", "cancelled", "failed"):
                events.append(await client.next())
            assert [e["event"] for e in events] == ["ok", "queued", "started", "finished"]
            await notify.wait_for("STATUS=speaking sa1")
            await notify.wait_for(lambda line: line == "STATUS=idle" and _after(notify, "sa1"))
            await client.stream.aclose()

            proc.send_signal(signal.SIGTERM)
            await notify.wait_for("STOPPING=1")
            with trio.fail_after(TIMEOUT):
                assert await proc.wait() == 0
        nursery.cancel_scope.cancel()

    assert "using the control socket passed by systemd" in stderr.text
    beats = [t for t, _ in notify.lines("WATCHDOG=1")]
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert len(beats) >= 5, notify.messages
    assert 0.05 <= statistics.median(gaps) <= 0.2, gaps  # half of WATCHDOG_USEC=200000


def _after(notify: NotifySocket, ident: str) -> bool:
    """True once STATUS=speaking <ident> was seen before the latest message."""
    lines = [line for _, line in notify.lines("STATUS=")]
    return f"STATUS=speaking {ident}" in lines[:-1]


async def test_logs_for_the_journal_and_its_own_socket(tmp_path: Path, env: dict[str, str]) -> None:
    """Not socket-activated, the daemon binds PLAYSPEAK_SOCKET itself. With JOURNAL_STREAM naming
    its stderr, every line carries a `<N>` priority prefix and no timestamp."""
    notify = NotifySocket(Path(env["NOTIFY_SOCKET"]))
    env = {**env, "JOURNAL_STREAM": "<this pipe>"}
    async with trio.open_nursery() as nursery:
        await nursery.start(notify.run)
        async with running([PLAYSPEAK, "run", "--log-level", "debug"], env) as (proc, stderr):
            await notify.wait_for("READY=1")
            client = LineClient(await trio.open_unix_socket(env["PLAYSPEAK_SOCKET"]))
            await client.send({"cmd": "ping"})
            assert (await client.next())["event"] == "ok"
            await client.stream.aclose()
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(TIMEOUT):
                assert await proc.wait() == 0
        nursery.cancel_scope.cancel()
    assert notify.lines("STOPPING=1")
    lines = stderr.text.splitlines()
    assert f"<6>playspeak.daemon: listening on {env['PLAYSPEAK_SOCKET']}" in lines
    assert "<6>playspeak.daemon: SIGTERM: shutting down" in lines
    assert any(line.startswith("<7>") for line in lines)  # --log-level debug
    assert all(re.match(r"<[0-7]>\S", line) for line in lines), lines
    assert not any(re.search(r"\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d", line) for line in lines), lines


# ---- the unit's system-call filter, emulated --------------------------------------------------

SYSTEM_PYTHON = "/usr/bin/python3"  # has Debian's python3-seccomp; the venv's python has not
SERVICE = Path(__file__).resolve().parent.parent / "systemd" / "playspeak.service"
SANDBOX = '''
"""Load playspeak.service's SystemCallFilter= (SystemCallErrorNumber=EPERM) and
RestrictAddressFamilies= as a seccomp filter, then exec the command."""
import errno, json, os, socket, sys
import seccomp

allowed, families = json.loads(os.environ.pop("SANDBOX"))
f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
for call in allowed:
    if call != "socket":
        try:
            f.add_rule(seccomp.ALLOW, call)
        except (RuntimeError, ValueError):
            pass  # not a system call on this architecture
for family in families:
    f.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, getattr(socket, family)))
f.load()
os.execv(sys.argv[1], sys.argv[1:])
'''


def syscall_group(name: str, seen: set[str]) -> set[str]:
    """The system calls in a systemd group (`systemd-analyze syscall-filter @name`), expanded."""
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True
    ).stdout.splitlines()[1:]
    calls: set[str] = set()
    for item in (line.strip() for line in listing):
        if item and not item.startswith("#"):
            calls |= syscall_group(item, seen)
    return calls


def unit_filter() -> tuple[list[str], list[str]]:
    """The unit's allowed system calls (systemd's rules: the first SystemCallFilter= line is an
    allow list, then `~` lines take calls out and plain lines put calls back) and socket
    address families."""
    allowed: set[str] = set()
    families: list[str] = []
    for line in SERVICE.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "SystemCallFilter":
            names = value.removeprefix("~").split()
            calls = set().union(*(syscall_group(n, set()) for n in names))
            if value.startswith("~"):
                allowed -= calls
            else:
                allowed |= calls | (syscall_group("@default", set()) if not allowed else set())
        elif key == "RestrictAddressFamilies":
            families = value.split()
    assert allowed and families
    return sorted(allowed), families


async def test_it_speaks_under_the_units_system_call_filter(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The daemon opens the sound card, connects (AF_INET, to the embedded server), speaks and
    stops cleanly with only the system calls and address families the unit allows."""
    needs("systemd-analyze", "systemd")
    if subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True).returncode:
        pytest.fail("no seccomp module: apt-get install python3-seccomp", pytrace=False)
    sandbox = tmp_path / "sandbox.py"
    sandbox.write_text(SANDBOX)
    notify = NotifySocket(Path(env["NOTIFY_SOCKET"]))
    env = {**env, "SANDBOX": json.dumps(unit_filter())}
    async with trio.open_nursery() as nursery:
        await nursery.start(notify.run)
        async with running([SYSTEM_PYTHON, str(sandbox), PLAYSPEAK, "run"], env) as (proc, _):
            await notify.wait_for("READY=1")
            client = LineClient(await trio.open_unix_socket(env["PLAYSPEAK_SOCKET"]))
            await client.send({"cmd": "speak", "text": "Inside the filter.", "id": "f1"})
            events = [await client.next()]
            while events[-1]["event"] not in ("finished", "cancelled", "failed"):
                events.append(await client.next())
            assert [e["event"] for e in events] == ["ok", "queued", "started", "finished"]
            await client.stream.aclose()
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(TIMEOUT):
                assert await proc.wait() == 0
        nursery.cancel_scope.cancel()
