"""The configuration's schema: each setting is declared once, as a field of its section's frozen
dataclass made with `setting()` (type, default, allowed values, environment variable, doc line).
Parsing, validation messages, `check-config`'s output and the example file are derived from it.
No I/O here."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

SECRET_SHOWN = "<redacted>"


class Invalid(ValueError):
    """A value its setting does not allow; the message names the key, the value and what is
    allowed (the loader adds the file and line)."""


# ---- kinds: what a TOML value may be, and how it is read and written back -------------------


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    return float(value)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _strs(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError
    return tuple(_str(v) for v in value)


def _ints(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise TypeError
    return tuple(_int(v) for v in value)


def _octal(value: object) -> int:
    """A file mode: an octal string ("0660"), or a whole number as TOML writes one (0o660)."""
    if isinstance(value, str):
        return int(value, 8)  # ValueError: not octal
    return _int(value)


def _device(value: object) -> str:
    """A device name, or its index written as a number."""
    return (
        str(_int(value)) if isinstance(value, int) and not isinstance(value, bool) else _str(value)
    )


def _latency(value: object) -> str:
    """PortAudio's "low"/"high", or seconds written as a number or as text."""
    return str(_float(value)) if not isinstance(value, str) else value


def _toml_latency(value: str) -> str:
    try:
        float(value)
    except ValueError:
        return json.dumps(value)
    return value


def _toml(value: Any) -> str:
    """A TOML literal: strings and lists as JSON writes them (valid TOML), numbers by repr."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _shown(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Kind(Generic[T]):
    """A type of setting: `what` it must be (as messages say it), how a TOML value becomes the
    attribute's value (`read` raises TypeError or ValueError), how the value is written in TOML
    and shown by `check-config` (JSON)."""

    what: str
    read: Callable[[object], T]
    toml: Callable[[T], str] = _toml
    shown: Callable[[T], Any] = _shown


BOOL = Kind("true or false", _bool)
INT = Kind("a whole number", _int)
FLOAT = Kind("a number", _float)
STR = Kind("a string", _str)
STRS = Kind("a list of strings", _strs)
INTS = Kind("a list of whole numbers", _ints)
OCTAL = Kind('an octal string like "0660"', _octal, lambda v: f'"{v:04o}"', lambda v: f"{v:04o}")
DEVICE = Kind("a string (a device name) or a whole number (its index)", _device)
LATENCY = Kind('a string ("low", "high") or a number (seconds)', _latency, _toml_latency)

# The kind of a field whose `setting()` names none, by its annotation (as written: the modules
# declaring sections use `from __future__ import annotations`).
KIND_OF_ANNOTATION: dict[str, Kind[Any]] = {
    "bool": BOOL,
    "int": INT,
    "float": FLOAT,
    "float | None": FLOAT,  # None only as the default: TOML has no null
    "str": STR,
    "tuple[str, ...]": STRS,
    "tuple[int, ...]": INTS,
}


# ---- settings ---------------------------------------------------------------------------------


class Reload(enum.Enum):
    """What `systemctl reload` (SIGHUP) does with a changed setting: the running daemon takes
    it, or it stays as it was until a restart (the journal names it)."""

    LIVE = "live"
    RESTART = "restart"


@dataclass(frozen=True)
class Setting:
    """What `setting()` records about one field, besides its type and default."""

    doc: str
    kind: Kind[Any] | None = None  # None: from the field's annotation
    low: float | None = None  # a number's range; open_* excludes that bound itself
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    unit: str = ""  # "seconds": messages say "seconds >= 0"
    choices: tuple[Any, ...] = ()  # the values allowed (for a list: the items allowed)
    check: Callable[[Any], bool] | None = None  # any other rule ...
    allowed: str = ""  # ... and what it allows, as messages say it
    env: str = ""  # an environment variable that overrides the file
    secret: bool = False  # never printed, never in a repr
    example: str = ""  # for a default of None: the value the example file shows, commented out
    # Parts are built from their sections once, at start: a setting is applied by a reload only
    # where it says so (and config/reload.py and Daemon.apply take exactly those).
    reload: Reload = Reload.RESTART


def setting(
    default: T,
    doc: str,
    *,
    kind: Kind[Any] | None = None,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    unit: str = "",
    choices: tuple[Any, ...] = (),
    check: Callable[[Any], bool] | None = None,
    allowed: str = "",
    env: str = "",
    secret: bool = False,
    example: str = "",
    reload: Reload = Reload.RESTART,
) -> T:
    """A section dataclass's field with its default and its schema (see `Setting`)."""
    spec = Setting(
        doc=doc,
        kind=kind,
        low=low,
        high=high,
        open_low=open_low,
        open_high=open_high,
        unit=unit,
        choices=choices,
        check=check,
        allowed=allowed,
        env=env,
        secret=secret,
        example=example,
        reload=reload,
    )
    made: T = field(default=default, repr=not secret, metadata={"setting": spec})
    return made


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _choices(choices: tuple[Any, ...]) -> str:
    """Choices as messages write them: 1 or 2; auto, espeak or generated; one of a, b, c, d."""
    names = [str(c) for c in choices]
    if len(names) > 3:
        return "one of " + ", ".join(names)
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _range(s: Setting) -> str:
    low, high = s.low, s.high
    if low is not None and high is not None and high != float("inf"):
        if not (s.open_low or s.open_high):
            if low < 0:  # "-20–19" reads badly
                return f"from {_number(low)} to {_number(high)}"
            return f"{_number(low)}–{_number(high)}"
        left, right = "(" if s.open_low else "[", ")" if s.open_high else "]"
        return f"in {left}{_number(low)}, {_number(high)}{right}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if s.open_low else '>='} {_number(low)}")
    if high is not None and high != float("inf"):
        parts.append(f"{'<' if s.open_high else '<='} {_number(high)}")
    text = " and ".join(parts)
    return text + (" and finite" if high == float("inf") and s.open_high else "")


