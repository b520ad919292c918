"""systemd glue in-process: which passed socket is the control socket, the watchdog interval,
STATUS= from the daemon's state, sd_notify datagrams, and the notifier's timing (fake clock)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from playspeak import systemd
from playspeak.audio.devicestate import DeviceState
from playspeak.health import DeviceHealth, Health, LinkHealth
from playspeak.playai.linkstate import LinkState
from playspeak.systemd import Notifier, describe, fd_order, watchdog_interval


def needs(program: str, package: str) -> str:
    """The path of a program the test needs; fails (not skips) with how to install it."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} not found: apt-get install {package}", pytrace=False)
    return path


# ---- which descriptor is the control socket ------------------------------------------------------


def test_without_names_the_first_passed_socket_is_the_control_socket() -> None:
    assert fd_order(1, None) == [3]
    assert fd_order(2, None) == [3, 4]


def test_the_socket_named_control_comes_first() -> None:
    assert fd_order(3, ["ssip", "control", "extra"]) == [4, 3, 5]
    assert fd_order(1, ["control"]) == [3]


def test_names_without_control_or_not_matching_the_count_are_ignored() -> None:
    assert fd_order(2, ["a", "b"]) == [3, 4]
    assert fd_order(2, ["control"]) == [3, 4]


def test_a_count_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError):
        fd_order(0, None)


def test_sockets_for_another_process_are_not_taken() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "control"}
    assert systemd.listen_sockets(env) == []
    assert env["LISTEN_FDS"] == "1"  # not ours: left alone


def test_garbage_in_listen_fds_is_ignored() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "many"}
    assert systemd.listen_sockets(env) == []
    assert "LISTEN_FDS" not in env and "LISTEN_PID" not in env


def test_the_control_socket_is_picked_by_name_from_two_passed_sockets(tmp_path: Path) -> None:
    """systemd-socket-activate passes ssip (fd 3) and control (fd 4); control comes first, and the
    LISTEN_* variables are gone from the environment afterwards."""
    ssip, control = tmp_path / "ssip.sock", tmp_path / "control.sock"
    probe = (
        "import json, os; from playspeak.systemd import listen_sockets; "
        "s = listen_sockets(); "
        "print(json.dumps([[x.getsockname(), x.fileno(), os.get_inheritable(x.fileno())] "
        "for x in s] + [[k for k in os.environ if k.startswith('LISTEN_')]]))"
    )
    with subprocess.Popen(
        [
            needs("systemd-socket-activate", "systemd"),
            "-l",
            str(ssip),
            "-l",
            str(control),
            "--fdname=ssip:control",
            sys.executable,
            "-c",
            probe,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None and proc.stdout is not None
            _wait_for_line(proc.stderr, f"Listening on {control}")
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(control))  # the first connection starts the program
                output, _ = proc.communicate(timeout=20)
        finally:
            proc.kill()
    *sockets, leftover = json.loads(output)
    assert sockets == [[str(control), 4, False], [str(ssip), 3, False]]
    assert leftover == []


def _wait_for_line(stream: Any, text: str) -> None:
    """Read systemd-socket-activate's stderr until `text` (it prints once it listens)."""
    for line in stream:
        if text in line:
            return
    raise AssertionError(f"no {text!r} from systemd-socket-activate")


# ---- the watchdog interval -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}, 0.2),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert watchdog_interval(env) == interval


# ---- STATUS= -------------------------------------------------------------------------------------


CONNECTED = (LinkHealth(LinkState.CONNECTED, "", "Play3.0-mini"),)


def state(**changes: Any) -> Health:
    """The daemon's snapshot for systemd (Daemon.health()): idle, link connected, device open."""
    return dataclasses.replace(Health(links=CONNECTED), **changes)


def link(state: LinkState, error: str = "") -> tuple[LinkHealth, ...]:
    return (LinkHealth(state, error),)


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (state(), "idle"),
        (state(speaking="u7"), "speaking u7"),
        (state(speaking="u7", queued=2), "speaking u7 (2 queued)"),
        (state(paused=True, queued=1), "paused (1 queued)"),
        (
            state(links=link(LinkState.RECONNECTING, "OSError: refused")),
            "reconnecting to the TTS service: OSError: refused",
        ),
        (
            state(links=link(LinkState.AUTH_FAILED, "401 from /auth")),
            "reconnecting: the TTS service refused the credentials: 401 from /auth",
        ),
        (state(links=link(LinkState.CONNECTING)), "connecting to the TTS service"),
        (state(links=link(LinkState.STARTING)), "connecting to the TTS service"),
        (state(links=link(LinkState.IDLE)), "idle"),  # closed by choice: nothing is wrong
        (
            state(speaking="u7", links=link(LinkState.STALLED, "no audio from the TTS service")),
            "stalled: no audio from the TTS service",
        ),
        (state(device=DeviceHealth(running=False)), "no audio device"),
        (
            state(device=DeviceHealth(DeviceState.LOST, False, "stream stalled"), queued=1),
            "no audio device (1 queued): stream stalled",
        ),
        (state(device=DeviceHealth(DeviceState.CLOSED)), "no audio device"),
        (state(device=DeviceHealth(DeviceState.OPEN, True, "")), "idle"),
    ],
)
def test_status_line(status: Health, text: str) -> None:
    assert describe(status) == text


