"""The decoder stage: streamed audio bytes in any PlayAI output format → float32 PCM blocks.

Every decoder is I/O-free and incremental: ``feed`` returns the PCM that the bytes so far
complete, ``flush`` the rest at the end of the stream. Blocks are float32 arrays shaped
(frames, channels) at the player's rate and channel count. Decoders count what they had to
skip in ``errors`` and raise ``DecodeError`` only for streams they cannot decode at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from playspeak.errors import DecodeError

from .mp3 import Mp3Decoder
from .pcm import WavDecoder, mulaw_decoder, raw_decoder
from .xiph import FlacDecoder, OggDecoder


class StreamDecoder(Protocol):
    """What the player's feeder needs from a decoder. Not thread-safe; never blocks on I/O."""

    @property
    def errors(self) -> int:
        """Bad packets or bytes skipped so far (the stream went on after them)."""
        ...

    def feed(self, chunk: bytes) -> list[np.ndarray]:
        """Decode what `chunk` completes: float32 arrays shaped (frames, channels)."""
        ...

    def flush(self) -> list[np.ndarray]:
        """End of stream: the rest. Call once; the decoder is finished afterwards."""
        ...


def _headerless(
    factory: Callable[..., StreamDecoder],
) -> Callable[[int, int, int], StreamDecoder]:
    return lambda out_rate, out_channels, in_rate: factory(
        in_rate=in_rate, out_rate=out_rate, out_channels=out_channels
    )


def _self_describing(
    factory: Callable[..., StreamDecoder],
) -> Callable[[int, int, int], StreamDecoder]:
    return lambda out_rate, out_channels, _in_rate: factory(
        out_rate=out_rate, out_channels=out_channels
    )


# output_format (as PlayAI names it) → decoder factory (out_rate, out_channels, in_rate)
_FACTORIES: dict[str, Callable[[int, int, int], StreamDecoder]] = {
    "mp3": _self_describing(Mp3Decoder),
    "wav": _self_describing(WavDecoder),
    "flac": _self_describing(FlacDecoder),
    "ogg": _self_describing(OggDecoder),
    "raw": _headerless(raw_decoder),
    "pcm": _headerless(raw_decoder),
    "mulaw": _headerless(mulaw_decoder),
}

FORMATS = tuple(_FACTORIES)


def make_decoder(
    output_format: str, *, out_rate: int, out_channels: int, in_rate: int = 24000
) -> StreamDecoder:
    """A fresh decoder for one stream. `in_rate` matters only for headerless raw/pcm/mulaw."""
    factory = _FACTORIES.get(output_format.lower())
    if factory is None:
        raise DecodeError(
            f"unknown audio format {output_format!r}: expected one of {', '.join(FORMATS)}"
        )
    return factory(out_rate, out_channels, in_rate)
