"""The control protocol's core, free of I/O: a line becomes a typed command, or a ProtocolError.

A plain text line is an utterance with the defaults. A line starting with `{` is a JSON command
`{"cmd": ...}`. Replies and events are one JSON object per line (see `encode`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from playspeak.config import MODELS, OUTPUT_FORMATS, PRIORITIES
from playspeak.errors import ProtocolError

ID_MAX_LEN = 200


@dataclass(frozen=True)
class Speak:
    text: str
    id: str | None = None
    voice: str | None = None
    speed: float | None = None
    temperature: float | None = None
    model: str | None = None
    output_format: str | None = None
    priority: str | None = None
    volume: float | None = None  # 0–100, per utterance
    chime: bool | None = None  # None: as configured for its priority


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Subscribe:
    pass


@dataclass(frozen=True)
class Stop:
    """Stop the utterance that is speaking now; the queue goes on."""


@dataclass(frozen=True)
class Skip:
    """The same as stop, under the name media players use."""


@dataclass(frozen=True)
class Cancel:
    """Cancel by id, this client's own utterances ("self"), or everything ("all")."""

    id: str | None = None
    scope: str = "all"


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Volume:
    level: float | None = None  # None: just report it


Command = Speak | Ping | Status | Subscribe | Stop | Skip | Cancel | Pause | Resume | Volume


def _optional(obj: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ProtocolError(f"field {key!r} must be {_article(names)}, not {type(value).__name__}")
    return value


def _article(name: str) -> str:
    words = {"str": "a string", "int": "a number", "float": "a number"}
    return " or ".join(words.get(part, part) for part in name.split(" or "))


def _number_in(obj: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = _optional(obj, key, (int, float))
    if value is None:
        return None
    if not (math.isfinite(value) and low <= value <= high):
        raise ProtocolError(f"field {key!r} must be between {low:g} and {high:g}, not {value!r}")
    return float(value)


def _flag(obj: dict[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise ProtocolError(f"field {key!r} must be true or false, not {value!r}")
    return value


def _choice(obj: dict[str, Any], key: str, choices: tuple[str, ...]) -> str | None:
    value = _optional(obj, key, str)
    if value is not None and value not in choices:
        raise ProtocolError(f"field {key!r} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _id(obj: dict[str, Any]) -> str | None:
    value = _optional(obj, "id", (str, int))
    if value is None:
        return None
    value = str(value)
    if not value or len(value) > ID_MAX_LEN:
        raise ProtocolError(f"field 'id' must be 1–{ID_MAX_LEN} characters")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ProtocolError("field 'text' must be a string")
    text = value.strip()
    if not text:
        raise ProtocolError("field 'text' is empty")
    return text


def _speak(obj: dict[str, Any]) -> Speak:
    if "text" not in obj:
        raise ProtocolError("speak needs a 'text' field")
    return Speak(
        text=_text(obj["text"]),
        id=_id(obj),
        voice=_optional(obj, "voice", str),
        speed=_number_in(obj, "speed", 0.5, 2.0),
        temperature=_number_in(obj, "temperature", 0.0, 1.0),
        model=_choice(obj, "model", MODELS),
        output_format=_choice(obj, "output_format", OUTPUT_FORMATS),
        priority=_choice(obj, "priority", PRIORITIES),
        volume=_number_in(obj, "volume", 0, 100),
        chime=_flag(obj, "chime"),
    )


def _cancel(obj: dict[str, Any]) -> Cancel:
    ident = _id(obj)
    scope = _choice(obj, "scope", ("all", "self", "id")) or ("id" if ident else "all")
    if scope == "id" and ident is None:
        raise ProtocolError("cancel with scope 'id' needs an 'id' field")
    return Cancel(id=ident, scope=scope)


_PARSERS: dict[str, Any] = {
    "speak": _speak,
    "say": _speak,
    "ping": lambda obj: Ping(),
    "status": lambda obj: Status(),
    "subscribe": lambda obj: Subscribe(),
    "watch": lambda obj: Subscribe(),
    "stop": lambda obj: Stop(),
    "skip": lambda obj: Skip(),
    "cancel": _cancel,
    "pause": lambda obj: Pause(),
    "resume": lambda obj: Resume(),
    "volume": lambda obj: Volume(level=_number_in(obj, "level", 0, 100)),
}
COMMAND_NAMES = tuple(_PARSERS)


def parse_line(line: str) -> Command:
    """Parse one line (without its newline) into a command; ProtocolError names the fault."""
    stripped = line.strip()
    if not stripped:
        raise ProtocolError("empty line")
    if not stripped.startswith("{"):
        return Speak(text=_text(stripped))
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"invalid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("a JSON command must be an object")
    name = obj.get("cmd", "speak" if "text" in obj else None)
    if name is None:
        raise ProtocolError("a JSON command needs a 'cmd' field")
    if not isinstance(name, str):
        raise ProtocolError("field 'cmd' must be a string")
    parser = _PARSERS.get(name)
    if parser is None:
        raise ProtocolError(f"unknown command {name!r} (known: {', '.join(COMMAND_NAMES)})")
    return parser(obj)


def command_name(command: Command) -> str:
    return type(command).__name__.lower()


def encode(event: str, **fields: Any) -> bytes:
    """One reply or event line: `{"event": ..., ...}` and a newline, as UTF-8."""
    return (json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n").encode("utf-8")
