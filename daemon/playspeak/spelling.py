"""Spelling, free of I/O: a text said letter by letter (SSIP's `SET SELF SPELLING on`, a speak's
`"spelling": true`). The utterance builder spells for every front end alike, plain text and
SSML; every engine reads a lone letter by its name (Piper's "h e l l o" too), so no voice
refuses it."""

from __future__ import annotations

from playspeak import ssml
from playspeak.marks import Segment

# `text`'s characters one space apart, its white space dropped: "ab c" → "a b c" (the same
# spacing as SSML's <say-as interpret-as="characters"> for the voices without markup)
spell = ssml.spelled


def spell_ssml(text: str) -> str:
    """SSML (as ssml.render wrote it) with the words of its text spelled, its markup kept."""
    return ssml.render(ssml.parse(text, spell))


def spelled(
    text: str, segments: tuple[Segment, ...], is_ssml: bool
) -> tuple[str, tuple[Segment, ...]]:
    """An utterance's text and its segments at index marks, spelled (SSML as SSML)."""
    how = spell_ssml if is_ssml else spell
    return how(text), tuple(Segment(s.marks, how(s.text) if s.text else "") for s in segments)
