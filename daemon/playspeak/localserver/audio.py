"""Text to encoded audio: synthesis, resampling and encoding, behind a small LRU cache.

A text streams as a real service does: sentence by sentence through one encoder, each
sentence's audio fed to it a slice at a time, so its first bytes are ready once the first
slice of its first sentence is encoded, whatever its length (encoding a long sentence whole
takes tens of milliseconds: docs/benchmarks.md, "The local voice and the embedded server"); its
audio is the sentences' audio back to back. A text of one sentence in a
format that records its length up front (WAV, FLAC, Ogg) is encoded whole instead, with real
sizes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import trio

from playspeak.engines import Synthesizer, cpu
from playspeak.engines.steps import Step
from playspeak.localserver import encode
from playspeak.localserver.settings import SynthMode
from playspeak.style import Style

SLICE_SECONDS = 0.2  # a sentence's audio is encoded this much at a time


@dataclass(frozen=True)
class Rendering:
    """What a reply says and how it is encoded; also its key in the render cache."""

    text: str  # SSML when `ssml` (commands.Command.ssml, checked), said as the direct voice says it
    voice: str
    speed: float = 1.0
    sample_rate: int = 24000
    output_format: str = "mp3"
    ssml: bool = False


@dataclass(frozen=True)
class Piece:
    """Consecutive bytes of one reply's audio; ``seconds``: audio encoded up to their end."""

    data: bytes
    seconds: float
    header: int = 0  # on a reply's first piece: bytes at its start that go out alone (WAV)


Emit = Callable[[Piece], Awaitable[None]]


def _finish(pcm: np.ndarray, rate: int, sample_rate: int, output_format: str) -> encode.Encoded:
    return encode.encode(encode.resample(pcm, rate, sample_rate), sample_rate, output_format)


def _streams(said: list[Step], output_format: str) -> bool:
    """Whether a text of these steps is encoded as a stream (else whole, in one piece)."""
    if len(said) == 1:
        return output_format in encode.STREAMED_AS_WHOLE
    return len(said) > 1


class AudioEngine:
    """Renders commands to encoded audio; identical requests share one cached encoding.

    The cache is small in bytes on purpose: in the daemon (the embedded server) it is resident
    memory next to the phrase cache, which already answers repeats from disk; when it could hold
    64 MiB it held far less than that (docs/benchmarks.md, "The local voice and the embedded
    server"). (Ogg's stream serial number is
    random, so an Ogg reply re-rendered after it left the cache differs in those bytes.)"""

    def __init__(self, mode: SynthMode, *, max_entries: int = 32, max_bytes: int = 4 << 20) -> None:
        self.synthesizer = Synthesizer(mode)
        self.synth = self.synthesizer.engine.value  # "espeak" or "generated"
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._cache: OrderedDict[Rendering, encode.Encoded] = OrderedDict()

    async def render(self, asked: Rendering) -> encode.Encoded:
        """The whole encoded audio, exactly the bytes ``stream`` emits for the same request.

        CPU work runs in a worker thread; cancellation waits for the running step."""
        if (hit := self._cache.get(asked)) is not None:
            self._cache.move_to_end(asked)
            await trio.lowlevel.checkpoint()
            return hit
        said, style = self._steps(asked)
        if _streams(said, asked.output_format):
            pieces: list[Piece] = []

            async def keep(piece: Piece) -> None:
                pieces.append(piece)

            return await self._stream_steps(asked, said, style, keep)
        return await self._render_whole(asked, said, style)

    async def stream(self, asked: Rendering, emit: Emit) -> None:
        """Await ``emit`` with each piece of the encoded audio as it is ready, in order.

        The pieces joined are ``render``'s bytes. A cached text comes as one piece, as does
        a one-sentence text in a format encoded whole. Blocks while ``emit`` blocks
        (back-pressure); cancellation drops the rest."""
        if asked not in self._cache:
            said, style = self._steps(asked)
            if _streams(said, asked.output_format):
                await self._stream_steps(asked, said, style, emit)
                return
        audio = await self.render(asked)
        await emit(Piece(audio.data, audio.duration, audio.header))

    def _steps(self, asked: Rendering) -> tuple[list[Step], Style]:
        style = Style(ssml=asked.ssml)
        return self.synthesizer.steps_of(asked.text, asked.voice, asked.speed, style)

    async def _stream_steps(
        self, asked: Rendering, said: list[Step], style: Style, emit: Emit
    ) -> encode.Encoded:
        voice, sample_rate, output_format = asked.voice, asked.sample_rate, asked.output_format
        encoder: encode.StreamEncoder | None = None
        parts: list[bytes] = []
        seconds = 0.0
        for step in said:
            pcm, rate = await self.synthesizer.step_pcm(step, voice, style)
            if encoder is None:
                encoder = encode.StreamEncoder(rate, sample_rate, output_format)
            size = round(rate * SLICE_SECONDS)
            for start in range(0, len(pcm), size):
                part = pcm[start : start + size]
                data = await cpu(encoder.feed, part)
                seconds += len(part) / rate
                if data:
                    await emit(Piece(data, seconds, 0 if parts else encoder.header))
                    parts.append(data)
        assert encoder is not None  # steps() gave at least one step
        tail = await cpu(encoder.close)
        await emit(Piece(tail, seconds, 0 if parts else encoder.header))
        parts.append(tail)
        result = encode.Encoded(b"".join(parts), encoder.header, seconds)
        self._store(asked, result)
        return result

    async def _render_whole(
        self, asked: Rendering, said: list[Step], style: Style
    ) -> encode.Encoded:
        (step,) = said  # _streams: a text of one step
        pcm, rate = await self.synthesizer.step_pcm(step, asked.voice, style)
        result = await cpu(_finish, pcm, rate, asked.sample_rate, asked.output_format)
        self._store(asked, result)
        return result

    def _store(self, asked: Rendering, value: encode.Encoded) -> None:
        self._cache[asked] = value
        self._cache.move_to_end(asked)
        total = sum(len(v.data) for v in self._cache.values())
        while len(self._cache) > 1 and (
            len(self._cache) > self._max_entries or total > self._max_bytes
        ):
            _, dropped = self._cache.popitem(last=False)
            total -= len(dropped.data)
