"""Split a text into the sentences a streaming service synthesizes one at a time (no I/O)."""

from __future__ import annotations

import re

MAX_SENTENCE = 300  # characters; a longer run without a sentence end is cut at a space
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\s*\n\s*")


def split_sentences(text: str) -> list[str]:
    """The non-blank sentences of ``text`` in order, each at most MAX_SENTENCE characters.

    A sentence ends at ``.``, ``!``, ``?`` or ``…`` followed by white space, or at a line
    break; the white space between sentences is dropped."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        while len(sentence) > MAX_SENTENCE:
            cut = sentence.rfind(" ", 1, MAX_SENTENCE + 1)
            cut = cut if cut > 0 else MAX_SENTENCE
            out.append(sentence[:cut].rstrip())
            sentence = sentence[cut:].lstrip()
        if sentence:
            out.append(sentence)
    return out
