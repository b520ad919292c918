"""Every door as guarded as the other: the control socket and the SSIP listener share one access
policy (SO_PEERCRED allow-lists) and one set of limits (a client cap with a per-uid share, idle
and slow-sender timeouts, a budget for unfinished input, accept(2) out of fds).

The rules are tested without sockets; the rest through real Unix sockets, against the daemon
in-process (fast local server, WAV output) or as a real process (its RSS, its log, its fds), and
with real other users (`nobody`) when run as root. Timeouts run on trio's autojump clock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from playspeak.config import (
    AudioConfig,
    Config,
    ControlConfig,
    LocalServerConfig,
    SsipConfig,
)
from playspeak.control.server import ControlServer, bind_unix_socket
from playspeak.daemon import open_daemon
from playspeak.door.policy import Budget, Limits, expiry, make_room
from playspeak.events import Ok
from playspeak.speech import EventHub, Utterance, next_auto_id
from playspeak.ssip.server import SsipServer, bind_ssip_socket
from playspeak.utterances import UtteranceBuilder

from daemon_helpers import ENDINGS, LineClient

NOBODY = 65534
UID = os.getuid()
SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter may live where nobody may look
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (plays other users)")


def config_in(directory: Path, **control: Any) -> Config:
    """Both doors open to every user (mode 0666), speech that finishes at once."""
    return Config(
        control=ControlConfig(
            socket=str(directory / "playspeak.sock"), socket_mode=0o666, **control
        ),
        audio=AudioConfig(device=f"wav:{directory}/out.wav"),
        local_server=LocalServerConfig(first_byte_delay=0, realtime_factor=0, synth="generated"),
        ssip=SsipConfig(socket=str(directory / "speechd.sock"), socket_mode=0o666),
    )


@pytest.fixture
def system_python() -> None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} is needed to play another user")


async def read_to_end(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:  # closed with bytes of ours unread
            return data
        if not chunk:
            return data
        data += chunk


def json_lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


class SsipClient:
    """A raw SSIP client: CRLF lines out, final reply lines (`ccc text`) in."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def open(cls, path: Path) -> SsipClient:
        return cls(await trio.open_unix_socket(str(path)))

    async def ask(self, data: bytes, count: int = 1) -> list[bytes]:
        await self.stream.send_all(data)
        finals: list[bytes] = []
        while len(finals) < count:
            while b"\r\n" not in self.buffer:
                chunk = await self.stream.receive_some(65536)
                assert chunk, f"closed; got {finals}"
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            if line[3:4] == b" ":
                finals.append(line)
        return finals


# ---- the rules, without sockets -------------------------------------------------------------


@dataclass
class Conn:
    uid: int | None
    last_active: float
    waiting: bool = False

    def busy(self) -> bool:
        return self.waiting


def test_a_full_door_takes_a_newcomer_from_the_uid_beyond_its_share() -> None:
    limits = Limits(max_clients=4, uid_share=2)
    assert make_room([Conn(1, 0)], 1, limits) is None, "room: everyone comes in"
    old, older, oldest = Conn(1, 3), Conn(1, 2), Conn(1, 1, waiting=True)
    door = [old, older, oldest, Conn(0, 0)]
    assert make_room(door, 2, limits) is older, "idle before busy, then least recently active"
    assert make_room(door, 0, limits) is older, "uid 0 holds 1 of its 2"
    unknown = [Conn(None, 0) for _ in range(4)]  # no SO_PEERCRED: one uid among others
    assert make_room(unknown, 5, limits) is unknown[0]


def test_a_full_door_takes_a_newcomer_from_the_connection_idle_the_longest() -> None:
    limits = Limits(max_clients=4, uid_share=2)
    longest, recent = Conn(1, 0), Conn(1, 5)
    fair = [recent, longest, Conn(2, -1, waiting=True), Conn(2, 2)]
    assert make_room(fair, 1, limits) is longest, "its own, when at its share"
    assert make_room(fair, 3, limits) is longest, "anyone's, when below; never a busy one"
    mine = [Conn(2, 0), Conn(2, 0), Conn(1, 1), Conn(1, 9)]
    assert make_room(mine, 1, limits) is mine[2], "never another uid's when at its share"
    hog = [Conn(1, 9), Conn(1, 1), Conn(1, 5, waiting=True), Conn(0, 0)]
    assert make_room(hog, 1, limits) is hog[1], "the hog itself: its own idle longest"
    busy = [Conn(1, 0, waiting=True), Conn(1, 0, waiting=True), Conn(2, 0), Conn(2, 0)]
    assert make_room(busy, 1, limits) == "too many clients (limit 4)", "its own are all busy"
    all_busy = [Conn(uid, 0, waiting=True) for uid in (1, 1, 2, 2)]
    assert make_room(all_busy, 3, limits) == "too many clients (limit 4)", "nobody beyond share"