@dataclass(frozen=True)
class Entry:
    """One setting of the schema, where it lives: `[section] key`."""

    section: str
    key: str
    default: Any
    kind: Kind[Any]
    setting: Setting

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def doc(self) -> str:
        return self.setting.doc

    @property
    def live(self) -> bool:
        """Whether a reload (SIGHUP) applies it to the running daemon."""
        return self.setting.reload is Reload.LIVE

    @property
    def allowed(self) -> str:
        """The rule beyond the type, as messages write it ("" if none)."""
        s = self.setting
        if s.allowed:
            return s.allowed
        if s.choices and isinstance(self.default, tuple):
            return "any of " + ", ".join(str(c) for c in s.choices)
        if s.choices:
            return _choices(s.choices)
        if s.low is None and s.high is None:
            return ""
        return f"{s.unit} {_range(s)}" if s.unit else _range(s)

    def read(self, value: object) -> Any:
        """The attribute's value for a TOML value; Invalid naming key, value and what is allowed."""
        try:
            result = self.kind.read(value)
        except (TypeError, ValueError):
            rule = f" ({self.allowed})" if self.allowed else ""
            raise Invalid(f"{self.name} must be {self.kind.what}{rule}, not {value!r}") from None
        self.check(result, value)
        return result

    def check(self, result: Any, value: object = None) -> None:
        """Invalid when `result` (read from `value`) breaks the rule beyond the type."""
        s = self.setting
        shown = result if value is None else value
        if s.choices and isinstance(result, tuple):
            bad = [item for item in result if item not in s.choices]
            if bad:
                raise Invalid(f"{self.name} may hold only {', '.join(s.choices)}, not {bad[0]!r}")
        elif s.choices and result not in s.choices:
            raise Invalid(f"{self.name} must be {self.allowed}, not {shown!r}")
        if result is not None and not _in_range(s, result):
            raise Invalid(f"{self.name} must be {self.allowed}, not {shown!r}")
        if s.check is not None and not s.check(result):
            raise Invalid(f"{self.name} must be {self.allowed}, not {shown!r}")

    def toml(self, value: Any) -> str:
        return str(self.kind.toml(value))

    def shown(self, value: Any) -> Any:
        """As `check-config` prints it: secrets replaced, tuples as lists, modes in octal."""
        if self.setting.secret and value:
            return SECRET_SHOWN
        return self.kind.shown(value)


def _in_range(s: Setting, value: float) -> bool:
    if s.low is not None and not (value > s.low if s.open_low else value >= s.low):
        return False
    return s.high is None or (value < s.high if s.open_high else value <= s.high)


def entries_of(section: str, cls: type) -> Iterator[Entry]:
    """The settings of one section dataclass, in declaration order."""
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("setting")
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting()")
        kind = spec.kind or KIND_OF_ANNOTATION.get(str(f.type))
        if kind is None:
            raise TypeError(f"{cls.__name__}.{f.name}: give setting() a kind for {f.type}")
        yield Entry(section, f.name, f.default, kind, spec)
