"""Incremental FLAC and Ogg (Vorbis, Opus) decoding: our own framing, FFmpeg's codecs.

Both are decoded as they arrive, packet by packet; neither waits for the end of the stream.

- FLAC: PyAV's ``CodecContext("flac").parse`` loses frames (av 18: a 1 s stream gave
  2304-6912 of 24000 samples). FFmpeg's FLAC parser swallows all input and returns one
  frame per call, but PyAV stops calling it once the input is consumed and flushes only
  once, so frames pile up and are lost. We split frames ourselves instead: a frame ends
  where the next frame header starts whose CRC-8 checks and before which the frame's
  CRC-16 checks. The STREAMINFO block becomes the decoder's extradata. A frame is decoded
  when the next header has arrived (one frame of latency, as in any FLAC stream decoder).
- Ogg: pages are split into packets by their lacing values; the three Vorbis headers (or
  OpusHead; OpusTags is skipped) become the decoder's extradata, later packets are
  decoded one by one as their page completes. Granule positions are not used for
  trimming: FFmpeg's Opus decoder drops the pre-skip itself, and the end of the stream is
  played as decoded (Vorbis then matches ``av.open`` exactly; Opus ends at most one
  packet later). Page CRCs are not checked; a packet the decoder rejects is dropped and
  counted.
"""

from __future__ import annotations

import struct

import av
import numpy as np

from playspeak.errors import DecodeError

from .resample import PcmResampler, audio_decoder

_MAX_FLAC_FRAME = 1 << 20  # beyond this, give up on a frame whose CRC never checks


def _crc_table(poly: int, width: int) -> list[int]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & top else (crc << 1)
        table.append(crc & mask)
    return table


_CRC8 = _crc_table(0x07, 8)
_CRC16 = _crc_table(0x8005, 16)


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ byte]
    return crc


def flac_header_length(buf: bytes, pos: int) -> int | None:
    """Length of a valid FLAC frame header at `pos`; 0 if more bytes are needed; else None."""
    if len(buf) < pos + 6:
        return 0
    b2, b3 = buf[pos + 2], buf[pos + 3]
    if buf[pos] != 0xFF or buf[pos + 1] & 0xFE != 0xF8 or b2 >> 4 == 0 or b2 & 15 == 15:
        return None
    if b3 >> 4 > 10 or (b3 >> 1) & 7 == 3 or b3 & 1:
        return None
    first = buf[pos + 4]
    number_len = next((n for n in range(8) if not (first << n) & 0x80), 8)
    if number_len == 1 or number_len > 7:
        return None
    end = pos + 4 + max(number_len, 1)
    end += {6: 1, 7: 2}.get(b2 >> 4, 0) + {12: 1, 13: 2, 14: 2}.get(b2 & 15, 0)
    if len(buf) < end + 1:
        return 0
    return end + 1 - pos if _crc8(buf[pos:end]) == buf[end] else None


class _PacketDecoder:
    """Decode whole codec packets to float32 blocks, counting the ones the codec rejects."""

    def __init__(self, codec: str, extradata: bytes, out_rate: int, out_channels: int) -> None:
        self._codec = audio_decoder(codec)
        self._codec.extradata = extradata
        self._pcm = PcmResampler(out_rate, out_channels)
        self.errors = 0
        self.decoded = 0

    def decode(self, packet: bytes | None) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        try:
            frames = self._codec.decode(av.Packet(packet) if packet is not None else None)
        except av.error.FFmpegError:
            self.errors += 1
            return out
        for frame in frames:
            self.decoded += frame.samples
            out.extend(self._pcm.push(frame))
        return out

    def flush(self) -> list[np.ndarray]:
        return self.decode(None) + self._pcm.flush()


class _Container:
    """What both containers keep: the bytes not yet framed, the codec once its headers came,
    and the framing errors, counted with the codec's as `errors`."""

    def __init__(self, *, out_rate: int, out_channels: int) -> None:
        self._out = (out_rate, out_channels)
        self._buf = b""
        self._codec: _PacketDecoder | None = None
        self._bad = 0

    @property
    def errors(self) -> int:
        return self._bad + (self._codec.errors if self._codec else 0)