def test_timeouts_idle_and_unfinished_lines() -> None:
    limits = Limits(idle_timeout=300, line_timeout=15)
    idle = expiry(100, 50, None, False, limits)
    assert idle is not None and (idle.at, idle.reason) == (350, "idle for 300 s")
    slow = expiry(100, 99, 90, False, limits)
    assert slow is not None and (slow.at, slow.reason) == (105, "a line unfinished after 15 s")
    busy = expiry(100, 50, None, True, limits)
    assert busy is not None and (busy.at, busy.reason) == (400, ""), "looked at again later"
    assert expiry(100, 0, 0, False, Limits(idle_timeout=0, line_timeout=0)) is None


def test_the_budget_drops_the_largest_holders() -> None:
    budget: Budget[str] = Budget(100)
    assert budget.update("a", 60) == [] and budget.update("b", 30) == []
    assert budget.update("c", 50) == [("a", 60)]
    budget.release("a")
    assert budget.total == 80
    assert budget.update("b", 0) == [] and budget.held == {"c": 50}


# ---- who may come in: SSIP as the control socket ---------------------------------------------

NOBODY_CLIENT = """
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
try:
    sock.sendall(bytes.fromhex(sys.argv[2]))
    sock.shutdown(socket.SHUT_WR)
except BrokenPipeError:  # refused and closed before our bytes got there
    pass
data = b""
try:
    while chunk := sock.recv(4096):
        data += chunk
except ConnectionResetError:  # refused and closed with our bytes unread; its line came first
    pass
sys.stdout.write(data.decode())
"""


