"""SSML from a client, made safe for espeak-ng (free of I/O).

A client's SSML (SSIP's SSML mode, a control `speak` with `"ssml": true`) is parsed by expat
and written out again with only what espeak-ng's `-m` mode should see: the elements in
`ALLOWED`, each with its allowed attributes, their values checked, and the text escaped anew.
Other elements are dropped and their text kept (`<audio src>` would have espeak-ng open a file
named by the client). The text is parsed inside a root we put around it, where a DOCTYPE
cannot stand: entities are the five of XML and character references, so nothing expands
beyond the text's own size. Index marks cut
the document into segments (marks.py), each re-opening the elements open at its mark, so a
`<prosody>` around a mark still holds after it. The voices without markup read it as parts
of words, each at its speed and gain and followed by its pause (ssml_plain.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

from playspeak.errors import ProtocolError
from playspeak.marks import Segment

# A value espeak-ng reads: a keyword or a number with a sign and a unit ("+20%", "500ms", "-2st")
_VALUE = re.compile(r"[A-Za-z0-9.+%:-]{1,32}")
_ALIAS = re.compile(r"[^\"'\\<>&\r\n]{0,200}")  # sub's alias: espeak-ng copies it as text
ALLOWED: dict[str, dict[str, re.Pattern[str]]] = {
    "speak": {},
    "p": {},
    "s": {},
    "break": {"time": _VALUE, "strength": _VALUE},
    "prosody": {"rate": _VALUE, "pitch": _VALUE, "volume": _VALUE, "range": _VALUE},
    "say-as": {"interpret-as": _VALUE, "format": _VALUE, "detail": _VALUE},
    "emphasis": {"level": _VALUE},
    "sub": {"alias": _ALIAS},
}
# The elements each kind of voice honours, as `voices` states them (the others are dropped)
ESPEAK_HONOURS = ("break", "emphasis", "mark", "prosody", "say-as", "sub")
# Piper and the generated voice (ssml_plain.py: prosody's rate and volume, not its pitch or
# range; say-as as characters); a service gets the words and the marks
PLAIN_HONOURS = ("break", "mark", "prosody", "say-as", "sub")
SERVICE_HONOURS = ("mark",)
MAX_DEPTH = 32  # elements open at once: deeper is refused (expat's own stack is not ours)
_DECLARATION = re.compile(r"^<\?xml[^>]*\?>")
_SPACED = frozenset(("break", "p", "s"))  # a word boundary where these stand


class SsmlError(ProtocolError):
    """The text is not SSML that can be spoken: the message says where and why."""


@dataclass(frozen=True)
class Open:
    name: str
    attrs: tuple[tuple[str, str], ...]

    def tag(self, close: bool = False) -> str:
        if close:
            return f"</{self.name}>"
        attrs = "".join(f" {k}={quoteattr(v)}" for k, v in self.attrs)
        return f"<{self.name}{attrs}/>" if self.name == "break" else f"<{self.name}{attrs}>"


@dataclass(frozen=True)
class Mark:
    name: str


Token = Open | Mark | str | None  # None closes the innermost open element


def parse(text: str, words: Callable[[str], str] = str) -> list[Token]:
    """`text` as tokens of allowed markup; `words` changes each run of text (spelling.py).
    Raises SsmlError."""
    tokens: list[Token] = []
    depth: list[bool] = []  # each open element: whether it is kept

    def start(name: str, attrs: dict[str, str]) -> None:
        if len(depth) >= MAX_DEPTH:
            raise SsmlError(f"SSML nests more than {MAX_DEPTH} elements")
        name = name.lower()
        if name in _SPACED or name not in ALLOWED:
            tokens.append(" ")  # a word ends here (or a dropped tag stood here)
        if name == "mark":
            tokens.append(Mark(_mark_name(attrs.get("name", ""))))
        elif name in ALLOWED:
            tokens.append(Open(name, _checked(name, attrs)))
        depth.append(name in ALLOWED and name != "break")  # a break has no inside to close

    def end(name: str) -> None:
        if depth.pop():
            tokens.append(None)

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = lambda data: tokens.append(words(data))
    # One root around it all: a text with tags in it, or SSIP's block of <speak> messages
    source = f"<speak>{_DECLARATION.sub('', text.strip())}</speak>"
    try:
        parser.Parse(source, True)
    except expat.ExpatError as e:
        where = f"line {e.lineno}, column {max(0, e.offset - len('<speak>')) + 1}"
        raise SsmlError(f"malformed SSML: {expat.ErrorString(e.code)} at {where}") from None
    return tokens


def _mark_name(name: str) -> str:
    # a line of SSIP's 700 notification: a reference (&#10;) must not break it
    if re.search(r"[\r\n<>]", name):
        raise SsmlError(f"a mark's name may not hold a line break or a tag: {name[:40]!r}")
    return name


def _checked(name: str, attrs: dict[str, str]) -> tuple[tuple[str, str], ...]:
    allowed = ALLOWED[name]
    kept = []
    for key, value in attrs.items():
        pattern = allowed.get(key)
        if pattern is None:
            continue  # an attribute espeak-ng has no use for (xml:lang, version, xmlns)
        if not pattern.fullmatch(value.strip()):
            raise SsmlError(f"<{name} {key}> has a value espeak-ng cannot read: {value[:40]!r}")
        kept.append((key, value.strip()))
    return tuple(kept)


def segments(tokens: list[Token]) -> tuple[Segment, ...]:
    """The document cut at its marks, each segment SSML of its own (the elements open at a
    mark re-opened after it); () without marks. marks.split_marks cuts a plain text."""
    cuts: list[tuple[tuple[str, ...], list[Token]]] = [((), [])]
    stack: list[Open] = []
    marks: list[str] = []
    for token in tokens:
        if isinstance(token, Mark):
            marks.append(token.name)
            continue
        if marks and isinstance(token, str) and token.strip():
            cuts.append((tuple(marks), [*stack]))
            marks = []
        cuts[-1][1].append(token)
        if isinstance(token, Open) and token.name != "break":
            stack.append(token)
        elif token is None:
            stack.pop()
    if len(cuts) == 1 and not marks:
        return ()
    result = [Segment(m, render(body)) for m, body in cuts if words_of(body)]
    if marks:
        result.append(Segment(tuple(marks), ""))
    return tuple(result)


def render(tokens: list[Token]) -> str:
    """The tokens as SSML for espeak-ng's `-m`: one `<speak>`, every element closed."""
    out, stack = ["<speak>"], []
    for token in tokens:
        if isinstance(token, Open):
            if token.name != "speak":  # one root is enough
                out.append(token.tag())
            if token.name != "break":
                stack.append(token)
        elif token is None:
            closed = stack.pop()
            if closed.name != "speak":
                out.append(closed.tag(close=True))
        elif isinstance(token, str):
            out.append(escape(token))
    out.extend(t.tag(close=True) for t in reversed(stack) if t.name != "speak")
    out.append("</speak>")
    return "".join(out)


def spoken(tokens: list[Token]) -> tuple[str, tuple[Segment, ...]]:
    """What an utterance of the tokens says: the whole as SSML, and its segments at marks.
    Raises SsmlError when it has no words."""
    if not words_of(tokens):
        raise SsmlError("the SSML has no words to say")
    return render(tokens), segments(tokens)


def words_of(tokens: list[Token]) -> str:
    """The words the tokens say, white space collapsed (what the voices without markup get)."""
    return " ".join("".join(t for t in tokens if isinstance(t, str)).split())


def spelled(text: str) -> str:
    """`text` as letters spaced, each said on its own: SSIP's SPELLING and
    `<say-as interpret-as="characters">` for the voices without markup."""
    return " ".join(ch for ch in text if not ch.isspace())


def words(ssml: str) -> str:
    """The words of SSML that `render` wrote (or any well-formed SSML)."""
    return words_of(parse(ssml))
