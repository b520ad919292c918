"""The voices a client can list and choose (`voices`, `playspeak voices`, SSIP's LIST
SYNTHESIS_VOICES): every espeak-ng language, each Piper voice found, or for a remote service the
voice the configuration names. A voice's `id` in any speak selects it and its engine
(engines/). Made once at start; `for_language` is I/O-free."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engines load numpy and trio: only the daemon needs them
    from playspeak.engines import Synthesizer

ESPEAK = "espeak-ng"
# What each engine cannot do, stated per voice (and refused when asked for, not ignored).
PIPER_REFUSES = ("pitch",)


@dataclass(frozen=True)
class Voice:
    id: str  # what a speak's `voice` names
    name: str
    language: str  # BCP 47-ish, lower case: "en-us", "de"; "" when unknown
    engine: str  # "espeak", "piper", "generated", or "service"
    refuses: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "engine": self.engine,
            "refuses": list(self.refuses),
        }


def parse_espeak_voices(listing: str) -> list[Voice]:
    """`espeak-ng --voices` output → one voice per language (no I/O)."""
    voices: list[Voice] = []
    for line in listing.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 4:
            language, name = cols[1], cols[3].replace("_", " ")
            voices.append(Voice(f"espeak:{language}", name, language.lower(), "espeak"))
    return voices


def espeak_voices() -> list[Voice]:
    """espeak-ng's languages (runs it once, ~10 ms; blocks). Empty without espeak-ng."""
    if shutil.which(ESPEAK) is None:
        return []
    result = subprocess.run([ESPEAK, "--voices"], capture_output=True, text=True, check=False)
    return parse_espeak_voices(result.stdout)


def local_voices(synth: Synthesizer) -> list[Voice]:
    """The local engines' voices: Piper's first (the better voice), then espeak-ng's. Blocks."""
    from playspeak.engines import EngineName

    piper = [
        Voice(m.id, m.id.removeprefix("piper:"), m.language, "piper", PIPER_REFUSES)
        for m in synth.piper_models.values()
    ]
    if synth.engine is EngineName.GENERATED:
        generated = Voice("generated", "generated test voice", "", "generated")
        return [*piper, generated]
    return [*piper, *espeak_voices()]


def service_voices(voice: str) -> list[Voice]:
    """A remote service's voices: the one the configuration names."""
    return [Voice(voice, voice.rsplit("/", 2)[-2] if "/" in voice else voice, "", "service")]


def for_language(voices: list[Voice], language: str) -> Voice | None:
    """The voice for `language` ("de", "en-GB"): exact, else the first of that language's
    family (de → de-ch is not chosen over de; en → en-us when there is no plain en)."""
    wanted = language.strip().lower().replace("_", "-")
    if not wanted:
        return None
    exact = [v for v in voices if v.language == wanted]
    if exact:
        return exact[0]
    family = wanted.split("-")[0]
    return next((v for v in voices if v.language.split("-")[0] == family), None)
