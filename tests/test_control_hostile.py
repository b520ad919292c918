"""Hostile and broken clients: each gets a JSON error naming what was wrong where a reply is
possible, and the daemon goes on serving every other client.

The daemon runs in-process with the embedded local server (no pacing) and writes its audio to a
WAV file, so spoken junk finishes at once. The fuzzing at the end runs the daemon in a thread
and drives it with plain blocking sockets, one connection per Hypothesis example.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playspeak.config import (
    AudioConfig,
    Config,
    ControlConfig,
    LocalServerConfig,
    SpeechConfig,
)
from playspeak.control import protocol as p
from playspeak.control.ratelimit import TokenBucket
from playspeak.daemon import Daemon, open_daemon
from playspeak.errors import ProtocolError

from daemon_helpers import LineClient


def fast_config(tmp_path: Path, *, max_queue: int = 100, **control: Any) -> Config:
    """Speech that finishes at once: unpaced local server, generated voice, WAV file output."""
    return Config(
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock"), **control),
        audio=AudioConfig(device=f"wav:{tmp_path}/out.wav"),
        speech=SpeechConfig(max_queue=max_queue),
        local_server=LocalServerConfig(first_byte_delay=0, realtime_factor=0, synth="generated"),
    )


@pytest.fixture
def daemon_config(tmp_path: Path) -> Config:
    return fast_config(tmp_path)


async def read_to_end(stream: trio.abc.ReceiveStream) -> list[dict]:
    """Every line until the daemon closes the connection, each parsed as JSON."""
    data = b""
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:  # closed with our unread bytes still queued
            break
        if not chunk:
            break
        data += chunk
    assert data.endswith(b"\n") or not data, data[-200:]
    return [json.loads(line) for line in data.splitlines()]


async def say(client: LineClient, text: str) -> list[dict]:
    """Speak `text` and return its events up to the end; it must have been accepted."""
    reply = await client.command(cmd="speak", text=text)
    assert reply["event"] == "ok", reply
    return await client.events_until_end({reply["id"]})


def no_tracebacks(records: list[logging.LogRecord]) -> None:
    bad = [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


# ---- the I/O-free cores ---------------------------------------------------------------------


def test_bucket_admits_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.25) is False  # half a token
    assert bucket.take(100.5) is True  # one token after 0.5 s at 2/s
    assert bucket.take(100.5) is False
    assert [bucket.take(110.0) for _ in range(4)] == [True, True, True, False]  # capped at 3


def test_bucket_rate_zero_is_no_limit_and_time_never_runs_backwards() -> None:
    assert all(TokenBucket(rate=0, burst=0, now=0).take(0) for _ in range(10_000))
    bucket = TokenBucket(rate=1, burst=1, now=50.0)
    assert bucket.take(50.0) is True
    assert bucket.take(10.0) is False  # a clock going back mints nothing
    assert bucket.take(50.5) is False
    assert bucket.take(51.0) is True


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('{"cmd":"speak","text":"a\\udc80b"}', "invalid JSON: a \\u escape names a lone surrogate"),
        ('{"cmd":"speak","text":"x","id":"\\ud800"}', "lone surrogate"),
        ('{"a":' + "[" * 100_000, "invalid JSON: nested too deeply"),
        ('{"cmd":"volume","level":' + "9" * 5000 + "}", "a number with too many digits"),
        ('{"cmd":"volume","level":1' + "0" * 400 + "}", "must be between 0 and 100"),
        ("\x00\x01hello", "control character U+0000 at character 1"),
        ("\x1b[31mred alert", "control character U+001B at character 1"),
        ('{"cmd":"speak","text":"bell\\u0007"}', "control character U+0007 at character 5"),
        ('{"cmd":"' + "x" * 5000 + '"}', "unknown command 'xxxxxxxx"),
        ('{"cmd": "ping"', "invalid JSON: Expecting ',' delimiter at column 15"),
    ],
)
def test_hostile_lines_are_protocol_errors(line: str, error: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        p.parse_line(line)
    assert error in str(caught.value)
    assert len(str(caught.value)) < 300  # a bad value is named, not repeated whole


def test_tabs_and_line_breaks_inside_json_text_are_fine() -> None:
    assert p.parse_line('{"text":"one\\ttwo\\nthree"}') == p.Speak(text="one\ttwo\nthree")


def test_a_reply_with_a_lone_surrogate_is_still_valid_json() -> None:
    assert json.loads(p.encode("x", id="\ud800")) == {"event": "x", "id": "\ud800"}


# ---- one daemon, broken clients -------------------------------------------------------------


async def test_binary_junk_gets_errors_and_others_are_served(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    junk = await trio.open_unix_socket(str(daemon.socket_path))
    await junk.send_all(
        b"\xff\xfe\x00\x80junk\n"  # not UTF-8
        b"\x00\x01\x02\x03\n"  # UTF-8, but control characters
        b"\x1b[2J\x1b[H\n"  # a terminal escape sequence
        b'{"cmd": 17}\n'
        b'{"cmd": "speak", "text": ["not", "a", "string"]}\n'
        b'{"cmd": "launch"}\n'
        b"\r\n\n"  # blank lines: no reply, but they are counted
        b'{"cmd": "ping"}\n'
    )
    await junk.send_eof()
    lines = await read_to_end(junk)
    assert lines == [
        {"event": "error", "error": "invalid UTF-8 at byte 0", "line": 1},
        {
            "event": "error",
            "error": "text holds the control character U+0000 at character 1",
            "line": 2,
        },
        {
            "event": "error",
            "error": "text holds the control character U+001B at character 1",
            "line": 3,
        },
        {"event": "error", "error": "field 'cmd' must be a string", "line": 4},
        {"event": "error", "error": "field 'text' must be a string", "line": 5},
        {
            "event": "error",
            "error": f"unknown command 'launch' (known: {', '.join(p.COMMAND_NAMES)})",
            "line": 6,
        },
        {"event": "ok", "cmd": "ping", "line": 9},
    ]
    client = await LineClient.open(daemon.socket_path)
    assert [e["event"] for e in await say(client, "Still here.")] == [
        "queued",
        "started",
        "finished",
    ]
    no_tracebacks(caplog.records)


async def test_over_long_lines_and_over_long_text(tmp_path: Path) -> None:
    async with open_daemon(fast_config(tmp_path, max_line_bytes=30_000)) as daemon:
        client = await LineClient.open(daemon.socket_path)
        await client.send(b"x" * 70_000 + b"\n")  # arrives in pieces: refused once, skipped
        too_long = await client.command(cmd="speak", text="y" * 20_001)  # the first answer
        assert too_long == {
            "event": "error",
            "error": "line too long (limit 30000 bytes)",
            "line": 1,
        }
        assert (await client.event()) == {
            "event": "error",
            "error": "text is 20001 characters; Play3.0-mini takes at most 20000",
            "line": 2,
        }
        assert (await client.command(cmd="ping")) == {"event": "ok", "cmd": "ping", "line": 3}


async def test_the_rate_limit_refuses_lines_beyond_the_burst(tmp_path: Path) -> None:
    config = fast_config(tmp_path, rate_limit=1.0, rate_burst=5)
    async with open_daemon(config) as daemon:
        flood = await trio.open_unix_socket(str(daemon.socket_path))
        # One write: the lines arrive together, far faster than one token per second.
        await flood.send_all(b'{"cmd":"ping"}\n' * 8 + b'{"cmd":"speak","text":"Not said."}\n')
        await flood.send_eof()
        lines = await read_to_end(flood)
        assert lines[:5] == [{"event": "ok", "cmd": "ping", "line": n} for n in range(1, 6)]
        assert lines[5:] == [
            {"event": "error", "error": "rate limit exceeded (1 lines/s)", "line": n}
            for n in range(6, 10)
        ]
        assert daemon.speaker.hub.counters["queued"] == 0  # the refused line did nothing
        other = await LineClient.open(daemon.socket_path)  # its own bucket
        assert [e["event"] for e in await say(other, "Me too.")] == [
            "queued",
            "started",
            "finished",
        ]


async def test_a_connection_flood_of_one_uid_makes_room_with_its_idle_longest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_daemon(fast_config(tmp_path, max_clients=50)) as daemon:
        normal = await LineClient.open(daemon.socket_path)
        assert (await normal.command(cmd="ping"))["event"] == "ok"
        answers: list[dict] = []
        hogs: list[trio.SocketStream] = []

        async def hog() -> None:
            stream = await trio.open_unix_socket(str(daemon.socket_path))
            hogs.append(stream)
            with contextlib.suppress(trio.BrokenResourceError):  # refused before it got there
                await stream.send_all(b'{"cmd":"ping"}\n')
            first = LineClient(stream)
            try:
                answers.append(await first.event())
            except trio.BrokenResourceError:  # refused, and our ping was never read
                answers.append({"event": "reset"})

        # In waves below the listen backlog (128): a non-blocking connect that finds the
        # backlog full fails with EAGAIN, which trio reports as connected (then ENOTCONN).
        for _wave in range(4):
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(hog)
        assert len(hogs) == 200
        # Every newcomer is served: the connection idle the longest (nothing in flight) of
        # the same uid gives way, and is told why; nobody is refused.
        made_room = {"event": "error", "error": "idle, and the door is full: disconnected"}
        ok = {"event": "ok", "cmd": "ping", "line": 1}
        assert all(a in (ok, made_room) for a in answers), [a for a in answers if a != ok][:3]
        fresh = await LineClient.open(daemon.socket_path)
        assert [e["event"] for e in await say(fresh, "Served.")] == [
            "queued",
            "started",
            "finished",
        ]
        warnings = [r for r in caplog.records if "makes room" in r.getMessage()]
        assert len([r for r in warnings if r.levelno == logging.WARNING]) == 1  # not 151
        assert not [r for r in caplog.records if "refusing client" in r.getMessage()]

        for stream in hogs:
            await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()  # the daemon has seen them all go
        assert len(daemon.control.clients) <= 2  # fresh, and normal unless it made room
        late = await LineClient.open(daemon.socket_path)
        assert (await late.command(cmd="ping"))["event"] == "ok"


async def test_a_client_that_never_reads_is_dropped_and_others_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_daemon(fast_config(tmp_path, client_buffer=4)) as daemon:
        hog = await LineClient.open(daemon.socket_path)
        assert (await hog.command(cmd="subscribe"))["event"] == "ok"
        # From here on the hog reads nothing. Shrink the daemon's send buffer to it, so that
        # the kernel holds a few lines, not thousands, before the outbox fills.
        [session] = [s for s in daemon.control.clients if s.subscribed]
        session.stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)

        watcher = await LineClient.open(daemon.socket_path)
        assert (await watcher.command(cmd="subscribe"))["event"] == "ok"
        speaker = await LineClient.open(daemon.socket_path)
        said = 0
        while session in daemon.control.clients:
            assert said < 500, "the client that does not read was never dropped"
            events = await say(speaker, f"Announcement number {said}.")
            assert events[-1]["event"] == "finished"
            said += 1
        assert session.dropped_reason == "not reading its events"
        # Everyone else saw everything, and goes on being served.
        seen = [await watcher.event() for _ in range(3 * said)]
        assert [e["event"] for e in seen] == ["queued", "started", "finished"] * said
        assert [e["event"] for e in await say(speaker, "After.")] == [
            "queued",
            "started",
            "finished",
        ]
        # The hog finds what the kernel held, then the end of the connection.
        assert len(await read_to_end(hog.stream)) < 3 * said
        assert any(
            "is not reading its events: disconnected" in r.getMessage() for r in caplog.records
        )
        no_tracebacks(caplog.records)


async def test_clients_that_disconnect_mid_line(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = await LineClient.open(daemon.socket_path)
    assert (await watcher.command(cmd="subscribe"))["event"] == "ok"
    # Gone in the middle of a JSON command: the fragment is its last line, its error unread.
    broken = await trio.open_unix_socket(str(daemon.socket_path))
    await broken.send_all(b'{"cmd": "speak", "te')
    await broken.aclose()
    # Gone right after asking: its utterance is still said, to nobody but the subscriber.
    leaver = await trio.open_unix_socket(str(daemon.socket_path))
    await leaver.send_all(b'{"cmd": "speak", "text": "Said anyway.", "id": "orphan"}\n')
    await leaver.aclose()
    orphan = [e["event"] for e in await watcher.events_until_end({"orphan"})]
    assert orphan == ["queued", "started", "finished"]
    # Half-closed after a line without its newline (`printf 'text' | nc -N`, or a slowloris
    # that gives up): a line cut short is not acted on, and the client is told so.
    cut = await trio.open_unix_socket(str(daemon.socket_path))
    await cut.send_all(b'{"cmd":"ping"}\nNo newline at the end')
    await cut.send_eof()
    assert await read_to_end(cut) == [
        {"event": "ok", "cmd": "ping", "line": 1},
        {"event": "error", "error": "the last line has no newline: not acted on", "line": 2},
    ]
    assert daemon.speaker.hub.counters["queued"] == 1  # the orphan alone
    no_tracebacks(caplog.records)


# ---- fuzzing through the socket -------------------------------------------------------------


@dataclass
class ThreadedDaemon:
    """A daemon on its own trio thread, driven with blocking sockets from the test thread."""

    path: Path
    errors: list[BaseException] = field(default_factory=list)
    opened: int = 0
    closed: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def exchange(self, data: bytes, *, read: bool = True) -> list[dict]:
        """Send `data`, then EOF; every line back must be a JSON object with an "event". Returns
        once the daemon is done with the connection, so examples never overlap."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)  # a hang fails the test instead of stalling it
            sock.connect(str(self.path))
            self.opened += 1
            sock.sendall(data)
            if read:
                sock.shutdown(socket.SHUT_WR)
                received = b"".join(iter(lambda: sock.recv(65536), b""))
        # Not reading: gone mid-line, its replies unread (the daemon must cope with that).
        self._settle()
        if not read:
            return []
        assert received.endswith(b"\n") or not received, received[-200:]
        lines = [json.loads(line) for line in received.splitlines()]
        assert all(isinstance(line, dict) and "event" in line for line in lines), lines
        return lines

    def on_close(self, session: object) -> None:
        """Called on the daemon's thread when it is done with a client."""
        with self.changed:
            self.closed += 1
            self.changed.notify_all()

    def _settle(self) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.closed >= self.opened, timeout=30)


