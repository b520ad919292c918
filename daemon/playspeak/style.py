"""How a voice is to speak beyond its rate: pitch, pitch range, punctuation and capital
letters, as Speech Dispatcher's clients set them (SSIP's PITCH, PITCH_RANGE, PUNCTUATION,
CAP_LET_RECOGN) and a speak carries them (`pitch`, `pitch_range`, `punctuation`, `capitals`);
and whether the text is SSML (ssml.py made it safe). No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The values each may take: style_names.py (light, for the CLI). What a voice without
# espeak-ng's knobs refuses (voices.py states it, engines/ refuses it):
SETTINGS = ("pitch", "pitch_range", "punctuation", "capitals")


@dataclass(frozen=True)
class Style:
    pitch: int = 0  # -100..100, 0: the voice's own
    punctuation: str = "none"  # which punctuation is spoken by name
    capitals: str = "none"  # how a capital letter is marked
    pitch_range: int = 0  # -100..100: the voice's own range, from 0 (monotone) to twice it
    ssml: bool = False  # the text is SSML that ssml.render wrote

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Style:
        """The style an utterance's params carry (the builder puts non-defaults there)."""
        return cls(
            int(params.get("pitch", 0)),
            str(params.get("punctuation", "none")),
            str(params.get("capitals", "none")),
            int(params.get("pitch_range", 0)),
            bool(params.get("ssml", False)),
        )

    def params(self) -> dict[str, Any]:
        """The fields that differ from the default (so that a plain request's params, and the
        phrase cache's key, stay as they were)."""
        default = Style()
        return {k: v for k, v in vars(self).items() if v != getattr(default, k)}

    def unsettable(self) -> list[str]:
        """The settings asked for that only espeak-ng can set (SETTINGS)."""
        return [k for k in self.params() if k in SETTINGS]
