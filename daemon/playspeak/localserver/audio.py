"""Text to encoded audio: synthesis, resampling and encoding, behind a small LRU cache."""

from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np
import trio
import trio.testing

from playspeak.errors import ConfigError
from playspeak.localserver import encode, espeak, generated
from playspeak.localserver.settings import SynthMode

CacheKey = tuple[str, str, float, int, str, str]


def resolve_synth(mode: SynthMode) -> str:
    """The synthesizer that ``mode`` means on this machine: "espeak" or "generated"."""
    if mode == "generated":
        return "generated"
    if espeak.espeak_available():
        return "espeak"
    if mode == "espeak":
        raise ConfigError("synth = 'espeak' but espeak-ng is not installed")
    return "generated"


def _finish(pcm: np.ndarray, rate: int, sample_rate: int, output_format: str) -> encode.Encoded:
    return encode.encode(encode.resample(pcm, rate, sample_rate), sample_rate, output_format)


def _generate_and_finish(
    text: str, voice: str, speed: float, sample_rate: int, output_format: str
) -> encode.Encoded:
    pcm = generated.generate(text, voice, speed)
    return _finish(pcm, generated.RATE, sample_rate, output_format)


def _virtual_time() -> bool:
    # Under a MockClock (autojump) time leaps while a task waits on a thread or a process,
    # so there the work runs inline: virtual time then stands still while we encode.
    return isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)


class AudioEngine:
    """Renders commands to encoded audio; identical requests share one cached encoding."""

    def __init__(
        self, mode: SynthMode, *, max_entries: int = 32, max_bytes: int = 64 << 20
    ) -> None:
        self.synth = resolve_synth(mode)
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._cache: OrderedDict[CacheKey, encode.Encoded] = OrderedDict()

    async def render(
        self, text: str, voice: str, speed: float, sample_rate: int, output_format: str
    ) -> encode.Encoded:
        """The encoded audio; CPU work runs in a worker thread, cancellation waits for it."""
        key = (text, voice, float(speed), sample_rate, output_format, self.synth)
        if (hit := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            await trio.lowlevel.checkpoint()
            return hit
        inline = _virtual_time()
        if self.synth == "espeak":
            if inline:
                pcm, rate = espeak.espeak_pcm_blocking(text, voice, speed)
            else:
                pcm, rate = await espeak.espeak_pcm(text, voice, speed)
            work = functools.partial(_finish, pcm, rate, sample_rate, output_format)
        else:
            work = functools.partial(
                _generate_and_finish, text, voice, speed, sample_rate, output_format
            )
        result = work() if inline else await trio.to_thread.run_sync(work)
        self._store(key, result)
        return result

    def _store(self, key: CacheKey, value: encode.Encoded) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        total = sum(len(v.data) for v in self._cache.values())
        while len(self._cache) > 1 and (
            len(self._cache) > self._max_entries or total > self._max_bytes
        ):
            _, dropped = self._cache.popitem(last=False)
            total -= len(dropped.data)