@contextmanager
def daemon_in_thread(config: Config) -> Iterator[ThreadedDaemon]:
    ready: queue.Queue[tuple[trio.lowlevel.TrioToken, trio.Event] | BaseException] = queue.Queue()
    handle = ThreadedDaemon(config.control.socket_path)

    async def main() -> None:
        stop = trio.Event()
        async with open_daemon(config) as daemon:
            forget = daemon.control.on_close
            assert forget is not None

            def closed(session: Any) -> None:
                forget(session)
                handle.on_close(session)

            daemon.control.on_close = closed
            ready.put((trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as e:
            handle.errors.append(e)
            ready.put(e)

    thread = threading.Thread(target=run, name="fuzzed-daemon", daemon=True)
    thread.start()
    started = ready.get(timeout=30)
    if isinstance(started, BaseException):
        raise started
    token, stop = started
    try:
        yield handle
    finally:
        if thread.is_alive():
            trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the daemon did not stop"
    assert not handle.errors, handle.errors


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def every_log_record() -> Iterator[list[logging.LogRecord]]:
    """Every record logged anywhere (any thread, any level) while inside."""
    handler, root = _Collect(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def fuzzed(tmp_path: Path, batch_priority: None) -> Iterator[ThreadedDaemon]:
    """A small queue, so that junk also meets "queue full"; then, after the examples, a normal
    client is served and nothing was logged with a traceback. Hypothesis keeps a core busy
    for seconds: batch work, yielding to the audio of the tests beside it."""
    with every_log_record() as records, daemon_in_thread(fast_config(tmp_path, max_queue=3)) as d:
        yield d
        # Whatever junk is still queued goes; then one plain announcement, heard whole.
        lines = d.exchange(
            b'{"cmd":"cancel"}\n{"cmd":"resume"}\n{"cmd":"speak","text":"Still alive."}\n'
        )
        assert [line["event"] for line in lines] == [
            "ok",
            "ok",
            "ok",
            "queued",
            "started",
            "finished",
        ]
    no_tracebacks(records)
    assert any("line 1: cancel" in r.getMessage() for r in records)  # the log was collected


FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is a bug, not luck
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Whatever a line did, the speaker must not stay paused for the next example.
RESUME = b'\n{"cmd":"resume"}\n'

# Strings with the odd lone surrogate (JSON writes it as a \u escape; Hypothesis never makes one).
halves = st.integers(0xD800, 0xDFFF).map(chr)
strings = st.lists(st.characters() | halves, max_size=20).map("".join)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too: Python's JSON writes and reads them
    | strings
    | st.sampled_from(["important", "progress", "mp3", "flac", "Play3.0-mini", "PlayDialog"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(strings, inner, max_size=3),
    max_leaves=8,
)
# Raw JSON that Python's parser itself chokes on in ways other than a syntax error.
nasty_json = st.sampled_from(
    ["9" * 5000, "1" + "0" * 400, "-1e999", "[" * 5000 + "]" * 5000, '"\\udfff"', "Infinity"]
)
FIELDS = ["text", "id", "voice", "speed", "temperature", "model", "output_format", "priority"]
FIELDS += ["volume", "chime", "scope", "level", "language"]
commands = st.fixed_dictionaries(
    {"cmd": st.sampled_from(p.COMMAND_NAMES) | json_values},
    optional={name: json_values for name in FIELDS},
)


@st.composite
def command_lines(draw: st.DrawFn) -> bytes:
    """A JSON command of mostly the right shape, with wrong types and values; sometimes with a
    nasty raw value, cut short, or with a stray byte."""
    line = json.dumps(draw(commands)).encode()
    if draw(st.booleans()):
        field = draw(st.sampled_from(FIELDS)).encode()
        nasty = draw(nasty_json).encode()
        line = line[:-1] + b', "' + field + b'": ' + nasty + b"}"
    cut = draw(st.integers(0, len(line)))
    mangle = draw(st.sampled_from(["whole", "whole", "cut", "byte"]))
    if mangle == "cut":
        line = line[:cut]
    elif mangle == "byte":
        line = line[:cut] + draw(st.binary(min_size=1, max_size=2)) + line[cut:]
    return line


any_line = command_lines() | st.binary(max_size=80) | st.text(max_size=40).map(str.encode)


def test_random_bytes_never_hurt_the_daemon(fuzzed: ThreadedDaemon) -> None:
    @FUZZ
    @given(st.binary(max_size=1000))
    def throw(data: bytes) -> None:
        fuzzed.exchange(data + RESUME)

    throw()
    assert fuzzed.opened >= FUZZ.max_examples


# Its examples cost ~70 ms each, most of it Hypothesis drawing nested commands (a profile):
# half of FUZZ's keeps the suite within its two minutes; each example holds up to five lines.
MALFORMED = settings(FUZZ, max_examples=FUZZ.max_examples // 2)


def test_malformed_commands_get_errors_naming_the_fault(fuzzed: ThreadedDaemon) -> None:
    @MALFORMED
    @given(st.lists(command_lines(), min_size=1, max_size=5))
    def throw(lines: list[bytes]) -> None:
        replies = fuzzed.exchange(b"\n".join(lines) + RESUME)
        answers = [r for r in replies if r["event"] in ("ok", "error")]
        # One answer per non-blank line, each naming its line; errors say what was wrong.
        numbered = [r["line"] for r in answers]
        assert numbered == sorted(numbered) and len(set(numbered)) == len(numbered)
        assert all(r["error"] for r in answers if r["event"] == "error")

    throw()
    assert fuzzed.opened >= MALFORMED.max_examples


def test_mixed_lines_and_abrupt_ends(fuzzed: ThreadedDaemon) -> None:
    @FUZZ
    @given(st.lists(any_line, max_size=6), st.booleans())
    def throw(lines: list[bytes], abrupt: bool) -> None:
        data = b"\n".join(lines)
        if abrupt:  # gone mid-line without reading a thing; the daemon still answers others
            fuzzed.exchange(data, read=False)
            assert fuzzed.exchange(RESUME) == [{"event": "ok", "cmd": "resume", "line": 2}]
        else:
            fuzzed.exchange(data + RESUME)

    throw()
    assert fuzzed.opened >= FUZZ.max_examples
