"""PCM to the wire formats the service offers, with PyAV (CPU-bound, no I/O)."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
from av.audio.stream import AudioStream

BLOCK = 65536  # samples fed to PyAV at a time, to keep its frames small
MP3_BIT_RATE = 128_000
WAV_HEADER = 44
_MP3_CODEC = "libmp3lame" if "libmp3lame" in av.codecs_available else "mp3"


@dataclass(frozen=True)
class Encoded:
    """Encoded audio; ``header`` bytes at its start go out as their own frame (WAV's RIFF)."""

    data: bytes
    header: int
    duration: float  # seconds of PCM that went in


def _frames(pcm: np.ndarray, rate: int) -> list[av.AudioFrame]:
    frames = []
    for start in range(0, len(pcm), BLOCK):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm[None, start : start + BLOCK]), format="s16", layout="mono"
        )
        frame.rate = rate
        frames.append(frame)
    return frames


def resample(pcm: np.ndarray, rate: int, target: int) -> np.ndarray:
    """int16 mono samples at ``rate`` converted to ``target`` Hz."""
    if rate == target:
        return pcm
    resampler = av.AudioResampler(format="s16", layout="mono", rate=target)
    out = [f for frame in _frames(pcm, rate) for f in resampler.resample(frame)]
    out += resampler.resample(None)
    if not out:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([f.to_ndarray()[0] for f in out]).astype(np.int16)


def wav_header(rate: int, data_size: int) -> bytes:
    """The canonical 44-byte RIFF header of 16-bit mono PCM with real sizes."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", 36 + data_size, b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16),
        *(b"data", data_size),
    )


def _mux(
    pcm: np.ndarray,
    rate: int,
    container: str,
    codec: str,
    *,
    layout: str = "mono",
    bit_rate: int | None = None,
    options: dict[str, str] | None = None,
    codec_options: dict[str, str] | None = None,
) -> bytes:
    """Encode with ``codec`` into ``container``, in memory."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=container, options=options or {}) as out:
        stream = _audio_stream(out, codec, rate, layout)
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        if codec_options:
            stream.codec_context.options = codec_options
        resampler = av.AudioResampler(
            format=stream.codec_context.format.name, layout=layout, rate=rate
        )
        for frame in [*_frames(pcm, rate), None]:
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return buf.getvalue()


def _mp3(pcm: np.ndarray, rate: int) -> bytes:
    # MP3 knows nine sample rates; others go to the nearest one, as any MP3 encoder must.
    rates = av.Codec(_MP3_CODEC, "w").audio_rates or (rate,)
    mp3_rate = min(rates, key=lambda r: (abs(r - rate), r))
    if mp3_rate != rate:
        pcm = resample(pcm, rate, mp3_rate)
    # ID3v2 tag first as the service sends it; no Xing/Info frame: a stream can't know its length.
    return _mux(
        pcm, mp3_rate, "mp3", _MP3_CODEC, bit_rate=MP3_BIT_RATE, options={"write_xing": "0"}
    )


def _ogg(pcm: np.ndarray, rate: int) -> bytes:
    # ffmpeg's own Vorbis encoder is "experimental" and encodes stereo only.
    return _mux(
        pcm, rate, "ogg", "vorbis", layout="stereo", codec_options={"strict": "experimental"}
    )


_ENCODERS: dict[str, Callable[[np.ndarray, int], bytes]] = {
    "raw": lambda pcm, rate: pcm.astype("<i2").tobytes(),
    "wav": lambda pcm, rate: wav_header(rate, 2 * len(pcm)) + pcm.astype("<i2").tobytes(),
    "mp3": _mp3,
    "mulaw": lambda pcm, rate: _mux(pcm, rate, "mulaw", "pcm_mulaw"),
    "flac": lambda pcm, rate: _mux(pcm, rate, "flac", "flac"),
    "ogg": _ogg,
}


def encode(pcm: np.ndarray, rate: int, output_format: str) -> Encoded:
    """int16 mono samples at ``rate`` encoded as ``output_format``; ValueError if unknown."""
    if output_format not in _ENCODERS:
        raise ValueError(f"unknown output format {output_format!r}")
    data = _ENCODERS[output_format](pcm, rate)
    return Encoded(data, WAV_HEADER if output_format == "wav" else 0, len(pcm) / rate)


