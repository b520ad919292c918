"""Index marks, free of I/O: a text cut at its SSML `<mark name="…"/>` tags into segments, each
requested from the voice on its own and played back to back, so that a mark is announced when
the first sample after it is heard, whatever the voice (a service gives no mark positions).

SSML as a whole (SSIP's SSML mode, a speak with `"ssml": true`) is ssml.py's, which cuts it at
its marks into segments of SSML; `plain` is its words when it is not well-formed. A plain
control-protocol text: only well-formed mark tags are taken out of it, and any other `<` stays
as it is.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

# A name has no line break (it is a line of SSIP's 700 notification) and no tag brackets.
_MARK = re.compile(
    r"""<mark\s+name\s*=\s*(?:"([^"<>\r\n]*)"|'([^'<>\r\n]*)')\s*/\s*>""", re.IGNORECASE
)
_TAG = re.compile(r"<[^<>]*>")


@dataclass(frozen=True)
class Segment:
    """A stretch of text and the marks before it, announced (in order) as its first sample is
    heard. Its text is "" only for the last one: marks after the last word, announced when
    everything before them has been heard."""

    marks: tuple[str, ...]
    text: str


def split_marks(text: str) -> tuple[Segment, ...]:
    """A plain text cut at its marks; () when it has none (it is said as it is). SSML is cut by
    ssml.segments instead."""
    pieces = _MARK.split(text)  # text, name", name', text, …
    if len(pieces) == 1:
        return ()
    segments: list[Segment] = []
    marks: list[str] = []
    for index in range(0, len(pieces), 3):
        words = pieces[index].strip()
        if words:
            segments.append(Segment(tuple(marks), words))
            marks = []
        if index + 1 < len(pieces):
            marks.append(pieces[index + 1] if pieces[index + 1] is not None else pieces[index + 2])
    if not segments:
        return ()  # marks and no words: nothing to say between them
    if marks:
        segments.append(Segment(tuple(marks), ""))
    return tuple(segments)


def plain(text: str) -> str:
    """SSML as the words it says: tags dropped (a space where each was), entities decoded."""
    return " ".join(html.unescape(_TAG.sub(" ", text)).split())


def joined(segments: tuple[Segment, ...]) -> str:
    """The words of all segments: the utterance's text as status and logs show it."""
    return " ".join(s.text for s in segments if s.text)