async def as_nobody(path: Path, data: bytes) -> str:
    result = await trio.run_process(
        [SYSTEM_PYTHON, "-I", "-c", NOBODY_CLIENT, str(path), data.hex()],
        user=NOBODY,
        group=NOBODY,
        env={},
        cwd="/",
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


SPEAK = b"SET SELF CLIENT_NAME root:door-test:main\r\nSPEAK\r\nHello.\r\n.\r\n"


@needs_root
async def test_nobody_is_refused_on_ssip_exactly_as_on_the_control_socket(
    shared_dir: Path, system_python: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with open_daemon(config_in(shared_dir, allow_uids=(0,))) as daemon:
        control = await as_nobody(daemon.socket_path, b'{"cmd":"speak","text":"Evil."}\n')
        ssip = await as_nobody(shared_dir / "speechd.sock", SPEAK.replace(b"root", b"evil"))
        refusal = f"not allowed: uid {NOBODY} is not in control.allow_uids/allow_groups"
        assert json_lines(control.encode()) == [{"event": "error", "error": refusal}]
        assert ssip == f"300 ERR {refusal}\r\n"
        assert daemon.speaker.hub.counters["queued"] == 0, "nothing was said for nobody"
        # root (allowed) is served on both, and named by its credentials, not its CLIENT_NAME
        root = await SsipClient.open(shared_dir / "speechd.sock")
        replies = await root.ask(SPEAK, 3)
        assert [r[:3] for r in replies] == [b"208", b"230", b"225"]
        client = await LineClient.open(daemon.socket_path)
        assert (await client.command(cmd="ping"))["event"] == "ok"
    refused = [r for r in caplog.records if "not in control.allow_uids" in r.getMessage()]
    assert sorted(r.getMessage().split(":")[0] for r in refused) == ["SSIP", "control"]
    assert all(f"uid={NOBODY} gid={NOBODY} pid=" in r.getMessage() for r in refused)
    said = [r.getMessage() for r in caplog.records if r.name == "playspeak.ssip.session"]
    assert len(said) == 1 and f"(uid={UID} gid=" in said[0], said
    assert not any("door-test" in r.getMessage() for r in caplog.records)


# ---- how many: 1,000 idle connections to each door -------------------------------------------

HOG = """
import socket, sys
held = []
for path in sys.argv[1:]:
    for _ in range(1000):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        held.append(sock)
print("holding", len(held), flush=True)
sys.stdin.read()  # until the test is done
"""


@needs_root
async def test_a_thousand_idle_connections_to_each_door_leave_others_served(
    shared_dir: Path, system_python: None, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_daemon(config_in(shared_dir)) as daemon:
        ssip_path = shared_dir / "speechd.sock"
        hog = await trio.lowlevel.open_process(
            [SYSTEM_PYTHON, "-I", "-c", HOG, str(daemon.socket_path), str(ssip_path)],
            user=NOBODY,
            group=NOBODY,
            env={},
            cwd="/",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert hog.stdout is not None and hog.stdin is not None
            with trio.fail_after(60):
                assert await hog.stdout.receive_some(100) == b"holding 2000\n"
                await trio.testing.wait_all_tasks_blocked()  # the daemon has seen them all
            assert len(daemon.control.door) == len(daemon.control.clients) == 256
            # A normal client on each door: the one made room for is nobody's.
            started = trio.current_time()
            with trio.fail_after(1):
                client = await LineClient.open(daemon.socket_path)
                assert (await client.command(cmd="ping"))["event"] == "ok"
            control_took = trio.current_time() - started
            started = trio.current_time()
            with trio.fail_after(1):
                ssip = await SsipClient.open(ssip_path)
                replies = await ssip.ask(SPEAK, 3)
            ssip_took = trio.current_time() - started
            assert [r[:3] for r in replies] == [b"208", b"230", b"225"]
            print(
                f"with 1,000 idle connections: control {control_took:.3f} s, SSIP {ssip_took:.3f} s"
            )
            # a new client of nobody's, at its share, is served too: its own connection idle
            # the longest gives way, never another uid's; the clients keep their places
            said = json_lines((await as_nobody(daemon.socket_path, b'{"cmd":"ping"}\n')).encode())
            assert [line["event"] for line in said] == ["ok"]
            assert (await client.command(cmd="ping"))["event"] == "ok"
        finally:
            with trio.move_on_after(10):
                await hog.stdin.aclose()
                await hog.wait()
            if hog.returncode is None:
                hog.kill()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "refusing client" in w], "its own idle ones made room"
    assert len([w for w in warnings if "holds more than its share" in w]) == 2
    assert len([w for w in warnings if "idle, and the door" in w]) == 2, "one per door, not 1,488"
    assert not [r for r in caplog.records if r.exc_info]


# ---- how long: idle clients and slow senders (on trio's clock) --------------------------------


@asynccontextmanager
async def control_door(
    tmp_path: Path, max_clients: int = 16, **limits: Any
) -> AsyncIterator[tuple[Path, list[str]]]:
    """A control socket whose handler answers ping and subscribe, and notes what it was sent."""
    path = tmp_path / "door.sock"
    heard: list[str] = []

    def handler(session: Any, command: Any, line: int) -> None:
        heard.append(type(command).__name__)
        session.subscribed = session.subscribed or heard[-1] == "Subscribe"
        session.send(Ok(heard[-1].lower(), line))

    server = ControlServer(
        bind_unix_socket(path, 0o600),
        handler,
        max_line_bytes=65536,
        max_clients=max_clients,
        client_buffer=16,
        limits=Limits(max_clients=max_clients, uid_share=min(64, max_clients), **limits),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        yield path, heard
        nursery.cancel_scope.cancel()


async def test_idle_clients_are_closed_and_subscribers_stay(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with control_door(tmp_path, idle_timeout=300, line_timeout=15) as (path, _):
        watcher = await LineClient.open(path)
        assert (await watcher.command(cmd="subscribe"))["event"] == "ok"
        chatty = await LineClient.open(path)
        idle = await trio.open_unix_socket(str(path))
        started = trio.current_time()

        async def keep_talking() -> None:  # a line every 100 s keeps a client
            for _ in range(6):
                await trio.sleep(100)
                assert (await chatty.command(cmd="ping"))["event"] == "ok"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_talking)
            assert json_lines(await read_to_end(idle)) == [
                {"event": "error", "error": "idle for 300 s: disconnected"}
            ]
            assert trio.current_time() - started == pytest.approx(300)
        await trio.sleep(1000)
        assert (await watcher.command(cmd="ping"))["event"] == "ok", "a subscriber is not idle"


async def test_a_line_trickled_slower_than_line_timeout_is_dropped_unsaid(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with control_door(tmp_path, idle_timeout=300, line_timeout=15) as (path, heard):
        slow = await trio.open_unix_socket(str(path))
        started = trio.current_time()
        try:
            await slow.send_all(b'{"cmd": "speak", "text": "never')
            while True:
                await trio.sleep(1)
                await slow.send_all(b"!")  # a byte a second: never idle, never a whole line
        except trio.BrokenResourceError:
            pass
        assert trio.current_time() - started == pytest.approx(16)  # 15 s, seen at the next byte
        assert json_lines(await read_to_end(slow)) == [
            {"event": "error", "error": "a line unfinished after 15 s: disconnected"}
        ]
        assert heard == []


async def test_a_door_full_of_ones_own_idle_connections_serves_a_new_one_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with control_door(tmp_path, max_clients=256) as (path, _):
        flood = []
        for _ in range(256):  # the cap, all of one uid (ours), none with anything in flight
            flood.append(await trio.open_unix_socket(str(path)))
            await trio.sleep(0.01)  # each a little less idle than the one before
        watcher = await LineClient.open(path)  # busy (subscribed): it never gives way
        assert (await watcher.command(cmd="subscribe"))["event"] == "ok"
        started = trio.current_time()
        client = await LineClient.open(path)
        assert (await client.command(cmd="ping"))["event"] == "ok"
        assert trio.current_time() - started < 0.01, "served at once, no waiting for staleness"
        # The two idle the longest made room, each told why.
        for stream in flood[:2]:
            assert json_lines(await read_to_end(stream)) == [
                {"event": "error", "error": "idle, and the door is full: disconnected"}
            ]
        assert (await watcher.command(cmd="ping"))["event"] == "ok"
        for stream in flood:
            await stream.aclose()


class NoSpeaker:
    """A stand-in: a closing SSIP connection only ends its pause (it never paused)."""

    def release(self, holder: object) -> bool:
        return False


async def test_an_ssip_text_that_never_ends_is_dropped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "speechd.sock"
    server = SsipServer(
        bind_ssip_socket(path, 0o600),
        NoSpeaker(),  # type: ignore[arg-type]  # nothing gets as far as the speaker
        UtteranceBuilder(Config().api),
        limits=Limits(idle_timeout=300, line_timeout=15),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        client = await SsipClient.open(path)
        assert await client.ask(b"SPEAK\r\n") == [b"230 OK RECEIVING DATA"]
        started = trio.current_time()
        await client.stream.send_all(b"Every line ends,\r\nbut the text never does.\r\n")
        assert await read_to_end(client.stream) == (
            b"300 ERR a line unfinished after 15 s: disconnected\r\n"
        )
        assert trio.current_time() - started == pytest.approx(15)
        nursery.cancel_scope.cancel()


# ---- how much: unfinished input --------------------------------------------------------------


async def test_unfinished_lines_beyond_the_budget_cost_their_largest_holder(
    tmp_path: Path,
) -> None:
    config = config_in(tmp_path, max_pending_bytes=131072)
    async with open_daemon(config) as daemon:
        big, also_big, small = [await LineClient.open(daemon.socket_path) for _ in range(3)]
        pad = b'{"cmd": "ping", "pad": "' + b"x" * 60_000
        await big.send(pad)
        await trio.testing.wait_all_tasks_blocked()
        await also_big.send(pad)
        await small.send(pad[:20_000])
        budget = "too much unfinished input (all clients together over 131072 bytes)"
        assert json_lines(await read_to_end(big.stream)) == [
            {"event": "error", "error": f"{budget}: disconnected"}
        ]
        for client in (also_big, small):  # the others finish their lines
            await client.send(b'"}\n')
            assert (await client.event()) == {"event": "ok", "cmd": "ping", "line": 1}
        assert daemon.control.door.budget.total == 0


# ---- a daemon process: its RSS, its fds, its log ---------------------------------------------


@dataclass
class Process:
    process: trio.Process
    log: list[str]
    logged: trio.Event

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self, field: str = "VmRSS") -> int:
        """Bytes, from /proc."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1)) * 1024  # type: ignore[union-attr]

    async def wait_for(self, text: str) -> str:
        """The first log line holding `text` (waits for it)."""
        with trio.fail_after(30):
            while not (found := [line for line in self.log if text in line]):
                self.logged = trio.Event()
                await self.logged.wait()
        return found[0]


@asynccontextmanager
async def daemon_process(directory: Path) -> AsyncIterator[Process]:
    """`playspeak run` with both doors, its log read line by line; READY=1 before it yields."""
    notify_path = directory / "notify"
    notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await notify.bind(str(notify_path))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PLAYAI_API_KEY", "PLAYAI_USER_ID", "PLAYSPEAK_API_URL", "PLAYSPEAK_CONFIG")
    }
    env |= {
        "PLAYSPEAK_SOCKET": str(directory / "playspeak.sock"),
        "PLAYSPEAK_SSIP_SOCKET": str(directory / "speechd.sock"),
        "PLAYSPEAK_DEVICE": f"wav:{directory}/out.wav",
        "NOTIFY_SOCKET": str(notify_path),
    }
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "playspeak", "run"], env=env, stderr=subprocess.PIPE
    )
    handle = Process(process, [], trio.Event())

    async def read_log() -> None:
        assert process.stderr is not None
        pending = b""
        while chunk := await process.stderr.receive_some(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            handle.log += [line.decode(errors="replace") for line in lines]
            handle.logged.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_log)
            with trio.fail_after(30):
                while b"READY=1" not in await notify.recv(4096):
                    pass
            yield handle
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
        notify.close()


async def test_four_hundred_unterminated_speaks_cost_little_memory(tmp_path: Path) -> None:
    body = b"SPEAK\r\n" + (b"x" * 98 + b"\r\n") * 2550  # 255 KB, and no dot line
    async with daemon_process(tmp_path) as daemon:
        # First the daemon says something (its first utterance loads the decoder and more).
        watcher = await LineClient.open(tmp_path / "playspeak.sock")
        assert (await watcher.command(cmd="subscribe"))["event"] == "ok"
        warm = await SsipClient.open(tmp_path / "speechd.sock")
        assert [r[:3] for r in await warm.ask(SPEAK, 3)] == [b"208", b"230", b"225"]
        assert (await watcher.events_until_end({"ssip-1"}))[-1]["event"] == "finished"
        before = daemon.rss()
        senders: list[trio.SocketStream] = []

        async def send() -> None:
            stream = await trio.open_unix_socket(str(tmp_path / "speechd.sock"))
            senders.append(stream)
            with contextlib.suppress(trio.BrokenResourceError):  # refused, or dropped
                await stream.send_all(body)

        for _wave in range(8):  # in waves below the listen backlog (128)
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(send)
        peak = daemon.rss("VmHWM") - before
        during = daemon.rss() - before
        for stream in senders:
            await stream.aclose()
        # Served as before (the daemon has seen them go once it answers the next line).
        assert (await watcher.command(cmd="ping"))["event"] == "ok"
        assert [r[:3] for r in await warm.ask(b"SPEAK\r\nAgain.\r\n.\r\n", 2)] == [b"230", b"225"]
        after = daemon.rss() - before
    mib = 1 << 20
    print(f"RSS rise: peak {peak / mib:.1f} MiB, held {during / mib:.1f}, after {after / mib:.1f}")
    assert peak < 20 * mib and during < 20 * mib
    assert after < 10 * mib, "what the flood took is given back (most of it)"
    budget = [line for line in daemon.log if "bytes of unfinished input" in line]
    assert len([line for line in budget if "WARNING" in line]) == 1, "not one per client"
    assert not [line for line in daemon.log if "Traceback" in line]


async def test_out_of_file_descriptors_one_warning_and_back_off(tmp_path: Path) -> None:
    async with daemon_process(tmp_path) as daemon:
        path = tmp_path / "playspeak.sock"
        client = await LineClient.open(path)
        assert (await client.command(cmd="ping"))["event"] == "ok"
        in_use = len(os.listdir(f"/proc/{daemon.pid}/fd"))
        _, hard = resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (in_use + 20, hard))
        hogs = [await trio.open_unix_socket(str(path)) for _ in range(40)]  # 20 wait in backlog
        await daemon.wait_for("control: cannot accept connections: EMFILE")
        await trio.sleep(1)  # out of fds for a while (not a synchronisation): attempts go on
        for hog in hogs:
            await hog.aclose()
        again = await daemon.wait_for("control: accepting connections again")
        attempts = int(re.search(r"\((\d+) attempts failed\)", again).group(1))  # type: ignore[union-attr]
        assert (await client.command(cmd="ping"))["event"] == "ok"
        late = await LineClient.open(path)
        assert (await late.command(cmd="ping"))["event"] == "ok"
    print("\n".join(line for line in daemon.log if "accept" in line))
    assert len([line for line in daemon.log if "cannot accept" in line]) == 1 <= attempts
    assert not [line for line in daemon.log if "Traceback" in line or "trio.serve" in line]


# ---- utterance ids and what cancel answers, SSIP text ---------------------------------------


async def test_ids_are_unique_and_cancel_says_what_it_did_not_find(tmp_path: Path) -> None:
    async with open_daemon(config_in(tmp_path)) as daemon:
        stream = await trio.open_unix_socket(str(daemon.socket_path))
        # The id the daemon would give next: a client takes it first.
        upcoming = f"u{int(next_auto_id()[1:]) + 1}"
        # One write: every line is read before the first utterance can end.
        lines = [
            {"cmd": "speak", "text": "First.", "id": "door"},
            {"cmd": "speak", "text": "Again.", "id": "door"},
            {"cmd": "speak", "text": "Mine.", "id": upcoming},
            {"cmd": "speak", "text": "No id of mine."},
            {"cmd": "speak", "text": "Mine again.", "id": upcoming},
            {"cmd": "cancel", "id": "nope"},
            {"cmd": "cancel", "id": "door"},
            {"cmd": "speak", "text": "Free again.", "id": "door"},
        ]
        await stream.send_all(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
        await stream.send_eof()
        lines_back = json_lines(await read_to_end(stream))
    answers = [e for e in lines_back if e["event"] in ("ok", "error")]
    auto = answers[3].pop("id")
    assert auto not in (upcoming, "door") and auto.startswith("u"), "the auto id skips taken ones"
    taken = "is taken: an utterance with it is queued or speaking"
    assert answers == [
        {"event": "ok", "cmd": "speak", "line": 1, "id": "door"},
        {"event": "error", "error": f"id 'door' {taken}", "line": 2},
        {"event": "ok", "cmd": "speak", "line": 3, "id": upcoming},
        {"event": "ok", "cmd": "speak", "line": 4},
        {"event": "error", "error": f"id '{upcoming}' {taken}", "line": 5},
        {"event": "error", "error": "no utterance with id 'nope' is queued or speaking", "line": 6},
        {"event": "ok", "cmd": "cancel", "line": 7, "cancelled": ["door"]},
        {"event": "ok", "cmd": "speak", "line": 8, "id": "door"},
    ]
    ends = {e["id"]: e["event"] for e in lines_back if e["event"] in ENDINGS}
    assert ends == {"door": "finished", upcoming: "finished", auto: "finished"}, lines_back


def test_ssip_message_ids_skip_ids_taken_by_control_clients() -> None:
    hub = EventHub()
    hub.live["ssip-1"] = Utterance("taken", {}, id="ssip-1")
    ids = iter(range(1, 5))
    assert hub.fresh_id(lambda: f"ssip-{next(ids)}") == "ssip-2"
    hub.reserved.add("ssip-3")  # an SSIP block's, until it ends
    assert hub.taken("ssip-3") and hub.fresh_id(lambda: f"ssip-{next(ids)}") == "ssip-4"


async def test_ssip_refuses_control_characters_as_the_control_socket_does(
    tmp_path: Path,
) -> None:
    async with open_daemon(config_in(tmp_path)) as daemon:
        client = await SsipClient.open(tmp_path / "speechd.sock")
        replies = await client.ask(b"SPEAK\r\nbell\x07 and nul\x00\r\n.\r\nCHAR \x1b\r\n", 3)
        assert replies == [
            b"230 OK RECEIVING DATA",
            b"501 ERR INVALID ENCODING (TEXT HOLDS THE CONTROL CHARACTER U+0007 AT CHARACTER 5)",
            b"501 ERR INVALID ENCODING (TEXT HOLDS THE CONTROL CHARACTER U+001B AT CHARACTER 1)",
        ]
        assert daemon.speaker.hub.counters["queued"] == 0
