"""One SSIP connection's settings: `SET` and `GET` by a table, and what they mean for playspeak.

RATE (-100..100) becomes the request's speed 2**(rate/100) (0.5..2); VOLUME (-100..100) the
utterance's gain (volume+100)/200, so Speech Dispatcher's default of 100 is full volume;
SYNTHESIS_VOICE is passed through as the voice, and a LANGUAGE the client set as the
command's `language` (the factory default "en" is not sent). PITCH, PITCH_RANGE, PUNCTUATION
and CAP_LET_RECOGN become the utterance's Style (style.py: `Settings.style`), each refused at
its SET when the connection's voice cannot honour it (session.py asks the builder); SPELLING
the request's `spelling` (the builder spells, as for every front end); SSML_MODE reads a
message as SSML (ssml.py). VOICE_TYPE, PAUSE_CONTEXT and the like are kept and answered
(clients check the reply) without effect on the sound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from playspeak import ssml
from playspeak.marks import Segment, plain
from playspeak.priority_names import PRIORITIES
from playspeak.ssip.protocol import (
    NOTIFICATION_TYPES,
    Reply,
    SsipError,
    invalid_parameter,
    missing_parameter,
)
from playspeak.style import Style
from playspeak.style_names import CAPITALS, PUNCTUATION

VOICE_TYPES = (
    "MALE1",
    "MALE2",
    "MALE3",
    "FEMALE1",
    "FEMALE2",
    "FEMALE3",
    "CHILD_MALE",
    "CHILD_FEMALE",
)
OUTPUT_MODULE = "playai"
NOT_IMPLEMENTED = Reply(299, "OK BUT NOT IMPLEMENTED -- DOES NOTHING")


@dataclass
class Settings:
    """What `SET` changed on a connection (Speech Dispatcher's factory defaults otherwise)."""

    priority: str = "message"
    client_name: str = ""
    language: str = "en"
    language_chosen: bool = False  # SET by the client: passed to the service
    rate: int = 0
    pitch: int = 0
    pitch_range: int = 0
    volume: int = 100
    voice_type: str = "MALE1"
    synthesis_voice: str = ""  # "": the configured voice
    output_module: str = OUTPUT_MODULE
    punctuation: str = "none"
    spelling: bool = False
    cap_let_recogn: str = "none"
    pause_context: int = 0
    ssml_mode: bool = False
    notifications: set[str] = field(default_factory=set)

    def style(self, ssml: bool = False) -> Style:
        """The Style a message is spoken in (`ssml`: its text is SSML that ssml.py wrote)."""
        return Style(self.pitch, self.punctuation, self.cap_let_recogn, self.pitch_range, ssml)

    @property
    def speed(self) -> float:
        """The speed factor for RATE: 0.5 at -100, 1 at 0, 2 at 100."""
        return 2.0 ** (self.rate / 100)

    @property
    def gain(self) -> float:
        """The utterance gain for VOLUME: 0 at -100, 1 at 100."""
        return (self.volume + 100) / 200

    def text_for(self, text: str) -> Spoken:
        """What to say for a SPEAK text (spelled later, by the builder, with SPELLING on): in
        SSML mode the SSML made safe and its segments at index marks; SSML that cannot be
        read as its words, and why."""
        if not self.ssml_mode:
            return Spoken(text, words=text)
        try:
            tokens = ssml.parse(text)
            whole, segments = ssml.spoken(tokens)
        except ssml.SsmlError as e:
            # a screen reader cannot mend its markup: better its words than silence
            words = plain(text)
            return Spoken(words, words=words, problem=str(e))
        return Spoken(whole, segments, ssml=True, words=ssml.words_of(tokens))


@dataclass(frozen=True)
class Spoken:
    """A message's text as the utterance takes it (`Settings.text_for`)."""

    text: str  # SSML when `ssml`
    segments: tuple[Segment, ...] = ()  # at its index marks; () without marks
    ssml: bool = False
    words: str = ""  # what it says ("": nothing)
    problem: str = ""  # why SSML was read as its words, tags dropped


# ---- value parsers ---------------------------------------------------------------------------


def _number(low: tuple[int, str], high: tuple[int, str]) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise SsipError(511, "ERR PARAMETER NOT A NUMBER") from None
        if number < -100:
            raise SsipError(*low)
        if number > 100:
            raise SsipError(*high)
        return number

    return parse


def _count(value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise SsipError(511, "ERR PARAMETER NOT A NUMBER")
    return int(value)


def _choice(values: tuple[str, ...], error: tuple[int, str] | None = None) -> Callable[[str], str]:
    def parse(value: str) -> str:
        for v in values:
            if v.lower() == value.lower():
                return v
        raise SsipError(*error) if error else invalid_parameter()

    return parse


def _on_off(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("on", "off"):
        raise SsipError(513, "ERR PARAMETER NOT ON OR OFF")
    return lowered == "on"


def _text(value: str) -> str:
    return value


def _unquoted(value: str) -> str:
    # libspeechd sends the client name in double quotes.
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


@dataclass(frozen=True)
class Rule:
    """How one SET parameter is parsed, where it is kept and what the reply is."""

    attribute: str
    parse: Callable[[str], Any]
    reply: Reply
    self_only: Reply | None = None  # the error for a target other than `self`
    in_block: bool = True  # allowed between BLOCK BEGIN and BLOCK END (as speechd does)


def _rules() -> dict[str, Rule]:
    not_self = Reply(514, "ERR PARAMETER INVALID")
    return {
        "CLIENT_NAME": Rule(
            "client_name",
            _unquoted,
            Reply(208, "OK CLIENT NAME SET"),
            self_only=not_self,
            in_block=False,
        ),
        "PRIORITY": Rule(
            "priority",
            _choice(PRIORITIES, (408, "ERR UNKNOWN PRIORITY")),
            Reply(202, "OK PRIORITY SET"),
            self_only=Reply(301, "ERR COULDNT SET PRIORITY"),
            in_block=False,
        ),
        "LANGUAGE": Rule("language", _text, Reply(201, "OK LANGUAGE SET")),
        "RATE": Rule(
            "rate",
            _number((410, "ERR RATE TOO LOW"), (409, "ERR RATE TOO HIGH")),
            Reply(203, "OK RATE SET"),
        ),
        "PITCH": Rule(
            "pitch",
            _number((412, "ERR PITCH TOO LOW"), (411, "ERR PITCH TOO HIGH")),
            Reply(204, "OK PITCH SET"),
        ),
        "PITCH_RANGE": Rule(
            "pitch_range",
            _number((416, "ERR PITCH RANGE TOO LOW"), (415, "ERR PITCH RANGE TOO HIGH")),
            Reply(263, "OK PITCH RANGE SET"),
        ),
        "VOLUME": Rule(
            "volume",
            _number((414, "ERR VOLUME TOO LOW"), (413, "ERR VOLUME TOO HIGH")),
            Reply(218, "OK VOLUME SET"),
        ),
        "VOICE_TYPE": Rule("voice_type", _choice(VOICE_TYPES), Reply(209, "OK VOICE SET")),
        "VOICE": Rule("voice_type", _choice(VOICE_TYPES), Reply(209, "OK VOICE SET")),
        "SYNTHESIS_VOICE": Rule("synthesis_voice", _text, Reply(209, "OK VOICE SET")),
        "OUTPUT_MODULE": Rule(
            "output_module", _text, Reply(216, "OK OUTPUT MODULE SET"), in_block=False
        ),
        "PUNCTUATION": Rule(
            "punctuation",
            _choice(PUNCTUATION),
            Reply(205, "OK PUNCTUATION SET"),
        ),
        "SPELLING": Rule("spelling", _on_off, Reply(207, "OK SPELLING SET"), in_block=False),
        "CAP_LET_RECOGN": Rule(
            "cap_let_recogn",
            _choice(CAPITALS),
            Reply(206, "OK CAP LET RECOGNITION SET"),
        ),
        "PAUSE_CONTEXT": Rule("pause_context", _count, Reply(217, "OK PAUSE CONTEXT SET")),
        "SSML_MODE": Rule("ssml_mode", _on_off, Reply(219, "OK SSML MODE SET"), self_only=not_self),
        # Accepted and ignored: playspeak keeps no message history and has no debug dump.
        "HISTORY": Rule("", _on_off, NOT_IMPLEMENTED),
        "DEBUG": Rule("", _on_off, NOT_IMPLEMENTED),
    }


RULES = _rules()
# The SETs that are a field of the Style (style.SETTINGS), which a voice may refuse
STYLE_FIELDS = {
    "PITCH": "pitch",
    "PITCH_RANGE": "pitch_range",
    "PUNCTUATION": "punctuation",
    "CAP_LET_RECOGN": "capitals",
}
# The SETs that choose the voice a message is spoken in (ssip/session.py's _request)
VOICE_CHOOSERS = frozenset({"SYNTHESIS_VOICE", "LANGUAGE"})


def _notification(settings: Settings, value: str) -> None:
    kind, _, state = value.partition(" ")
    if not state.strip():
        raise missing_parameter()
    on = _on_off(state.strip())
    kind = kind.lower()
    if kind not in (*NOTIFICATION_TYPES, "all"):
        raise invalid_parameter()
    kinds = set(NOTIFICATION_TYPES) if kind == "all" else {kind}
    if on:
        settings.notifications |= kinds
    else:
        settings.notifications -= kinds


NOTIFICATION_SET = Reply(220, "OK NOTIFICATION SET")


def check_set(name: str, is_self: bool, in_block: bool) -> None:
    """Raise the error reply for a SET that may not be sent with this target or here."""
    if name == "NOTIFICATION":
        if not is_self:
            raise invalid_parameter()
        return
    rule = RULES.get(name)
    if rule is None:
        raise invalid_parameter()
    if rule.self_only is not None and not is_self:
        raise SsipError(rule.self_only.code, rule.self_only.text)
    if in_block and not rule.in_block:
        raise SsipError(332, "ERR NOT ALLOWED INSIDE BLOCK")


def apply_set(settings: Settings, name: str, value: str) -> Reply:
    """Change one setting (`name` upper-case, `value` the rest of the line); SsipError if the
    value is wrong. Call `check_set` first."""
    value = value.strip()
    if not value:
        raise missing_parameter()
    if name == "NOTIFICATION":
        _notification(settings, value)
        return NOTIFICATION_SET
    rule = RULES[name]
    parsed = rule.parse(value)
    if name == "CLIENT_NAME" and settings.client_name:
        raise SsipError(311, "ERR COULDNT SET CLIENT_NAME")  # ssip.texi: only once
    if rule.attribute:
        setattr(settings, rule.attribute, parsed)
    if name == "LANGUAGE":
        settings.language_chosen = True
    return rule.reply


_GETTABLE = {
    "RATE": "rate",
    "PITCH": "pitch",
    "VOLUME": "volume",
    "LANGUAGE": "language",
    "OUTPUT_MODULE": "output_module",
    "PUNCTUATION": "punctuation",
    "VOICE_TYPE": "voice_type",
}


def get(settings: Settings, name: str) -> Reply:
    """`GET <name>`: the value as `251-<value>`, `251 OK GET RETURNED`."""
    attribute = _GETTABLE.get(name.upper())
    if attribute is None:
        raise invalid_parameter()
    return Reply(251, "OK GET RETURNED", (str(getattr(settings, attribute)),))


# ---- what CHAR, KEY and SOUND_ICON say -------------------------------------------------------


def char_text(char: str) -> str:
    """`CHAR x`: the character itself (`space` stands for a space)."""
    return "space" if char == "space" else char


def key_text(key: str) -> str:
    """`KEY control_alt_kp-enter`: "control alt kp enter" (prefixes end with underscores)."""
    words = key.split("_") if len(key) > 1 else [key]
    return " ".join(w.replace("-", " ") if len(w) > 1 else w for w in words)


def icon_text(name: str) -> str:
    """`SOUND_ICON message-new`: playspeak has no sound icons, so it says their name."""
    return " ".join(name.replace("_", " ").replace("-", " ").split())