class FlacDecoder(_Container):
    """Native FLAC stream ("fLaC", metadata blocks, frames) in chunks of any size."""

    def __init__(self, *, out_rate: int, out_channels: int) -> None:
        super().__init__(out_rate=out_rate, out_channels=out_channels)
        self._scan = 0  # where to look for the next frame header in _buf

    def feed(self, chunk: bytes) -> list[np.ndarray]:
        """Decode the frames that `chunk` completes."""
        self._buf += chunk
        if self._codec is None and not self._read_metadata():
            return []
        return self._split_frames()

    def flush(self) -> list[np.ndarray]:
        """End of stream: the last frame has no following header, decode what is left."""
        if self._codec is None:
            if self._buf:
                raise DecodeError(f"FLAC stream ended in its header ({len(self._buf)} bytes)")
            return []
        out = self._codec.decode(self._buf) if self._buf else []
        self._buf = b""
        out += self._codec.flush()
        return out

    def _read_metadata(self) -> bool:
        """Consume "fLaC" and the metadata blocks once all have arrived; True when done."""
        if len(self._buf) >= 4 and self._buf[:4] != b"fLaC":
            raise DecodeError(f"not a FLAC stream: starts with {self._buf[:4]!r}")
        pos, streaminfo = 4, None
        while len(self._buf) >= pos + 4:
            header = self._buf[pos]
            length = int.from_bytes(self._buf[pos + 1 : pos + 4], "big")
            if len(self._buf) < pos + 4 + length:
                return False
            if header & 0x7F == 0:
                streaminfo = self._buf[pos + 4 : pos + 4 + length]
            pos += 4 + length
            if header & 0x80:  # the last metadata block
                if streaminfo is None:
                    raise DecodeError("FLAC stream without a STREAMINFO block")
                self._codec = _PacketDecoder("flac", streaminfo, *self._out)
                self._buf = self._buf[pos:]
                self._scan = 0
                return True
        return False

    def _split_frames(self) -> list[np.ndarray]:
        assert self._codec is not None
        out: list[np.ndarray] = []
        first_candidate = None
        while True:
            pos = self._buf.find(b"\xff", max(self._scan, 2))
            if pos < 0:
                self._scan = len(self._buf)
                return out
            length = flac_header_length(self._buf, pos)
            if length == 0:
                self._scan = pos  # wait for the rest of this possible header
                return out
            if length is not None:
                if _crc16(self._buf[:pos]) == 0:
                    out += self._codec.decode(self._buf[:pos])
                    self._buf, self._scan = self._buf[pos:], 0
                    continue
                first_candidate = first_candidate or pos
                if pos > _MAX_FLAC_FRAME:  # corrupt frame: drop it, resync on a header
                    self._bad += 1
                    self._buf, self._scan = self._buf[first_candidate:], 0
                    first_candidate = None
                    continue
            self._scan = pos + 1


def _xiph_lacing(packets: list[bytes]) -> bytes:
    """Vorbis headers as FFmpeg's extradata: count-1, laced sizes, then the packets."""
    out = bytearray([len(packets) - 1])
    for packet in packets[:-1]:
        out += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
    return bytes(out) + b"".join(packets)


# first header bytes → (FFmpeg codec, header packets); Opus's second header is OpusTags
_OGG_CODECS = {b"\x01vorbis": ("vorbis", 3), b"OpusHead": ("opus", 2)}


class OggDecoder(_Container):
    """Ogg Vorbis or Ogg Opus in chunks of any size (first logical stream; chains restart)."""

    def __init__(self, *, out_rate: int, out_channels: int) -> None:
        super().__init__(out_rate=out_rate, out_channels=out_channels)
        self._packet = b""  # a packet continued on the next page
        self._serial: int | None = None
        self._headers: list[bytes] = []
        self._needed = 0
        self._codec_name = ""

    def feed(self, chunk: bytes) -> list[np.ndarray]:
        """Decode the packets of every page that `chunk` completes."""
        self._buf += chunk
        out: list[np.ndarray] = []
        while (page := self._next_page()) is not None:
            out += page
        return out

    def flush(self) -> list[np.ndarray]:
        """End of stream: empty the decoder; DecodeError if no codec header ever came."""
        if self._codec is None:
            if self._buf or self._headers:
                raise DecodeError("Ogg stream ended before its codec headers were complete")
            return []
        return self._codec.flush()

    def _next_page(self) -> list[np.ndarray] | None:
        start = self._buf.find(b"OggS")
        if start < 0:
            self._buf = self._buf[-3:]  # keep a possibly split capture pattern
            return None
        if start:
            self._bad += 1  # junk between pages: resync on the capture pattern
            self._buf = self._buf[start:]
        if len(self._buf) < 27:
            return None
        header_type, segments = self._buf[5], self._buf[26]
        (serial,) = struct.unpack_from("<I", self._buf, 14)
        lacing = self._buf[27 : 27 + segments]
        end = 27 + segments + sum(lacing)
        if len(lacing) < segments or len(self._buf) < end:
            return None
        body, self._buf = self._buf[27 + segments : end], self._buf[end:]
        return self._take_page(header_type, serial, lacing, body)

    def _take_page(
        self, header_type: int, serial: int, lacing: bytes, body: bytes
    ) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        if header_type & 0x02:  # beginning of a logical stream
            if self._serial is not None and self._codec is not None:
                out += self._codec.flush()  # a chained stream: start again
            self._serial, self._codec, self._headers, self._packet = serial, None, [], b""
        if serial != self._serial:
            return out  # another multiplexed logical stream
        if not header_type & 0x01:
            self._packet = b""  # not a continuation: drop any half packet
        pos = 0
        for size in lacing:
            self._packet += body[pos : pos + size]
            pos += size
            if size < 255:
                out += self._take_packet(self._packet)
                self._packet = b""
        return out

    def _take_packet(self, packet: bytes) -> list[np.ndarray]:
        if self._codec is not None:
            return self._codec.decode(packet)
        if not self._headers:
            name = next((v for k, v in _OGG_CODECS.items() if packet.startswith(k)), None)
            if name is None:
                raise DecodeError(f"unsupported Ogg codec: first packet {packet[:8]!r}")
            self._codec_name, self._needed = name
        self._headers.append(packet)
        if len(self._headers) == self._needed:
            extradata = (
                _xiph_lacing(self._headers) if self._codec_name == "vorbis" else self._headers[0]
            )
            self._codec = _PacketDecoder(self._codec_name, extradata, *self._out)
        return []
