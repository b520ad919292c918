"""Incremental decoding of uncompressed streams: WAV (RIFF), headerless s16le and G.711 mu-law."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from playspeak.errors import DecodeError

from .resample import PcmResampler

# Streaming writers do not know the length and put 0 or a huge placeholder in the data size
# (0xffffffff, 0x7fffffff; espeak-ng writes 0x7ffff000): all of them mean "to the end".
_OPEN_ENDED_FROM = 0x7FFF0000
_MAX_HEADER_BYTES = 1 << 20  # a WAV header (with LIST etc.) larger than this is not a header
_WAVE_FORMAT_PCM, _WAVE_FORMAT_FLOAT, _WAVE_FORMAT_EXTENSIBLE = 1, 3, 0xFFFE


def _mulaw_table() -> np.ndarray:
    """G.711 mu-law byte → float32 sample, as FFmpeg's pcm_mulaw decodes it (scaled to ±1)."""
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    linear = np.where(codes & 0x80, -magnitude, magnitude)
    return (linear / 32768.0).astype(np.float32)


_MULAW = _mulaw_table()


def _decode_unsigned8(raw: bytes, channels: int) -> np.ndarray:
    samples = np.frombuffer(raw, dtype=np.uint8).astype(np.float32)
    return ((samples - 128.0) / 128.0).reshape(-1, channels)


def _decode_int(dtype: str, scale: float) -> Callable[[bytes, int], np.ndarray]:
    def decode(raw: bytes, channels: int) -> np.ndarray:
        samples = np.frombuffer(raw, dtype=dtype).astype(np.float32) / scale
        return samples.reshape(-1, channels)

    return decode


def _decode_int24(raw: bytes, channels: int) -> np.ndarray:
    triplets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    value = triplets[:, 0] | (triplets[:, 1] << 8) | (triplets[:, 2] << 16)
    value = np.where(value & 0x800000, value - 0x1000000, value)
    return (value.astype(np.float32) / 8388608.0).reshape(-1, channels)


def _decode_float(dtype: str) -> Callable[[bytes, int], np.ndarray]:
    def decode(raw: bytes, channels: int) -> np.ndarray:
        return np.frombuffer(raw, dtype=dtype).astype(np.float32).reshape(-1, channels)

    return decode


def _decode_mulaw(raw: bytes, channels: int) -> np.ndarray:
    return _MULAW[np.frombuffer(raw, dtype=np.uint8)].reshape(-1, channels)


# (format tag, bits per sample) → bytes-to-float32 conversion
_SAMPLE_DECODERS: dict[tuple[int, int], Callable[[bytes, int], np.ndarray]] = {
    (_WAVE_FORMAT_PCM, 8): _decode_unsigned8,
    (_WAVE_FORMAT_PCM, 16): _decode_int("<i2", 32768.0),
    (_WAVE_FORMAT_PCM, 24): _decode_int24,
    (_WAVE_FORMAT_PCM, 32): _decode_int("<i4", 2147483648.0),
    (_WAVE_FORMAT_FLOAT, 32): _decode_float("<f4"),
    (_WAVE_FORMAT_FLOAT, 64): _decode_float("<f8"),
    (7, 8): _decode_mulaw,  # WAVE_FORMAT_MULAW
}


class PcmDecoder:
    """Fixed-layout PCM bytes in, float32 blocks out; keeps partial sample frames for later."""

    def __init__(
        self,
        *,
        convert: Callable[[bytes, int], np.ndarray],
        rate: int,
        channels: int,
        bytes_per_frame: int,
        out_rate: int,
        out_channels: int,
    ) -> None:
        self._convert = convert
        self._rate = rate
        self._channels = channels
        self._frame_bytes = bytes_per_frame
        self._pending = b""
        self._pcm = PcmResampler(out_rate, out_channels)
        self.errors = 0

    def feed(self, chunk: bytes) -> list[np.ndarray]:
        """Convert the whole sample frames now available; returns float32 blocks."""
        data = self._pending + chunk
        whole = len(data) - len(data) % self._frame_bytes
        self._pending = data[whole:]
        if not whole:
            return []
        return self._pcm.push_array(self._convert(data[:whole], self._channels), self._rate)

    def flush(self) -> list[np.ndarray]:
        """End of stream: a trailing partial sample frame is dropped (and counted)."""
        if self._pending:
            self.errors += 1
            self._pending = b""
        return self._pcm.flush()


