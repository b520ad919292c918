"""The voices a client can list and choose (`voices`, `playspeak voices`, SSIP's LIST
SYNTHESIS_VOICES): every espeak-ng voice, each Piper voice found, or for a remote service the
voice the configuration names. A voice's `id` in any speak selects it and its engine
(engines/). Made once at start; `for_language` is I/O-free."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from playspeak.ssml import ESPEAK_HONOURS, PLAIN_HONOURS, SERVICE_HONOURS
from playspeak.style import SETTINGS

if TYPE_CHECKING:  # the engines load numpy and trio: only the daemon needs them
    from playspeak.engines import Synthesizer

ESPEAK = "espeak-ng"
_ALSO = re.compile(r"\((\S+) (\d+)\)")  # espeak-ng's "Other Languages": (en 2)(en-gb 3)


@dataclass(frozen=True)
class Voice:
    id: str  # what a speak's `voice` names
    name: str
    language: str  # BCP 47-ish, lower case: "en-us", "de"; "" when unknown
    engine: str  # "espeak", "piper", "generated", or "service"
    # What it cannot do, stated (and refused when asked for, not ignored): only espeak-ng
    # has the knobs of style.SETTINGS; a service gets SSML's words and marks alone.
    refuses: tuple[str, ...] = ()
    ssml: tuple[str, ...] = SERVICE_HONOURS  # the SSML elements it honours; it drops the others
    # Other languages its engine gives it for, each with a priority (lower first): espeak-ng's
    # voice for a bare `en` is en-gb, `(en 2)`
    serves: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "engine": self.engine,
            "refuses": list(self.refuses),
            "ssml": list(self.ssml),
        }


def _espeak_entries(listing: str) -> list[tuple[Voice, str]]:
    """`espeak-ng --voices` output → each voice with its voice file (no I/O). A voice's id is
    `espeak:<language>`; a second voice of a language already listed (yue: Cantonese, and
    Cantonese with Latin read as Jyutping) is named by its file instead, so each id selects
    one voice."""
    entries: list[tuple[Voice, str]] = []
    taken: set[str] = set()
    for line in listing.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 5:
            continue
        language, name, file = cols[1], cols[3].replace("_", " "), cols[4]
        ids = (f"espeak:{language}", f"espeak:{file.rsplit('/', 1)[-1]}", f"espeak:{file}")
        chosen = next((i for i in ids if i.lower() not in taken), ids[-1])
        taken.add(chosen.lower())
        serves = tuple((lang.lower(), int(p)) for lang, p in _ALSO.findall(" ".join(cols[5:])))
        voice = Voice(chosen, name, language.lower(), "espeak", ssml=ESPEAK_HONOURS, serves=serves)
        entries.append((voice, file))
    return entries


def parse_espeak_voices(listing: str) -> list[Voice]:
    """`espeak-ng --voices` output → one voice per listed voice (no I/O)."""
    return [voice for voice, _ in _espeak_entries(listing)]


@functools.cache
def _installed(program: str) -> tuple[tuple[Voice, str], ...]:
    # once per process and espeak-ng found (a test may hide it): its voices do not change
    listing = subprocess.run([program, "--voices"], capture_output=True, text=True).stdout
    return tuple(_espeak_entries(listing))


def _installed_espeak() -> tuple[tuple[Voice, str], ...]:
    program = shutil.which(ESPEAK)
    return _installed(program) if program else ()


def espeak_voices() -> list[Voice]:
    """espeak-ng's voices (runs it once per process and blocks: docs/benchmarks.md, "The local
    voice and the embedded server"). Empty without it."""
    return [voice for voice, _ in _installed_espeak()]


def espeak_file(voice_id: str) -> str | None:
    """The voice file of a listed espeak-ng voice (`espeak:<language>`, any case), what
    `espeak-ng -v` selects it by; None if not listed. Its language may not select it:
    espeak-ng lowercases the language asked for but compares it with the voice file's as
    written, so `chr-US-Qaaa-x-west` selects nothing and `iro/chr` the Cherokee voice.
    Blocks the first time (espeak_voices)."""
    wanted = voice_id.lower()
    return next((f for v, f in _installed_espeak() if v.id.lower() == wanted), None)


def local_voices(synth: Synthesizer) -> list[Voice]:
    """The local engines' voices, the default engine's first (espeak-ng's; Piper's with
    synth = "piper"): a `language` is looked for among them first (for_language). Blocks."""
    from playspeak.engines import EngineName

    piper = [
        Voice(m.id, m.id.removeprefix("piper:"), m.language, "piper", SETTINGS, PLAIN_HONOURS)
        for m in synth.piper_models.values()
    ]
    if synth.engine is EngineName.GENERATED:
        generated = Voice(
            "generated", "generated test voice", "", "generated", SETTINGS, PLAIN_HONOURS
        )
        return [*piper, generated]
    if synth.engine is EngineName.PIPER:
        return [*piper, *espeak_voices()]
    return [*espeak_voices(), *piper]


def service_voices(voice: str) -> list[Voice]:
    """A remote service's voices: the one the configuration names."""
    return [Voice(voice, voice.rsplit("/", 2)[-2] if "/" in voice else voice, "", "service")]


def for_language(voices: list[Voice], language: str) -> Voice | None:
    """The voice for `language` ("de", "en-GB"), looked for among the first listed engine's
    voices (the default engine's, local_voices), then each other engine's: one of exactly that
    language, else the one its engine prefers for it (espeak-ng: en → en-gb, fr → fr-fr),
    else the first of that language's family (de → de-ch is not chosen over de).

    So a client that sets a language (SSIP's LANGUAGE, as speechd's clients do) keeps the
    voice engine that speaks by default: espeak-ng starts in tens of milliseconds, an
    installed Piper voice would load its model at its first message (about a second:
    docs/benchmarks.md, "Piper")."""
    wanted = language.strip().lower().replace("_", "-")
    if not wanted:
        return None
    for engine in dict.fromkeys(v.engine for v in voices):
        chosen = _pick([v for v in voices if v.engine == engine], wanted)
        if chosen is not None:
            return chosen
    return None


def _pick(voices: list[Voice], wanted: str) -> Voice | None:
    exact = next((v for v in voices if v.language == wanted), None)
    if exact is not None:
        return exact
    served = [(p, i) for i, v in enumerate(voices) for lang, p in v.serves if lang == wanted]
    if served:
        return voices[min(served)[1]]
    family = wanted.split("-")[0]
    return next((v for v in voices if v.language.split("-")[0] == family), None)
