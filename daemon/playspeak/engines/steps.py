"""What an engine is asked to say, step by step (free of I/O).

A text's parts (Synthesizer.readable: the whole text, or SSML's parts for a voice without
markup) are said sentence by sentence, each sentence at its part's speed and gain, and a
part's pause after its words. The direct local voice (localvoice.py) and the local server
(localserver/audio.py) say the same steps, so a text sounds alike through either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from playspeak.engines.sentences import split_sentences
from playspeak.ssml_plain import Part


@dataclass(frozen=True)
class Step:
    """`words` said at `speed` (the utterance's, within limits.SPEED) and `gain`; or, with a
    `pause`, that many seconds of silence instead."""

    words: str
    speed: float
    gain: float = 1.0
    pause: float = 0.0


def steps(parts: Sequence[Part], speed: float, *, whole: bool = False) -> list[Step]:
    """The steps of `parts` in an utterance at `speed`. `whole`: the words are SSML that the
    engine reads itself (espeak-ng), not cut into sentences."""
    out: list[Step] = []
    for part in parts:
        at = part.speed_at(speed)
        if part.words or not part.pause:
            said = [part.words] if whole else split_sentences(part.words) or [part.words]
            out += [Step(words, at, part.gain) for words in said]
        if part.pause:
            out.append(Step("", at, part.gain, part.pause))
    return out
