"""The one place where text, a voice and a speed become PCM: the local voice's engines.

The local server's streaming and whole-reply renders, the daemon's direct local voice and the
fallback voice all ask `Synthesizer.pcm` for one sentence at a time (sentences.py splits a
text; `pieces` cuts a long sentence further where its engine is slow to start). espeak-ng runs
as a subprocess (spare processes started ahead of need, when `run` is running); the generated
test voice and Piper (engines/piper.py) run in a worker thread. Under a trio MockClock the
work runs inline, so that virtual time stands still while it is done.

A voice named `piper:<model>` is spoken by that Piper model whatever the default engine; any
other voice by the default engine (`synth`), which maps it to one of its own voices.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import trio

from playspeak import ssml_plain
from playspeak.engines import espeak, generated, piper
from playspeak.engines.steps import Step, steps
from playspeak.errors import ConfigError
from playspeak.ssml_plain import Part
from playspeak.style import Style
from playspeak.voices import espeak_voices

T = TypeVar("T")


class EngineName(enum.Enum):
    """An engine that turns text into PCM."""

    ESPEAK = "espeak"
    GENERATED = "generated"  # a deterministic voice-like signal: for tests, or no espeak-ng
    PIPER = "piper"  # the extra playspeak[piper]


# What the local voice says in events and at start when espeak-ng is missing (and no Piper voice
# stands in): the generated signal is never a silent default.
MURMUR = (
    "espeak-ng is not installed: the local voice speaks a generated signal, not words "
    "(apt-get install espeak-ng)"
)


def resolve_engine(mode: str) -> EngineName:
    """The engine that a `synth` setting ("auto", "espeak", "generated", "piper") means here:
    "auto" is espeak-ng, else an installed Piper voice, else the generated signal."""
    if mode == "generated":
        return EngineName.GENERATED
    if mode == "piper":
        if not piper.find_models():
            raise ConfigError(
                "synth = 'piper' but no Piper voice is installed: pip install 'playspeak[piper]'"
            )
        return EngineName.PIPER
    if espeak.espeak_available():
        return EngineName.ESPEAK
    if mode == "espeak":
        raise ConfigError("synth = 'espeak' but espeak-ng is not installed")
    if piper.find_models():
        return EngineName.PIPER
    return EngineName.GENERATED


def virtual_time() -> bool:
    """Whether trio runs on a MockClock: time leaps while a task waits on a thread or a
    process, so work runs inline there."""
    # Only a process that imported trio.testing can run on one; importing it here would load
    # pytest into the daemon, slowing every start (docs/benchmarks.md, "Daemon start-up").
    testing = sys.modules.get("trio.testing")
    return testing is not None and isinstance(trio.lowlevel.current_clock(), testing.MockClock)


async def cpu(work: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound `work` in a worker thread (inline under a MockClock). Cancellation waits
    for it to finish."""
    if virtual_time():
        await trio.lowlevel.checkpoint()
        return work(*args)
    return await trio.to_thread.run_sync(work, *args)


def amplified(pcm: np.ndarray, gain: float) -> np.ndarray:
    """int16 samples at `gain` (SSML's volume), clipped to the int16 range."""
    scaled = np.round(pcm.astype(np.float32) * gain)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


