"""The decode path alone: seconds of MP3 audio decoded and resampled per CPU second.

Feeds a clip to playspeak's decoder (`make_decoder("mp3", out_rate=48000, out_channels=1)`:
ID3 stripping, incremental parse + decode, resampling to float32 48 kHz) in the local server's
chunk sizes (500–4000 bytes, seeded), repeating until at least `min_cpu` seconds of this
thread's CPU were spent. For reference, the same bytes through bare PyAV (one parse/decode
loop and an AudioResampler, no per-chunk bookkeeping).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import av

from playspeak.audio.decoder import make_decoder
from playspeak.audio.mp3 import Id3Stripper

from .soundcard import RATE


def chunks(data: bytes, seed: int = 0, low: int = 500, high: int = 4000) -> list[bytes]:
    """`data` cut into random chunks of `low`–`high` bytes (as the local server cuts it)."""
    rng = random.Random(seed)
    out, position = [], 0
    while position < len(data):
        size = rng.randint(low, high)
        out.append(data[position : position + size])
        position += size
    return out


def _playspeak(parts: list[bytes]) -> int:
    decoder = make_decoder("mp3", out_rate=RATE, out_channels=1)
    blocks = [b for part in parts for b in decoder.feed(part)] + decoder.flush()
    return sum(len(b) for b in blocks)


def _bare_pyav(parts: list[bytes]) -> int:
    codec = av.CodecContext.create("mp3float", "r")
    resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
    tags, frames = Id3Stripper(), 0
    for part in [*parts, None]:
        data = tags.feed(part) if part is not None else None
        for packet in codec.parse(data) if data is None or data else []:
            for frame in codec.decode(packet):
                frames += sum(f.samples for f in resampler.resample(frame))
    return frames + sum(f.samples for f in resampler.resample(None))


def speed(decode: Callable[[list[bytes]], int], parts: list[bytes], min_cpu: float) -> float:
    """Audio seconds decoded per CPU second of this thread (time.thread_time)."""
    decode(parts)  # warm-up
    frames, start = 0, time.thread_time()
    while (spent := time.thread_time() - start) < min_cpu:
        frames += decode(parts)
    return frames / RATE / spent


def measure(mp3: bytes, min_cpu: float = 1.0) -> dict[str, float]:
    """× real time for playspeak's decoder and for bare PyAV on the same chunks."""
    parts = chunks(mp3)
    return {
        "playspeak decoder": speed(_playspeak, parts, min_cpu),
        "bare PyAV": speed(_bare_pyav, parts, min_cpu),
    }
