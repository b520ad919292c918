"""Incremental MP3 decoding: ID3v2 stripping, LAME/Xing gapless trimming, resync on bad bytes.

What this decoder does, and why:

- A leading ID3v2 tag (or several) is cut off here before the bytes reach FFmpeg's parser,
  because the parser hands a tag on as a packet and, when the tag is small, glues it to the
  first MP3 frame so that frame is lost with the decode error. The tag's size comes from its
  10-byte header (syncsafe, plus 10 when the footer flag is set); it may arrive split over
  any number of chunks.
- Packets come from ``CodecContext.parse``, which returns a frame the moment its last byte
  arrives, so the first PCM comes out after exactly one complete MP3 frame of input.
  We decode with ``mp3float`` (the decoder ``av.open`` picks) so samples match a file decode.
- If the first frame is a Xing/Info (or VBRI) frame it is metadata, not audio, and is
  dropped. When it carries a LAME tag (encoder "LAME", "Lavf" or "Lavc", as FFmpeg checks),
  the encoder delay it states plus the decoder's own 529-sample delay is trimmed from the
  start, exactly as FFmpeg's mp3 demuxer does (PyAV's bare codec trims nothing), so the first
  samples we emit are the first real audio. The first non-empty output then comes with the
  frame that holds the first real sample (usually the second or third audio frame); what
  lies before it is encoder silence, so no sound is delayed.
- The end padding is trimmed only when the Xing frame states the frame count: the length is
  then known up front and output can simply stop there, at no cost in latency. Without a
  count (live streams never have one) nothing is held back and the padding (< 1 frame of
  near silence) is played.
- Bytes that do not decode are skipped: the parser resyncs on the next frame header, a packet
  the decoder rejects is dropped and counted in ``errors``. Only when a substantial input
  (``GIVE_UP_BYTES``) produced no audio at all does ``feed`` raise ``DecodeError``; ``flush``
  raises it for any input of at least ``MIN_FLUSH_BYTES`` that produced nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from playspeak.errors import DecodeError

from .resample import PcmResampler, audio_decoder

GIVE_UP_BYTES = 16 * 1024  # about one second of 128 kbps MP3
MIN_FLUSH_BYTES = 1024  # more than any single MP3 frame at the rates PlayAI uses
DECODER_DELAY = 529  # MP3 decoder delay in samples, as LAME and FFmpeg count it (528 + 1)
_LAME_ENCODERS = (b"LAME", b"Lavf", b"Lavc")


class Id3Stripper:
    """Removes ID3v2 tags from the start of a byte stream fed in arbitrary chunks."""

    def __init__(self) -> None:
        self._head = b""  # bytes held while deciding whether a tag starts here
        self._skip = 0  # tag bytes still to drop
        self._done = False  # past the tags: everything passes through
        self.tag_bytes = 0

    def feed(self, chunk: bytes) -> bytes:
        """Return the bytes of `chunk` that follow the leading tags (maybe held for later)."""
        if self._done:
            return chunk
        data = self._head + chunk
        self._head = b""
        while not self._done:
            if self._skip:
                dropped = min(self._skip, len(data))
                self._skip -= dropped
                data = data[dropped:]
                if self._skip:
                    return b""
            if len(data) < 10 and b"ID3"[: len(data)] == data[:3]:
                self._head = data  # could still be a tag header: wait for all 10 bytes
                return b""
            size = _id3_size(data[:10])
            if size is None:
                self._done = True
            else:
                self._skip = size
                self.tag_bytes += size
        return data

    def flush(self) -> bytes:
        """End of stream: give back a held partial header (it was not a tag after all)."""
        data, self._head = self._head, b""
        self._done = True
        return data


def _id3_size(header: bytes) -> int | None:
    """Total size of the ID3v2 tag whose 10-byte header this is, or None if it is not one."""
    if len(header) < 10 or header[:3] != b"ID3" or header[3] == 0xFF or header[4] == 0xFF:
        return None
    syncsafe = header[6:10]
    if any(b & 0x80 for b in syncsafe):
        return None
    size = (syncsafe[0] << 21) | (syncsafe[1] << 14) | (syncsafe[2] << 7) | syncsafe[3]
    footer = 10 if header[5] & 0x10 else 0
    return 10 + size + footer


@dataclass(frozen=True)
class XingInfo:
    """What a Xing/Info/VBRI first frame tells us."""

    frames: int | None  # audio frames in the stream, when stated
    delay: int | None  # encoder delay in samples (LAME tag), when stated
    padding: int | None  # encoder padding in samples (LAME tag), when stated
    samples_per_frame: int


def parse_info_frame(frame: bytes) -> XingInfo | None:
    """Read a Xing/Info/VBRI header from one complete MP3 frame; None for an audio frame."""
    if len(frame) < 4 or frame[0] != 0xFF or frame[1] & 0xE0 != 0xE0:
        return None
    version = (frame[1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    layer = (frame[1] >> 1) & 3  # 1: layer III
    if layer != 1 or version == 1:
        return None
    mono = (frame[3] >> 6) == 3
    mpeg1 = version == 3
    spf = 1152 if mpeg1 else 576
    side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    offset = 4 + side_info
    tag = frame[offset : offset + 4]
    if tag in (b"Xing", b"Info"):
        return _parse_xing(frame, offset + 4, spf)
    if frame[36:40] == b"VBRI" and len(frame) >= 36 + 18:
        # Fraunhofer's header: FFmpeg takes only the frame count from it.
        return XingInfo(int.from_bytes(frame[50:54], "big"), None, None, spf)
    return None


def _parse_xing(frame: bytes, pos: int, spf: int) -> XingInfo:
    flags = int.from_bytes(frame[pos : pos + 4], "big")
    pos += 4
    frames = None
    if flags & 1:
        frames = int.from_bytes(frame[pos : pos + 4], "big") or None
        pos += 4
    pos += (4 if flags & 2 else 0) + (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
    delay = padding = None
    lame = frame[pos : pos + 24]
    if len(lame) == 24 and lame[:4] in _LAME_ENCODERS:
        delay = (lame[21] << 4) | (lame[22] >> 4)
        padding = ((lame[22] & 0x0F) << 8) | lame[23]
    return XingInfo(frames, delay, padding, spf)


class Mp3Decoder:
    """MP3 bytes in, float32 PCM out; feed chunks of any size, then flush once."""

    def __init__(self, *, out_rate: int, out_channels: int) -> None:
        self._codec = audio_decoder("mp3float")
        self._id3 = Id3Stripper()
        self._pcm = PcmResampler(out_rate, out_channels)
        self._first_packet = True
        self._skip = 0  # samples (input rate) still to trim from the start
        self._remaining: int | None = None  # samples (input rate) still to emit, when known
        self._bytes = 0  # audio bytes fed (after the tags)
        self._decoded = False  # any audio (or a valid Info frame) seen
        self.errors = 0
        self.info: XingInfo | None = None

    def feed(self, chunk: bytes) -> list[np.ndarray]:
        """Decode what `chunk` completes; returns float32 blocks shaped (frames, channels)."""
        data = self._id3.feed(chunk)
        self._bytes += len(data)
        out = self._decode(self._codec.parse(data)) if data else []
        if not self._decoded and self._bytes >= GIVE_UP_BYTES:
            raise DecodeError(
                f"no MP3 audio in the first {self._bytes} bytes ({self.errors} bad packets)"
            )
        return out

    def flush(self) -> list[np.ndarray]:
        """End of stream: decode the rest and empty the resampler."""
        data = self._id3.flush()
        self._bytes += len(data)
        out = self._decode(self._codec.parse(data)) if data else []
        out += self._decode(self._codec.parse(None))
        out += self._decode([None])
        out += self._pcm.flush()
        if not self._decoded and self._bytes >= MIN_FLUSH_BYTES:
            raise DecodeError(f"no MP3 audio in {self._bytes} bytes ({self.errors} bad packets)")
        return out

    def _decode(self, packets: list[av.Packet] | list[None]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for packet in packets:
            if packet is not None and self._first_packet:
                self._first_packet = False
                if self._take_info_frame(bytes(packet)):
                    continue
            try:
                frames = self._codec.decode(packet)
            except av.error.FFmpegError:
                self.errors += 1  # the parser resyncs on the next header by itself
                continue
            for frame in frames:
                self._decoded = True
                trimmed = self._trim(frame)
                if trimmed is not None:
                    out.extend(self._pcm.push(trimmed))
        return out

    def _take_info_frame(self, frame: bytes) -> bool:
        """Note the gapless figures of a Xing/Info first frame; True if it was one."""
        info = parse_info_frame(frame)
        if info is None:
            return False
        self.info = info
        self._decoded = True  # a valid MP3 stream, even if it holds no audio
        if info.delay is not None:
            self._skip = info.delay + DECODER_DELAY
            if info.frames is not None and info.padding is not None:
                self._remaining = max(
                    0, info.frames * info.samples_per_frame - info.delay - info.padding
                )
        return True

    def _trim(self, frame: av.AudioFrame) -> av.AudioFrame | None:
        """Cut the encoder delay from the start and the padding from the end."""
        start = min(self._skip, frame.samples)
        self._skip -= start
        stop = frame.samples
        if self._remaining is not None:
            stop = min(stop, start + self._remaining)
            self._remaining -= max(0, stop - start)
        if start == 0 and stop == frame.samples:
            return frame
        if stop <= start:
            return None
        planes = frame.to_ndarray()[:, start:stop]
        samples: Any = np.ascontiguousarray(planes)  # PyAV's stubs list the dtypes one by one
        trimmed = av.AudioFrame.from_ndarray(
            samples, format=frame.format.name, layout=frame.layout.name
        )
        trimmed.sample_rate = frame.sample_rate
        return trimmed