@pytest.mark.parametrize(
    ("links", "progress", "up"),
    [
        ((), True, False),
        (CONNECTED, True, True),
        (link(LinkState.IDLE), True, False),
        (link(LinkState.RECONNECTING), True, False),
        (link(LinkState.AUTH_FAILED), True, False),
        (link(LinkState.STALLED), False, False),
        (CONNECTED + link(LinkState.STALLED), False, True),  # one model stalled, one up
    ],
)
def test_watchdog_and_readiness_decisions(
    links: tuple[LinkHealth, ...], progress: bool, up: bool
) -> None:
    """WATCHDOG=1 stops only while a link is stalled; READY=1 (ready_when "link") needs one
    connected: decided on the link states' enum members."""
    health = state(links=links)
    assert (systemd.progressing(health), systemd.link_up(health)) == (progress, up)


def test_every_link_state_has_a_status_line() -> None:
    """A state added to LinkState gets a line (and does not crash the notifier)."""
    for member in LinkState:
        assert describe(state(links=link(member, "why")))


# ---- sd_notify datagrams -------------------------------------------------------------------------


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


def test_notify_sends_one_datagram(listener: socket.socket) -> None:
    assert systemd.notify("READY=1\nSTATUS=idle")
    assert listener.recv(4096) == b"READY=1\nSTATUS=idle"


def test_notify_to_the_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"playspeak-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_without_systemd_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_notify_never_blocks_on_a_supervisor_that_does_not_read(listener: socket.socket) -> None:
    """The trio loop must not stall when the receiver's queue is full: the message is dropped."""
    # beyond the receiver's queue: the kernel's 10 by default, 512 where systemd set it
    try:
        queue = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    except (OSError, ValueError):
        queue = 512
    sent = [systemd.notify("WATCHDOG=1") for _ in range(queue + 50)]
    assert sent[0] is True and sent[-1] is False


def test_notify_to_a_missing_socket_reports_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert systemd.notify("READY=1") is False


# ---- the notifier task (fake clock) --------------------------------------------------------------


class FakeDaemon:
    def __init__(self) -> None:
        self.state = state()

    def health(self) -> Health:
        return self.state


