"""Events and replies are types (events.py); each front end encodes them for its own wire:
the control protocol as JSON lines, SSIP as 7xx notifications. No core module knows a wire."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from playspeak.control.protocol import encode_message
from playspeak.events import (
    ENDINGS,
    Cancelled,
    DeviceChanged,
    Error,
    Failed,
    Finished,
    Message,
    Ok,
    Paused,
    Queued,
    Resumed,
    Started,
    Warmed,
)
from playspeak.speech import EventHub, Utterance
from playspeak.ssip.protocol import notification

PACKAGE = Path(__file__).resolve().parent.parent / "daemon" / "playspeak"

# ---- the control protocol's JSON lines --------------------------------------------------------

LINES: list[tuple[Message, bytes]] = [
    (Queued("a1", 17.5, 1), b'{"event": "queued", "id": "a1", "t": 17.5, "position": 1}\n'),
    (
        Started("a1", 17.6, "cache"),
        b'{"event": "started", "id": "a1", "t": 17.6, "source": "cache"}\n',
    ),
    (Paused("a1", 18.0), b'{"event": "paused", "id": "a1", "t": 18.0}\n'),
    (Resumed("a1", 18.5), b'{"event": "resumed", "id": "a1", "t": 18.5}\n'),
    (
        Finished("a1", 19.0, "service"),
        b'{"event": "finished", "id": "a1", "t": 19.0, "source": "service"}\n',
    ),
    (
        Cancelled("a1", 19.0, "stopped"),
        b'{"event": "cancelled", "id": "a1", "t": 19.0, "reason": "stopped"}\n',
    ),
    (
        Failed("a1", 19.0, "link lost"),
        b'{"event": "failed", "id": "a1", "t": 19.0, "reason": "link lost"}\n',
    ),
    (
        DeviceChanged(20.0, "lost", "unplugged"),
        b'{"event": "device", "t": 20.0, "state": "lost", "error": "unplugged"}\n',
    ),
    (Ok("ping", 3), b'{"event": "ok", "cmd": "ping", "line": 3}\n'),
    (
        Ok("speak", 1, {"id": "a1"}),
        b'{"event": "ok", "cmd": "speak", "line": 1, "id": "a1"}\n',
    ),
    (
        Error("queue full", line=4),
        b'{"event": "error", "error": "queue full", "line": 4}\n',
    ),
    (Error("too many clients"), b'{"event": "error", "error": "too many clients"}\n'),
    (
        Error("bad JSON", topic="playspeak/den/say"),
        b'{"event": "error", "error": "bad JSON", "topic": "playspeak/den/say"}\n',
    ),
    (
        Warmed("Dinner", "stored"),
        b'{"event": "warmed", "text": "Dinner", "result": "stored"}\n',
    ),
    (
        Warmed("Dinner", "failed", "link down"),
        b'{"event": "warmed", "text": "Dinner", "result": "failed", "reason": "link down"}\n',
    ),
]


@pytest.mark.parametrize(("message", "line"), LINES, ids=[type(m).__name__ for m, _ in LINES])
def test_each_message_has_its_exact_json_line(message: Message, line: bytes) -> None:
    assert encode_message(message) == line


def test_json_lines_keep_text_readable_and_lone_surrogates_escaped() -> None:
    line = encode_message(Cancelled("ü\ud800", 1.0, "ß"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"event": "cancelled", "id": "ü\ud800", "t": 1.0, "reason": "ß"}
    assert "ß".encode() in line  # not \u-escaped


def test_the_endings_are_finished_cancelled_and_failed() -> None:
    assert ENDINGS == ("finished", "cancelled", "failed")
    assert [k.ends for k in (Queued, Started, Paused, Resumed)] == [False] * 4


# ---- SSIP's 7xx notifications -------------------------------------------------------------


ALL = frozenset({"begin", "end", "cancel", "pause", "resume"})


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (Started("ssip-4", 1.0, "service"), b"701-4\r\n701-2\r\n701 BEGIN\r\n"),
        (Finished("ssip-4", 1.0, "service"), b"702-4\r\n702-2\r\n702 END\r\n"),
        (Cancelled("ssip-4", 1.0, "stopped"), b"703-4\r\n703-2\r\n703 CANCELED\r\n"),
        (Failed("ssip-4", 1.0, "link lost"), b"703-4\r\n703-2\r\n703 CANCELED\r\n"),
        (Paused("ssip-4", 1.0), b"704-4\r\n704-2\r\n704 PAUSED\r\n"),
        (Resumed("ssip-4", 1.0), b"705-4\r\n705-2\r\n705 RESUMED\r\n"),
    ],
)
def test_each_utterance_event_has_its_ssip_notification(message: Message, line: bytes) -> None:
    assert notification(message, 4, 2, ALL) == line


def test_ssip_notifies_only_what_was_switched_on_and_never_queued_or_replies() -> None:
    assert notification(Started("ssip-1", 1.0, "service"), 1, 1, ALL - {"begin"}) is None
    assert notification(Queued("ssip-1", 1.0, 1), 1, 1, ALL) is None  # the 225 said so
    assert notification(DeviceChanged(1.0, "open", ""), 1, 1, ALL) is None
    assert notification(Ok("ping", 1), 1, 1, ALL) is None


# ---- the hub: typed events to the owner and the subscribers -----------------------------------


class Recorder:
    def __init__(self) -> None:
        self.got: list[Message] = []

    def send(self, message: Message) -> None:
        self.got.append(message)


def test_the_hub_sends_typed_events_to_the_owner_and_each_subscriber_once() -> None:
    hub, owner, watcher = EventHub(), Recorder(), Recorder()
    hub.subscribers |= {owner, watcher}  # the owner subscribed too: still once
    u = Utterance("hello", {}, id="a1", owner=owner)
    hub.queued(u, 1)
    assert u.state == "queued" and hub.live == {"a1": u}
    hub.started(u, "service")
    assert u.state == "speaking"
    hub.finished(u, "service")
    hub.cancelled(u, "too late")  # a second ending is dropped
    kinds = [type(m) for m in owner.got]
    assert kinds == [Queued, Started, Finished] == [type(m) for m in watcher.got]
    assert owner.got == watcher.got  # the very same events: one `t` each
    first = owner.got[0]
    assert isinstance(first, Queued) and (first.id, first.position) == ("a1", 1)
    assert u.ended and u.done.is_set() and u.state == "finished" and hub.live == {}
    assert hub.counters == {"queued": 1, "finished": 1, "cancelled": 0, "failed": 0}


def test_daemon_events_go_to_subscribers_only() -> None:
    hub, watcher, bystander = EventHub(), Recorder(), Recorder()
    hub.subscribers.add(watcher)
    u = Utterance("hello", {}, id="a2", owner=bystander)
    hub.broadcast(DeviceChanged(5.0, "lost", "gone"))
    hub.failed(u, "audio device lost")
    assert watcher.got == [DeviceChanged(5.0, "lost", "gone"), bystander.got[0]]
    failed = bystander.got[0]
    assert isinstance(failed, Failed) and failed.reason == "audio device lost"


# ---- who imports what --------------------------------------------------------------------------

CORE = (
    "events.py",
    "speech.py",
    "speaker.py",
    "priorities.py",
    "timeline.py",
    "log.py",
    "utterances.py",
)
FRONT_ENDS = ("playspeak.control", "playspeak.ssip", "playspeak.mqtt", "playspeak.cli")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", CORE)
def test_no_core_module_imports_a_front_end(module: str) -> None:
    imported = _imports(PACKAGE / module)
    assert not {n for n in imported if n.startswith(FRONT_ENDS)}


def test_events_module_knows_no_wire() -> None:
    assert _imports(PACKAGE / "events.py") <= {
        "__future__",
        "time",
        "collections.abc",
        "dataclasses",
        "typing",
    }


def test_ssip_never_parses_json() -> None:
    for path in (PACKAGE / "ssip").glob("*.py"):
        assert "json" not in _imports(path), path.name


def test_the_command_handler_knows_the_commands_but_no_wire() -> None:
    """commands.py acts on the control protocol's typed commands (MQTT sends them too); the
    replies it makes are typed, and encoding them is the session's job."""
    path = PACKAGE / "commands.py"
    assert {n for n in _imports(path) if n.startswith(FRONT_ENDS)} == {"playspeak.control"}
    assert "encode" not in path.read_text()