def raw_decoder(*, in_rate: int, out_rate: int, out_channels: int) -> PcmDecoder:
    """Headerless signed 16-bit little-endian mono at `in_rate`."""
    return PcmDecoder(
        convert=_SAMPLE_DECODERS[(_WAVE_FORMAT_PCM, 16)],
        rate=in_rate,
        channels=1,
        bytes_per_frame=2,
        out_rate=out_rate,
        out_channels=out_channels,
    )


def mulaw_decoder(*, in_rate: int, out_rate: int, out_channels: int) -> PcmDecoder:
    """Headerless 8-bit G.711 mu-law mono at `in_rate`."""
    return PcmDecoder(
        convert=_decode_mulaw,
        rate=in_rate,
        channels=1,
        bytes_per_frame=1,
        out_rate=out_rate,
        out_channels=out_channels,
    )


class WavDecoder:
    """RIFF/WAVE in arbitrary chunks: the header is parsed as it arrives, then PCM streams.

    Open-ended data sizes (0, or 0x7fff0000 and above: streaming writers do not know the
    length) mean "data runs to the end of the stream"; a real data size stops decoding
    there, so chunks after the data (LIST at the end) are ignored. Chunks before ``data``
    (LIST, fact, ...) are skipped.
    """

    def __init__(self, *, out_rate: int, out_channels: int) -> None:
        self._out_rate = out_rate
        self._out_channels = out_channels
        self._header = b""
        self._body: PcmDecoder | None = None
        self._data_left: int | None = None  # bytes of "data" still to decode; None: to the end

    @property
    def errors(self) -> int:
        return self._body.errors if self._body else 0

    def feed(self, chunk: bytes) -> list[np.ndarray]:
        """Parse header bytes or decode sample bytes; returns float32 blocks."""
        if self._body is None:
            self._header += chunk
            chunk = self._parse_header()
            if self._body is None:
                return []
        if self._data_left is not None:
            chunk = chunk[: self._data_left]
            self._data_left -= len(chunk)
        return self._body.feed(chunk)

    def flush(self) -> list[np.ndarray]:
        """End of stream; DecodeError if the header never completed."""
        if self._body is None:
            if not self._header:
                return []
            raise DecodeError(f"WAV stream ended inside its header ({len(self._header)} bytes)")
        return self._body.flush()

    def _parse_header(self) -> bytes:
        """Consume the RIFF header once complete; returns the bytes after it (else b"")."""
        head = self._header
        if len(head) >= 12 and (head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE"):
            raise DecodeError(f"not a WAV stream: starts with {head[:12]!r}")
        if head[:4] == b"RIFX":
            raise DecodeError("big-endian WAV (RIFX) is not supported")
        fmt: bytes | None = None
        pos = 12
        while len(head) >= pos + 8:
            chunk_id = head[pos : pos + 4]
            (size,) = struct.unpack_from("<I", head, pos + 4)
            if chunk_id == b"data":
                self._start_body(fmt, size)
                rest = head[pos + 8 :]
                self._header = b""
                return rest
            end = pos + 8 + size + (size & 1)  # chunks are padded to an even size
            if len(head) < end:
                break
            if chunk_id == b"fmt ":
                fmt = head[pos + 8 : pos + 8 + size]
            pos = end
        if len(head) > _MAX_HEADER_BYTES:
            raise DecodeError(f"no WAV data chunk in the first {len(head)} bytes")
        return b""

    def _start_body(self, fmt: bytes | None, size: int) -> None:
        if fmt is None or len(fmt) < 16:
            raise DecodeError("WAV data chunk before a valid fmt chunk")
        tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
        if tag == _WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
            (tag,) = struct.unpack_from("<H", fmt, 24)  # the sub-format GUID starts with it
        convert = _SAMPLE_DECODERS.get((tag, bits))
        if convert is None or channels == 0 or rate == 0:
            raise DecodeError(
                f"unsupported WAV format: tag {tag:#x}, {bits} bits, {channels} ch, {rate} Hz"
            )
        self._body = PcmDecoder(
            convert=convert,
            rate=rate,
            channels=channels,
            bytes_per_frame=channels * bits // 8,
            out_rate=self._out_rate,
            out_channels=self._out_channels,
        )
        self._data_left = None if size == 0 or size >= _OPEN_ENDED_FROM else size