class Synthesizer:
    """Text → int16 mono PCM with the engines found here. Owned by the trio thread; `run`
    (optional) lives in a nursery of its owner: it keeps espeak-ng processes ready and loads
    the default Piper model ahead of the first utterance."""

    def __init__(self, mode: str = "auto") -> None:
        self.engine = resolve_engine(mode)
        # The generated signal only because espeak-ng is missing: a murmur, not words
        self.words_missing = self.engine is EngineName.GENERATED and mode != "generated"
        self.espeak_spares = espeak.EspeakSpares()
        if self.engine is EngineName.ESPEAK:
            espeak_voices()  # read now (blocks, once), not at a sentence (espeak_voice)
        self.piper_models = {m.id: m for m in piper.find_models()}
        self._piper = piper.PiperVoices()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep spare espeak-ng processes until cancelled (and load the default Piper model)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.espeak_spares.run)
            if self.engine is EngineName.PIPER:
                nursery.start_soon(cpu, self._piper.load, self._piper_model(""))
            task_status.started()

    def _piper_model(self, voice: str) -> piper.PiperModel:
        model = self.piper_models.get(voice)
        return model if model is not None else next(iter(self.piper_models.values()))

    def engine_of(self, voice: str) -> EngineName:
        """The engine that speaks `voice`."""
        return EngineName.PIPER if voice in self.piper_models else self.engine

    def warning(self, voice: str) -> str:
        """What every event of an utterance in `voice` says about it ("": nothing): that it
        is a murmur, not words."""
        murmur = self.words_missing and self.engine_of(voice) is EngineName.GENERATED
        return MURMUR if murmur else ""

    def pieces(self, sentence: str, voice: str) -> list[str]:
        """`sentence` in the parts synthesised one at a time: Piper's first audio waits for a
        whole part, so a long sentence is cut at its clauses; espeak-ng starts in a few ms."""
        if self.engine_of(voice) is EngineName.PIPER:
            return piper.split_clauses(sentence)
        return [sentence]

    def refusal(self, voice: str, style: Style) -> str | None:
        """Why `voice` cannot speak in `style` (None: it can): only espeak-ng has a pitch,
        a pitch range, punctuation and capitals to set (style.SETTINGS)."""
        engine = self.engine_of(voice)
        asked = style.unsettable()
        if engine is EngineName.ESPEAK or not asked:
            return None
        return f"the voice {voice!r} ({engine.value}) cannot set {', '.join(asked)}"

    def readable(self, text: str, voice: str, style: Style) -> tuple[tuple[Part, ...], Style]:
        """`text` as the parts the engine of `voice` says, and the style it reads them in: a
        plain text, or SSML for espeak-ng (which reads it), is one part; the other engines
        say SSML's parts, each at its speed and gain and then its pause (ssml_plain.py)."""
        if not style.ssml or self.engine_of(voice) is EngineName.ESPEAK:
            return (Part(text),), style
        return ssml_plain.parts(text), dataclasses.replace(style, ssml=False)

    def steps_of(
        self, text: str, voice: str, speed: float, style: Style
    ) -> tuple[list[Step], Style]:
        """What `voice` is asked to say of `text` (`readable`, then engines/steps.py) and the
        style it says it in: SSML that espeak-ng reads is one step."""
        parts, style = self.readable(text, voice, style)
        return steps(parts, speed, whole=style.ssml), style

    async def step_pcm(self, step: Step, voice: str, style: Style) -> tuple[np.ndarray, int]:
        """One step (engines/steps.py) whole: its words at its speed and gain, or its pause."""
        if step.pause:
            return self.silence(voice, step.pause)
        pcm, rate = await self.pcm(step.words, voice, step.speed, style)
        return (pcm if step.gain == 1.0 else amplified(pcm, step.gain)), rate

    async def said_pcm(
        self, text: str, voice: str, speed: float, style: Style
    ) -> tuple[np.ndarray, int]:
        """All of `text` (SSML when `style.ssml`) as `voice` says it, step by step, whole."""
        asked, style = self.steps_of(text, voice, speed, style)
        said = [await self.step_pcm(step, voice, style) for step in asked]
        return np.concatenate([pcm for pcm, _ in said]), said[0][1]

    def silence(self, voice: str, seconds: float) -> tuple[np.ndarray, int]:
        """`seconds` of zero samples at the rate `voice`'s engine makes (not espeak-ng's: it
        makes its own pauses)."""
        engine = self.engine_of(voice)
        assert engine is not EngineName.ESPEAK
        rate = self._piper_model(voice).rate if engine is EngineName.PIPER else generated.RATE
        return np.zeros(round(seconds * rate), np.int16), rate

    async def stream(
        self, text: str, voice: str, speed: float, style: Style, sink: espeak.Sink
    ) -> None:
        """One sentence's samples handed to `sink` as they are made: espeak-ng's in pieces
        as it writes them (its first come ~as soon as it starts), the other engines' whole.
        Raises as `pcm` does."""
        if self.engine_of(voice) is EngineName.ESPEAK and not virtual_time():
            await self.espeak_spares.stream(text, voice, speed, style, sink)
            return
        await sink(*await self.pcm(text, voice, speed, style))

    async def pcm(
        self, text: str, voice: str, speed: float, style: Style | None = None
    ) -> tuple[np.ndarray, int]:
        """One sentence's samples and their rate. Raises RuntimeError (or OSError) when the
        engine fails; cancellable (a running espeak-ng is killed; Piper's thread finishes).
        A style other engines cannot honour is espeak-ng's alone (see `refusal`)."""
        engine = self.engine_of(voice)
        if engine is EngineName.PIPER:
            model = self._piper_model(voice)
            return await cpu(self._piper.synthesize, model, text, speed), model.rate
        if engine is EngineName.ESPEAK:
            if virtual_time():
                return espeak.espeak_pcm_blocking(text, voice, speed, style)
            return await self.espeak_spares.pcm(text, voice, speed, style)
        return await cpu(generated.generate, text, voice, speed), generated.RATE