class _Sink:
    """A write-only file for PyAV: no seek, so muxers never rewrite what was already sent."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


_STREAMED: dict[str, tuple[str, str, str, dict[str, str]]] = {  # container, codec, layout, opts
    "mp3": ("mp3", _MP3_CODEC, "mono", {"write_xing": "0"}),
    "mulaw": ("mulaw", "pcm_mulaw", "mono", {}),
    "flac": ("flac", "flac", "mono", {}),
    "ogg": ("ogg", "vorbis", "stereo", {}),
}
STREAM_WAV_SIZE = 0xFFFFFFFF  # the RIFF and data sizes of a WAV stream of unknown length
# Formats whose StreamEncoder bytes are exactly ``encode``'s of the whole PCM (no length up front)
STREAMED_AS_WHOLE = frozenset({"mp3", "raw", "mulaw"})


class StreamEncoder:
    """One reply's encoder, fed PCM piece by piece: ``feed`` returns the bytes ready so far.

    Not thread-safe; one caller at a time (any thread). Its bytes differ from ``encode`` of the
    whole PCM where a format records its length up front: a WAV stream's sizes are
    STREAM_WAV_SIZE, a FLAC stream's STREAMINFO does not know its sample count."""

    def __init__(self, rate: int, sample_rate: int, output_format: str) -> None:
        if output_format not in _ENCODERS:
            raise ValueError(f"unknown output format {output_format!r}")
        self.header = WAV_HEADER if output_format == "wav" else 0
        self._rate = rate
        self._format = output_format
        self._to_rate = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        self._started = False
        self._sink = _Sink()
        self._out: av.container.OutputContainer | None = None
        if output_format in _STREAMED:
            container, codec, layout, options = _STREAMED[output_format]
            out_rate = sample_rate
            if output_format == "mp3":
                rates = av.Codec(_MP3_CODEC, "w").audio_rates or (sample_rate,)
                out_rate = min(rates, key=lambda r: (abs(r - sample_rate), r))
            out = av.open(
                self._sink, "w", format=container, options={**options, "flush_packets": "1"}
            )
            stream = _audio_stream(out, codec, out_rate, layout)
            if output_format == "mp3":
                stream.bit_rate = MP3_BIT_RATE
            if output_format == "ogg":
                stream.codec_context.options = {"strict": "experimental"}
            self._out, self._stream = out, stream
            self._to_codec = av.AudioResampler(
                format=stream.codec_context.format.name, layout=layout, rate=out_rate
            )

    def feed(self, pcm: np.ndarray) -> bytes:
        """Encode int16 mono samples at the input rate; the bytes completed by them."""
        frames = [f for frame in _frames(pcm, self._rate) for f in self._to_rate.resample(frame)]
        return self._encode(frames, last=False)

    def close(self) -> bytes:
        """Flush every stage; the last bytes of the stream."""
        return self._encode(self._to_rate.resample(None), last=True)

    def _encode(self, frames: list[av.AudioFrame], *, last: bool) -> bytes:
        head = b""
        if not self._started:
            self._started = True
            if self._format == "wav":
                head = struct.pack(
                    "<4sI4s4sIHHIIHH4sI",
                    *(b"RIFF", STREAM_WAV_SIZE, b"WAVE", b"fmt ", 16, 1, 1),
                    *(self._to_rate.rate, self._to_rate.rate * 2, 2, 16),
                    *(b"data", STREAM_WAV_SIZE),
                )
        if self._out is None:  # raw and wav: the samples themselves
            return head + b"".join(f.to_ndarray()[0].astype("<i2").tobytes() for f in frames)
        for frame in [*frames, None] if last else frames:
            for converted in self._to_codec.resample(frame):
                self._out.mux(self._stream.encode(converted))
        if last:
            self._out.mux(self._stream.encode(None))
            self._out.close()
        return self._sink.take()


def _audio_stream(
    out: av.container.OutputContainer, codec: str, rate: int, layout: str
) -> AudioStream:
    """An audio stream added to ``out`` (PyAV types add_stream as any kind of stream)."""
    stream = out.add_stream(codec, rate=rate, layout=layout)
    assert isinstance(stream, AudioStream)
    return stream
