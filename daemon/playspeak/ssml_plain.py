"""SSML as the voices without markup say it (free of I/O): Piper and the generated voice read
words alone, so what espeak-ng does with the markup is done around them.

SSML (as ssml.render writes it, or any allowed SSML) becomes parts, each of words said at a
speed factor and a gain, then a pause: the engine synthesises each part's words and appends
its pause as silence (localvoice.py). The values are read as espeak-ng 1.51 reads them
(its ssml.c), so a text sounds alike on every local voice:

- `<break>`: `time` as given ("500ms", "2s"; a bare number is milliseconds), at most
  MAX_PAUSE, or a `strength` (STRENGTHS; a bare `<break/>` is medium). Breaks with no words
  between them are one pause, the longest, as espeak-ng makes them.
- `<prosody rate>`: a keyword (RATES) of the utterance's own speed, or a percentage ("50%",
  "+20%") or a number ("2", "+0.5") of the speed around it; the speed spoken stays within the
  protocol's (limits.SPEED, `Part.speed_at`).
- `<prosody volume>`: a keyword (VOLUMES) of the utterance's own gain, a percentage, a number
  (espeak-ng's amplitude, 100 the voice's own) or ±dB of the gain around it; at most MAX_GAIN.
- `<say-as interpret-as="characters">`: its letters spaced, as SSIP's spelling says them.
- `<sub alias>`: the alias said instead of its words.
- `<prosody pitch|range>` and `<emphasis>`: dropped, their words kept. These voices have no
  pitch (their `refuses` lists it, and the setting is refused at the speak), but markup is a
  screen reader's message and it cannot mend it: its words are said, as for malformed SSML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from playspeak import ssml
from playspeak.limits import SPEED

# A guard against a hostile client holding the speaker with silence: espeak-ng honours 20 s
MAX_PAUSE = 10.0
# +6 dB: Piper, with its own gain, peaks near full scale (engines/piper.py); louder clips
MAX_GAIN = 2.0
# espeak-ng's break_value table scaled to the pauses it made here at 175 wpm (docs/benchmarks.md,
# "Voice settings, as heard"); its own x-weak and weak only shorten the next word's pre-pause
STRENGTHS = {
    "none": 0.0,
    "x-weak": 0.05,
    "weak": 0.10,
    "medium": 0.16,
    "strong": 0.30,
    "x-strong": 0.60,
}
RATES = {"default": 1.0, "x-slow": 0.6, "slow": 0.8, "medium": 1.0, "fast": 1.25, "x-fast": 1.6}
VOLUMES = {
    "default": 1.0,
    "silent": 0.0,
    "x-soft": 0.3,
    "soft": 0.65,
    "medium": 1.0,
    "loud": 1.5,
    "x-loud": 2.3,
}
_TIME = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?", re.IGNORECASE)
_CHANGE = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*(%|db|st)?", re.IGNORECASE)


@dataclass(frozen=True)
class Part:
    """Words said at `speed` times the utterance's speed and `gain`, then `pause` seconds of
    silence. `words` is "" for a pause before any words."""

    words: str
    speed: float = 1.0
    gain: float = 1.0
    pause: float = 0.0

    def speed_at(self, speed: float) -> float:
        """The speed this part is spoken at in an utterance at `speed`: within limits.SPEED."""
        return min(SPEED[1], max(SPEED[0], speed * self.speed))


@dataclass(frozen=True)
class _Frame:
    """What holds inside an open element."""

    speed: float = 1.0
    gain: float = 1.0
    characters: bool = False
    silent: bool = False  # inside a `<sub>` with an alias: its words are not said


def parts(text: str) -> tuple[Part, ...]:
    """The parts SSML says. Raises ssml.SsmlError as ssml.parse does."""
    return parts_of(ssml.parse(text))


def parts_of(tokens: list[ssml.Token]) -> tuple[Part, ...]:
    """The parts ssml.parse's tokens say: words of one speed and gain with no break between
    them are one part; blank parts are left out."""
    out: list[Part] = []
    stack = [_Frame()]

    def say(text: str, frame: _Frame) -> None:
        last = out[-1] if out else None
        if not text.strip():
            # White space is said by no voice, at no speed or gain: it only ends a word, so it
            # goes with the part before it (one between breaks: still the one pause), and
            # never starts a part that would part two of the same speed and gain.
            if last is not None and not last.pause:
                out[-1] = replace(last, words=last.words + text)
            return
        same = last is not None and (last.speed, last.gain) == (frame.speed, frame.gain)
        if last is not None and same and not last.pause:
            out[-1] = replace(last, words=last.words + text)
        else:
            out.append(Part(text, frame.speed, frame.gain))

    for token in tokens:
        frame = stack[-1]
        if isinstance(token, ssml.Open):
            attrs = dict(token.attrs)
            if token.name == "break":
                pause = _pause(attrs)
                if out:
                    out[-1] = replace(out[-1], pause=max(out[-1].pause, pause))
                else:
                    out.append(Part("", frame.speed, frame.gain, pause))
                continue
            stack.append(_opened(token.name, attrs, frame, stack[0]))
            if token.name == "sub" and "alias" in attrs and not frame.silent:
                say(f" {attrs['alias']} ", frame)
        elif token is None:
            stack.pop()
        elif isinstance(token, str) and not frame.silent:
            say(f" {ssml.spelled(token)} " if frame.characters else token, frame)
    cleaned = (replace(p, words=" ".join(p.words.split())) for p in out)
    return tuple(p for p in cleaned if p.words or p.pause)


def _opened(name: str, attrs: dict[str, str], around: _Frame, base: _Frame) -> _Frame:
    if name == "prosody":
        speed = _scaled(attrs.get("rate"), RATES, around.speed, base.speed, rate=True)
        gain = _scaled(attrs.get("volume"), VOLUMES, around.gain, base.gain, rate=False)
        return replace(around, speed=max(speed, 0.01), gain=min(MAX_GAIN, max(gain, 0.0)))
    if name == "say-as":
        return replace(around, characters=attrs.get("interpret-as", "").lower() == "characters")
    if name == "sub" and "alias" in attrs:
        return replace(around, silent=True)
    return around


def _pause(attrs: dict[str, str]) -> float:
    """A break's seconds: its time, else its strength (medium when it has neither)."""
    seconds = STRENGTHS.get(attrs.get("strength", "").lower(), STRENGTHS["medium"])
    if (time := _TIME.fullmatch(attrs.get("time", ""))) is not None:
        unit = (time.group(2) or "ms").lower()
        seconds = float(time.group(1)) / (1000 if unit == "ms" else 1)
    return min(seconds, MAX_PAUSE)


def _scaled(
    value: str | None, keywords: dict[str, float], around: float, base: float, *, rate: bool
) -> float:
    """A prosody value as a factor: a keyword of the utterance's own (`base`), any other
    change of the value `around` it; unreadable or absent: unchanged (espeak-ng's 100 %)."""
    if value is None:
        return around
    if (keyword := keywords.get(value.lower())) is not None:
        return base * keyword
    change = _CHANGE.fullmatch(value)
    if change is None:
        return around
    sign, number, unit = change.group(1), float(change.group(2)), (change.group(3) or "").lower()
    signed = -number if sign == "-" else number
    if unit == "%":
        return around * ((100 + signed) if sign else number) / 100
    if unit == "st":
        return around * 2 ** (signed / 12)
    if unit == "db":
        return around * 10 ** (signed / 20)
    if rate:  # espeak-ng reads a rate's number as a factor: "2" twice, "+0.5" half again
        return around * ((1 + signed) if sign else number)
    # a volume's number is espeak-ng's amplitude (100 the voice's own), or a change of it
    return around + signed / 100 if sign else base * number / 100
