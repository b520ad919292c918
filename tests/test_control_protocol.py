"""The control protocol's parser: every line becomes a typed command or a ProtocolError."""

import json

import pytest

from playspeak.control import protocol as p
from playspeak.errors import ProtocolError


def test_plain_text_is_an_utterance_with_defaults() -> None:
    assert p.parse_line("  the front door is open ") == p.Speak(text="the front door is open")


def test_json_speak_with_every_field() -> None:
    line = json.dumps(
        {
            "cmd": "speak",
            "text": "hi",
            "voice": "v",
            "speed": 1.5,
            "temperature": 0.2,
            "model": "PlayDialog",
            "output_format": "wav",
            "priority": "important",
            "id": 7,
            "volume": 50,
            "language": "french",
        }
    )
    assert p.parse_line(line) == p.Speak(
        text="hi",
        id="7",
        voice="v",
        speed=1.5,
        temperature=0.2,
        model="PlayDialog",
        output_format="wav",
        priority="important",
        volume=50.0,
        language="french",
    )


def test_json_without_cmd_but_with_text_speaks() -> None:
    assert p.parse_line('{"text": "hello"}') == p.Speak(text="hello")


def test_nulls_mean_defaults() -> None:
    assert p.parse_line('{"cmd":"speak","text":"a","voice":null,"speed":null}') == p.Speak("a")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{", "invalid JSON"),
        ("[1, 2]", None),  # not JSON (does not start with {): spoken as text
        ('{"cmd": 5}', "'cmd' must be a string"),
        ('{"a": 1}', "needs a 'cmd'"),
        ('{"cmd": "dance"}', "unknown command 'dance'"),
        ('{"cmd": "speak"}', "needs a 'text'"),
        ('{"cmd": "speak", "text": "  "}', "'text' is empty"),
        ('{"cmd": "speak", "text": 3}', "'text' must be a string"),
        ('{"cmd": "speak", "text": "a", "speed": 3}', "'speed' must be between 0.5 and 2"),
        ('{"cmd": "speak", "text": "a", "speed": "fast"}', "'speed' must be a number"),
        ('{"cmd": "speak", "text": "a", "speed": true}', "'speed' must be a number"),
        ('{"cmd": "speak", "text": "a", "temperature": -1}', "'temperature' must be between"),
        ('{"cmd": "speak", "text": "a", "model": "x y"}', "'model' must be a model name"),
        ('{"cmd": "speak", "text": "a", "priority": "urgent"}', "'priority' must be one of"),
        ('{"cmd": "speak", "text": "a", "output_format": "aac"}', "'output_format' must be"),
        ('{"cmd": "speak", "text": "a", "id": ""}', "'id' must be 1–200"),
        ('{"cmd": "volume", "level": 101}', "'level' must be between 0 and 100"),
        ('{"cmd": "cancel", "scope": "id"}', "needs an 'id'"),
        ("", "empty line"),
    ],
)
def test_bad_lines_name_what_is_wrong(line: str, message: str | None) -> None:
    if message is None:
        assert isinstance(p.parse_line(line), p.Speak)
        return
    with pytest.raises(ProtocolError, match=message):
        p.parse_line(line)


@pytest.mark.parametrize(
    "name", ["ping", "status", "subscribe", "watch", "stop", "skip", "pause", "resume"]
)
def test_simple_commands(name: str) -> None:
    command = p.parse_line(json.dumps({"cmd": name}))
    assert type(command).__name__.lower() == {"watch": "subscribe"}.get(name, name)


def test_cancel_scopes() -> None:
    assert p.parse_line('{"cmd": "cancel"}') == p.Cancel(scope="all")
    assert p.parse_line('{"cmd": "cancel", "id": "x"}') == p.Cancel(id="x", scope="id")
    assert p.parse_line('{"cmd": "cancel", "scope": "self"}') == p.Cancel(scope="self")


def test_encode_is_one_json_line() -> None:
    line = p.encode("queued", id="u1", text="ünïcode")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"event": "queued", "id": "u1", "text": "ünïcode"}