class Sent:
    """Captures what the notifier sends, with the (fake) time it was sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, str]] = []

    def __call__(self, message: str) -> bool:
        self.messages.append((trio.current_time(), message))
        return True

    def lines(self, prefix: str) -> list[tuple[float, str]]:
        return [
            (t, line) for t, m in self.messages for line in m.split("\n") if line.startswith(prefix)
        ]


@pytest.fixture
def under_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")  # never used: `send` is captured
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)


async def test_ready_with_the_status_before_start_returns(
    under_systemd: None, autojump_clock: trio.testing.MockClock
) -> None:
    sent = Sent()
    async with trio.open_nursery() as nursery:
        await nursery.start(Notifier(FakeDaemon(), send=sent).run)
        assert [m for _, m in sent.messages] == ["READY=1\nSTATUS=idle"]
        nursery.cancel_scope.cancel()


async def test_status_is_sent_only_when_it_changes(
    under_systemd: None, autojump_clock: trio.testing.MockClock
) -> None:
    daemon, sent = FakeDaemon(), Sent()
    async with trio.open_nursery() as nursery:
        await nursery.start(Notifier(daemon, send=sent).run)
        await trio.sleep(3.5)  # three looks, nothing changed
        daemon.state = state(speaking="u1")
        await trio.sleep(1.0)
        daemon.state = state()
        await trio.sleep(2.0)
        nursery.cancel_scope.cancel()
    assert sent.lines("STATUS=") == [
        (0.0, "STATUS=idle"),
        (4.0, "STATUS=speaking u1"),
        (5.0, "STATUS=idle"),
    ]
    assert not sent.lines("WATCHDOG=")  # no WatchdogSec=, no pings


async def test_watchdog_pings_at_half_the_interval(
    under_systemd: None, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")  # WatchdogSec=10
    sent = Sent()
    async with trio.open_nursery() as nursery:
        await nursery.start(Notifier(FakeDaemon(), send=sent).run)
        await trio.sleep(21)
        nursery.cancel_scope.cancel()
    assert [t for t, _ in sent.lines("WATCHDOG=1")] == [0.0, 5.0, 10.0, 15.0, 20.0]


async def test_a_short_watchdog_also_looks_at_the_status_more_often(
    under_systemd: None, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    daemon, sent = FakeDaemon(), Sent()
    async with trio.open_nursery() as nursery:
        await nursery.start(Notifier(daemon, send=sent).run)
        await trio.sleep(0.25)
        daemon.state = state(paused=True)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert sent.lines("STATUS=")[-1] == (pytest.approx(0.3), "STATUS=paused")


async def test_ready_when_link_waits_for_the_websocket(
    under_systemd: None, autojump_clock: trio.testing.MockClock
) -> None:
    daemon, sent = FakeDaemon(), Sent()
    daemon.state = state(links=link(LinkState.CONNECTING))
    async with trio.open_nursery() as nursery:
        await nursery.start(Notifier(daemon, ready_when="link", send=sent).run)
        await trio.sleep(2.5)
        assert not sent.lines("READY=")
        daemon.state = state()
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert sent.lines("READY=") == [(3.0, "READY=1")]
    assert [line for _, line in sent.lines("STATUS=")] == [
        "STATUS=connecting to the TTS service",
        "STATUS=idle",
    ]


async def test_not_under_systemd_the_notifier_sends_nothing_and_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    sent = Sent()
    async with trio.open_nursery() as nursery:
        await nursery.start(Notifier(FakeDaemon(), send=sent).run)
    assert sent.messages == []


def test_ready_when_must_be_known() -> None:
    with pytest.raises(ValueError, match="ready_when"):
        Notifier(FakeDaemon(), ready_when="never")


def test_status_lines_are_one_short_line_without_secrets() -> None:
    from playspeak.log import register_secret

    register_secret("sk-status-secret")
    daemon, sent = FakeDaemon(), Sent()
    error = "refused sk-status-secret\nwss://x/?token=abc " + "x" * 400
    daemon.state = state(links=link(LinkState.RECONNECTING, error))
    notifier = Notifier(daemon, send=lambda m: sent.messages.append((0.0, m)) or True)
    notifier.update()
    ((_, line),) = sent.lines("STATUS=")
    assert "\n" not in line and len(line) <= len("STATUS=") + 200
    assert "sk-status-secret" not in line and "token=abc" not in line


class BrokenDaemon:
    def health(self) -> Health:
        raise KeyError("speaker")


async def test_a_status_that_fails_does_not_stop_ready_or_the_watchdog(
    under_systemd: None, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    sent = Sent()
    async with trio.open_nursery() as nursery:
        await nursery.start(Notifier(BrokenDaemon(), send=sent).run)
        await trio.sleep(2.5)
        nursery.cancel_scope.cancel()
    assert [m for _, m in sent.messages] == ["READY=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"]


async def test_the_watchdog_is_not_fed_while_a_reply_is_overdue(
    under_systemd: None, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Speaking and idle are progress; a stalled link is not: systemd's watchdog then fires
    unless the link fails over first."""
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")  # WatchdogSec=10: fed every 5 s
    daemon, sent = FakeDaemon(), Sent()
    async with trio.open_nursery() as nursery:
        await nursery.start(Notifier(daemon, send=sent).run)
        daemon.state = state(speaking="u1", links=CONNECTED)
        await trio.sleep(6)
        daemon.state = state(links=link(LinkState.STALLED, "no audio within 5 s"))
        await trio.sleep(12)
        daemon.state = state(links=link(LinkState.RECONNECTING, "refused"))
        await trio.sleep(6)
        nursery.cancel_scope.cancel()
    assert [t for t, _ in sent.lines("WATCHDOG=1")] == [0.0, 5.0, 20.0]
    assert "STATUS=stalled: no audio within 5 s" in [line for _, line in sent.lines("STATUS=")]
