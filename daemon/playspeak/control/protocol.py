"""The control protocol's core, free of I/O: a line becomes a typed command, or a ProtocolError.

A plain text line is an utterance with the defaults. A line starting with `{` is a JSON command
`{"cmd": ...}`. Replies and events (events.py) are one JSON object per line
(`encode_message`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from playspeak.config import MODELS, OUTPUT_FORMATS, PRIORITIES, is_model_name
from playspeak.errors import ProtocolError
from playspeak.events import Error, Mark, Message, Ok, UtteranceEvent, Warmed
from playspeak.jsonguard import load_json
from playspeak.limits import SPEED, TEMPERATURE, VOLUME
from playspeak.style_names import CAPITALS, PITCH, PUNCTUATION

ID_MAX_LEN = 200
AT_MAX = 1e10  # Unix seconds (the year 2286): beyond it a value is not a time
ECHO_MAX_LEN = 40  # how much of a client's bad value an error (or a log line) repeats
# Unicode's control characters (category Cc) but tab and the line breaks.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


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
    cache: bool | None = None  # False: not from (nor into) the phrase cache
    language: str | None = None  # passed to the service as the command's `language`
    pitch: float | None = None  # -100..100; these four: the local voice's espeak-ng only
    pitch_range: float | None = None  # -100..100
    punctuation: str | None = None  # none, some, most, all: spoken by name
    capitals: str | None = None  # none, spell, icon
    ssml: bool | None = None  # the text is SSML (ssml.py)
    spelling: bool | None = None  # said letter by letter (spelling.py), by every voice
    at: float | None = None  # Unix seconds: a scheduled start (schedule.py checks the clock)


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Voices:
    """The voices a speak may name (voices.py)."""


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


@dataclass(frozen=True)
class Cache:
    """The phrase cache: `stats`, `clear`, or `warm` one phrase (fetched ahead, not played)."""

    action: str
    text: str | None = None  # warm: the phrase, with the defaults or the fields below
    voice: str | None = None
    speed: float | None = None
    model: str | None = None


Command = (
    Cache
    | Speak
    | Ping
    | Voices
    | Status
    | Subscribe
    | Stop
    | Skip
    | Cancel
    | Pause
    | Resume
    | Volume
)


def echo(value: Any) -> str:
    """`value` as an error message or a log line shows it: its repr, cut to ECHO_MAX_LEN, so
    that neither repeats (or stores) a client's whole line."""
    if isinstance(value, str) and len(value) > ECHO_MAX_LEN:
        value = value[: ECHO_MAX_LEN - 1] + "…"
    text = repr(value)
    return text if len(text) <= ECHO_MAX_LEN + 2 else text[:ECHO_MAX_LEN] + "…"


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
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not (finite and low <= value <= high):
        raise ProtocolError(
            f"field {key!r} must be between {low:g} and {high:g}, not {echo(value)}"
        )
    return float(value)


def _flag(obj: dict[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise ProtocolError(f"field {key!r} must be true or false, not {echo(value)}")
    return value


def _choice(obj: dict[str, Any], key: str, choices: tuple[str, ...]) -> str | None:
    value = _optional(obj, key, str)
    if value is not None and value not in choices:
        raise ProtocolError(f"field {key!r} must be one of {', '.join(choices)}, not {echo(value)}")
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
    check_controls(text)
    return text


def check_controls(text: str) -> None:
    """Binary junk that happens to be valid UTF-8 (NULs, escape sequences) is refused rather
    than read aloud; tabs and line breaks inside JSON text are fine."""
    found = _CONTROL.search(text)
    if found is not None:
        raise ProtocolError(
            f"text holds the control character U+{ord(found.group()):04X} "
            f"at character {found.start() + 1}"
        )


def _speak(obj: dict[str, Any]) -> Speak:
    if "text" not in obj:
        raise ProtocolError("speak needs a 'text' field")
    return Speak(
        text=_text(obj["text"]),
        id=_id(obj),
        voice=_optional(obj, "voice", str),
        speed=_number_in(obj, "speed", *SPEED),
        temperature=_number_in(obj, "temperature", *TEMPERATURE),
        model=_model(obj),
        output_format=_choice(obj, "output_format", OUTPUT_FORMATS),
        priority=_choice(obj, "priority", PRIORITIES),
        volume=_number_in(obj, "volume", *VOLUME),
        chime=_flag(obj, "chime"),
        language=_language(obj),
        cache=_flag(obj, "cache"),
        pitch=_number_in(obj, "pitch", *PITCH),
        pitch_range=_number_in(obj, "pitch_range", *PITCH),
        punctuation=_choice(obj, "punctuation", PUNCTUATION),
        capitals=_choice(obj, "capitals", CAPITALS),
        ssml=_flag(obj, "ssml"),
        spelling=_flag(obj, "spelling"),
        at=_number_in(obj, "at", 0, AT_MAX),
    )


def _cache(obj: dict[str, Any]) -> Cache:
    action = _choice(obj, "action", ("stats", "clear", "warm"))
    if action is None:
        raise ProtocolError("cache needs an 'action' field: stats, clear or warm")
    if action == "warm" and "text" not in obj:
        raise ProtocolError("cache warm needs a 'text' field")
    return Cache(
        action=action,
        text=_text(obj["text"]) if action == "warm" else None,
        voice=_optional(obj, "voice", str),
        speed=_number_in(obj, "speed", *SPEED),
        model=_model(obj),
    )


def _model(obj: dict[str, Any]) -> str | None:
    """Any model name the service may offer (not only the ones we know of)."""
    value = _optional(obj, "model", str)
    if value is not None and not is_model_name(value):
        raise ProtocolError(
            f"field 'model' must be a model name such as {', '.join(MODELS)}, not {echo(value)}"
        )
    return value


LANGUAGE_MAX_LEN = 64


def _language(obj: dict[str, Any]) -> str | None:
    value = _optional(obj, "language", str)
    if value is not None and not (0 < len(value.strip()) <= LANGUAGE_MAX_LEN):
        raise ProtocolError(f"field 'language' must be 1–{LANGUAGE_MAX_LEN} characters")
    if value is not None:
        check_controls(value)
        value = value.strip()
    return value


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
    "voices": lambda obj: Voices(),
    "status": lambda obj: Status(),
    "subscribe": lambda obj: Subscribe(),
    "watch": lambda obj: Subscribe(),
    "stop": lambda obj: Stop(),
    "skip": lambda obj: Skip(),
    "cancel": _cancel,
    "pause": lambda obj: Pause(),
    "resume": lambda obj: Resume(),
    "volume": lambda obj: Volume(level=_number_in(obj, "level", *VOLUME)),
    "cache": _cache,
}
COMMAND_NAMES = tuple(_PARSERS)


def parse_line(line: str) -> Command:
    """Parse one line (without its newline) into a command; ProtocolError names the fault."""
    stripped = line.strip()
    if not stripped:
        raise ProtocolError("empty line")
    if not stripped.startswith("{"):
        return Speak(text=_text(stripped))
    obj = load_json(stripped)
    if not isinstance(obj, dict):
        raise ProtocolError("a JSON command must be an object")
    name = obj.get("cmd", "speak" if "text" in obj else None)
    if name is None:
        raise ProtocolError("a JSON command needs a 'cmd' field")
    if not isinstance(name, str):
        raise ProtocolError("field 'cmd' must be a string")
    parser = _PARSERS.get(name)
    if parser is None:
        raise ProtocolError(f"unknown command {echo(name)} (known: {', '.join(COMMAND_NAMES)})")
    return parser(obj)


def command_name(command: Command) -> str:
    return type(command).__name__.lower()


def describe(command: Command, reply: Mapping[str, Any] | None = None) -> str:
    """A short one-line account of a command for the log: its name, the utterance id the reply
    gave it, and its fields that were set (long text cut short)."""
    parts = [command_name(command)]
    ident = (reply or {}).get("id")
    if ident is not None:
        parts.append(f"id={echo(str(ident))}")
    for f in dataclasses.fields(command):
        value = getattr(command, f.name)
        if value is not None and not (f.name == "id" and ident is not None):
            parts.append(f"{f.name}={echo(value)}")
    return " ".join(parts)


def encode(event: str, **fields: Any) -> bytes:
    """One reply or event line: `{"event": ..., ...}` and a newline, as UTF-8."""
    text = json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n"
    # A lone surrogate cannot be UTF-8; written as a \u escape the line stays valid JSON.
    return text.encode("utf-8", "backslashreplace")


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


# The reply kinds whose JSON is not simply their fields in order.
_WIRE_FIELDS: dict[type, Callable[[Any], dict[str, Any]]] = {
    Ok: lambda m: {"cmd": m.cmd, "line": m.line, **m.fields},
    Error: lambda m: _present(error=m.error, line=m.line, topic=m.topic),
    Warmed: lambda m: {"text": m.text, "result": m.result, **_present(reason=m.reason or None)},
}


def encode_message(message: Message) -> bytes:
    """An event or reply as its line: `{"event": <name>, <its fields in order>}`. An optional
    reply field that is unset is left out; an event's fields are always all there."""
    special = _WIRE_FIELDS.get(type(message))
    if special is not None:
        fields = special(message)
    else:
        fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
        if isinstance(message, UtteranceEvent):
            reason, warning = fields.pop("fallback_reason"), fields.pop("warning")
            if isinstance(message, Mark):
                fields["name"] = fields.pop("mark")  # "name" on the wire (a contract)
            fields.update(_present(fallback_reason=reason or None, warning=warning or None))
    return encode(message.name, **fields)
