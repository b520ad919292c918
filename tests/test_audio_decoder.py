"""The decoder stage: incremental output equals a whole-file decode, whatever the chunking."""

from __future__ import annotations

import io
import itertools
import shutil
import struct
import subprocess

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playspeak.audio.decoder import make_decoder
from playspeak.audio.mp3 import DECODER_DELAY, Id3Stripper, parse_info_frame
from playspeak.errors import DecodeError

OUT_RATE = 48000
CHUNK_SIZES = [1, 7, 417, 4096, 65536]
NO_TAGS = {"id3v2_version": "0", "write_xing": "0"}


# --- material -----------------------------------------------------------------------------


def tone(rate: int, seconds: float, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """int16 samples shaped (channels, n): a tone with a short fade, like a chime."""
    t = np.arange(int(rate * seconds)) / rate
    signal = 0.5 * np.sin(2 * np.pi * freq * t) * np.minimum(1.0, t / 0.01)
    rows = [signal * (0.8 if c else 1.0) for c in range(channels)]
    return (np.array(rows) * 32767).astype(np.int16)


def espeak_wav(text: str) -> bytes | None:
    """espeak-ng speech as WAV bytes (s16le, 22050 Hz, 44-byte header), None if absent."""
    if shutil.which("espeak-ng") is None:
        return None
    return subprocess.run(
        ["espeak-ng", "--stdout", text], check=True, capture_output=True, timeout=30
    ).stdout


def encode(
    samples: np.ndarray,
    rate: int,
    container: str = "mp3",
    codec: str = "libmp3lame",
    options: dict[str, str] | None = None,
    sample_format: str = "s16",
    metadata: dict[str, str] | None = None,
) -> bytes:
    """Encode (channels, n) samples with PyAV into a complete stream."""
    buf = io.BytesIO()
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(buf, "w", format=container, options=options or {}) as out:
        out.metadata.update(metadata or {})
        stream = out.add_stream(codec, rate=rate, options={"strict": "experimental"})
        stream.layout = layout
        if codec == "libmp3lame":
            stream.bit_rate = 128000
        planar = sample_format.endswith("p")
        array = samples if planar else np.ascontiguousarray(samples.T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(array, format=sample_format, layout=layout)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def id3_tag(body_size: int, footer: bool = False) -> bytes:
    """A hand-made ID3v2.4 tag: one TXXX frame padded to `body_size` bytes, maybe a footer."""
    frame_data = b"\x03comment\x00" + b"x" * 50
    frame = b"TXXX" + _syncsafe(len(frame_data)) + b"\x00\x00" + frame_data
    body = frame + b"\x00" * (body_size - len(frame))
    flags = 0x10 if footer else 0
    tag = b"ID3\x04\x00" + bytes([flags]) + _syncsafe(len(body)) + body
    return tag + (b"3DI\x04\x00" + bytes([flags]) + _syncsafe(len(body)) if footer else b"")


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def reference(data: bytes, out_rate: int = OUT_RATE, channels: int = 1) -> np.ndarray:
    """Decode a whole file at once with av.open and one resampler: what incremental must match."""
    layout = "mono" if channels == 1 else "stereo"
    resampler = av.AudioResampler(format="flt", layout=layout, rate=out_rate)
    frames = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            frames += resampler.resample(frame)
    frames += resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1, channels) for f in frames])


def decode_in_chunks(
    data: bytes, fmt: str, cuts: list[int], out_rate: int = OUT_RATE, channels: int = 1, **kw
) -> tuple[np.ndarray, object]:
    """Feed `data` cut at the offsets `cuts` (or every cuts[0] bytes if one number), flush."""
    decoder = make_decoder(fmt, out_rate=out_rate, out_channels=channels, **kw)
    bounds = [0, *sorted(set(cuts)), len(data)]
    blocks = []
    for start, end in itertools.pairwise(bounds):
        blocks += decoder.feed(data[start:end])
    blocks += decoder.flush()
    for block in blocks:
        assert block.dtype == np.float32 and block.ndim == 2 and block.shape[1] == channels
        assert len(block) > 0
    pcm = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
    return pcm, decoder


def every(step: int, size: int) -> list[int]:
    return list(range(step, size, step))


def mp3_frame_size(header: bytes) -> int:
    """Size of the layer III frame with this 4-byte header, from the standard's tables."""
    version = (header[1] >> 3) & 3
    mpeg1 = version == 3
    rates = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
    kbps = (
        (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
        if mpeg1
        else (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
    )
    rate = rates[version][(header[2] >> 2) & 3]
    padding = (header[2] >> 1) & 1
    return (144 if mpeg1 else 72) * kbps[header[2] >> 4] * 1000 // rate + padding


# --- MP3 material, built once -------------------------------------------------------------


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    wav = espeak_wav("Incremental decoding starts speech early. Testing, one, two.")
    if wav is None:  # a voice-like stand-in: a tone with a vibrato-ish second tone
        return tone(22050, 1.5) // 2 + tone(22050, 1.5, freq=660.0) // 2, 22050
    return np.frombuffer(wav[44:], dtype="<i2").reshape(1, -1).copy(), 22050


MP3_CASES = {
    # name: (material, ID3 metadata, muxer options)
    "speech-id3-no-xing": ("speech", None, {"write_xing": "0"}),
    "tone24k-id3-no-xing": ("tone24k", None, {"write_xing": "0"}),
    "tone24k-bare": ("tone24k", None, NO_TAGS),
    "tone24k-xing-lame": ("tone24k", None, {"id3v2_version": "0"}),
    "speech-id3-xing-lame": ("speech", None, {}),
    "stereo44k-xing-lame": ("stereo44k", None, {}),
    "tone24k-large-id3": ("tone24k", {"comment": "c" * 20000}, {"write_xing": "0"}),
    "tone24k-large-id3-xing": ("tone24k", {"title": "t" * 3000}, {}),
}


@pytest.fixture(scope="module")
def mp3s(speech: tuple[np.ndarray, int]) -> dict[str, bytes]:
    material = {
        "speech": speech,
        "tone24k": (tone(24000, 1.0), 24000),
        "stereo44k": (tone(44100, 0.8, channels=2), 44100),
    }
    out = {}
    for name, (which, metadata, options) in MP3_CASES.items():
        samples, rate = material[which]
        out[name] = encode(samples, rate, options=options, metadata=metadata)
    return out


# --- MP3 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", MP3_CASES)
@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_mp3_incremental_equals_whole_file_decode(
    mp3s: dict[str, bytes], case: str, chunk: int
) -> None:
    data = mp3s[case]
    channels = 2 if case.startswith("stereo") else 1
    expected = reference(data, channels=channels)
    pcm, decoder = decode_in_chunks(data, "mp3", every(chunk, len(data)), channels=channels)
    assert decoder.errors == 0
    assert pcm.shape == expected.shape
    np.testing.assert_allclose(pcm, expected, atol=1e-6)


def test_mp3_material_has_what_the_cases_claim(mp3s: dict[str, bytes]) -> None:
    assert mp3s["tone24k-bare"][:2] == b"\xff\xf3"
    assert mp3s["tone24k-id3-no-xing"][:3] == b"ID3"
    assert len(mp3s["tone24k-id3-no-xing"]) - len(mp3s["tone24k-bare"]) < 100  # small tag
    assert len(mp3s["tone24k-large-id3"]) - len(mp3s["tone24k-bare"]) > 20000
    info = parse_info_frame(mp3s["tone24k-xing-lame"])
    assert info is not None and info.delay and info.padding and info.frames


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mp3_random_splits(mp3s: dict[str, bytes], data: st.DataObject) -> None:
    case = data.draw(st.sampled_from(sorted(MP3_CASES)))
    mp3 = mp3s[case]
    cuts = data.draw(st.lists(st.integers(1, len(mp3) - 1), max_size=60))
    channels = 2 if case.startswith("stereo") else 1
    pcm, _ = decode_in_chunks(mp3, "mp3", cuts, channels=channels)
    np.testing.assert_allclose(pcm, reference(mp3, channels=channels), atol=1e-6)


@pytest.mark.parametrize("tag_size", [20, 300, 70000])
@pytest.mark.parametrize("footer", [False, True])
def test_mp3_hand_made_id3_split_over_chunks(
    mp3s: dict[str, bytes], tag_size: int, footer: bool
) -> None:
    body = mp3s["tone24k-bare"]
    tag = id3_tag(tag_size, footer)
    expected = reference(body)
    # cut inside the 10-byte header, inside the tag, and right at its end
    for cuts in ([1, 2, 3, 5, 9, 11, len(tag) - 1, len(tag) + 1], [len(tag)], every(3, 40)):
        pcm, _ = decode_in_chunks(tag + body, "mp3", cuts)
        np.testing.assert_allclose(pcm, expected, atol=1e-6)


def test_id3_stripper_passes_non_tags_and_consecutive_tags() -> None:
    stripper = Id3Stripper()
    assert stripper.feed(b"I") == b""  # could be the start of a tag
    assert stripper.feed(b"D") == b""
    assert stripper.feed(b"X") == b"IDX"  # it was not
    stripper = Id3Stripper()
    two_tags = id3_tag(30) + id3_tag(40, footer=True) + b"\xff\xf3audio"
    assert b"".join(stripper.feed(bytes([b])) for b in two_tags) == b"\xff\xf3audio"
    assert stripper.tag_bytes == len(two_tags) - len(b"\xff\xf3audio")
    stripper = Id3Stripper()
    assert stripper.feed(b"ID") == b"" and stripper.flush() == b"ID"  # a 2-byte stream


@pytest.mark.parametrize("case", ["tone24k-bare", "tone24k-id3-no-xing", "speech-id3-no-xing"])
@pytest.mark.parametrize("out_rate", [48000, 24000, 44100])
def test_mp3_first_pcm_after_exactly_one_complete_frame(
    mp3s: dict[str, bytes], case: str, out_rate: int
) -> None:
    data = mp3s[case]
    tag = (_id3_total(data) or 0) if data[:3] == b"ID3" else 0
    first_frame_end = tag + mp3_frame_size(data[tag : tag + 4])
    decoder = make_decoder("mp3", out_rate=out_rate, out_channels=1)
    first = next(i for i in range(len(data)) if decoder.feed(data[i : i + 1]))
    assert first + 1 == first_frame_end


def test_mp3_with_lame_tag_starts_at_the_first_real_sample(mp3s: dict[str, bytes]) -> None:
    """The Info frame and the encoder + decoder delay are gone: output begins with the tone."""
    data = mp3s["tone24k-xing-lame"]
    info = parse_info_frame(data)
    assert info is not None and info.delay is not None
    decoder = make_decoder("mp3", out_rate=24000, out_channels=1)
    fed = next(i for i in range(len(data)) if decoder.feed(data[i : i + 1])) + 1
    # output begins with the audio frame holding sample delay + 529 (none before it)
    info_size = mp3_frame_size(data[:4])
    frames_needed = (info.delay + DECODER_DELAY) // info.samples_per_frame + 1
    assert fed == info_size + frames_needed * mp3_frame_size(data[info_size : info_size + 4])
    pcm, _ = decode_in_chunks(data, "mp3", [], out_rate=24000)
    assert len(pcm) == 24000  # exactly the encoded second: delay and padding trimmed
    assert abs(pcm[:24, 0]).max() < 0.05  # the fade-in, not an encoder's pre-echo burst
    assert abs(pcm[240:480, 0]).max() > 0.3  # the tone is there from 10 ms on


def _id3_total(data: bytes) -> int | None:
    size = data[6:10]
    return 10 + ((size[0] << 21) | (size[1] << 14) | (size[2] << 7) | size[3])


def test_mp3_corrupt_middle_resyncs(mp3s: dict[str, bytes]) -> None:
    data = bytearray(mp3s["speech-id3-no-xing"])
    expected = reference(bytes(data))
    middle = len(data) // 2
    rng = np.random.default_rng(7)
    data[middle : middle + 700] = rng.integers(0, 256, 700, dtype=np.uint8).tobytes()
    outputs = []
    for chunk in (1, 417, 65536):
        pcm, decoder = decode_in_chunks(bytes(data), "mp3", every(chunk, len(data)))
        outputs.append(pcm)
        # audio before the damage is untouched, and most of the stream survives
        lead = int(OUT_RATE * 0.2)
        np.testing.assert_allclose(pcm[:lead], expected[:lead], atol=1e-6)
        assert decoder.errors >= 1
        assert abs(len(pcm) - len(expected)) <= 6 * 576 * 48000 // 22050
    for pcm in outputs[1:]:
        np.testing.assert_array_equal(pcm, outputs[0])
    # the tail after the damage matches the reference again once the decoder resynced
    tail = int(OUT_RATE * 0.3)
    np.testing.assert_allclose(outputs[0][-tail:], expected[-tail:], atol=1e-4)


def test_mp3_bad_packets_are_counted_not_raised(mp3s: dict[str, bytes]) -> None:
    data = mp3s["tone24k-bare"]
    size = mp3_frame_size(data[:4])
    # a valid header with garbage in place of the main data of frames 10 and 11
    broken = bytearray(data)
    broken[10 * size + 4 : 12 * size] = b"\xff" * (2 * size - 4)
    pcm, decoder = decode_in_chunks(bytes(broken), "mp3", every(100, len(broken)))
    assert len(pcm) > 0.9 * len(reference(data))
    assert decoder.errors >= 1


@pytest.mark.parametrize("chunk", [1, 4096])
def test_mp3_garbage_raises_decode_error(chunk: int) -> None:
    garbage = b'{"error": "quota exceeded", "status": 429}\n' * 600
    decoder = make_decoder("mp3", out_rate=OUT_RATE, out_channels=1)
    with pytest.raises(DecodeError, match="no MP3 audio"):
        for start in range(0, len(garbage), chunk):
            decoder.feed(garbage[start : start + chunk])
        decoder.flush()


def test_mp3_short_garbage_raises_at_flush() -> None:
    decoder = make_decoder("mp3", out_rate=OUT_RATE, out_channels=1)
    assert decoder.feed(b"<html>" * 300) == []
    with pytest.raises(DecodeError):
        decoder.flush()


def test_empty_streams_decode_to_nothing() -> None:
    for fmt in ("mp3", "wav", "raw", "mulaw", "flac", "ogg"):
        assert make_decoder(fmt, out_rate=OUT_RATE, out_channels=1).flush() == []


def test_unknown_format_is_named() -> None:
    with pytest.raises(DecodeError, match=r"'aac'.*mp3"):
        make_decoder("aac", out_rate=OUT_RATE, out_channels=1)


# --- WAV, raw, mu-law ---------------------------------------------------------------------


def wav_bytes(
    samples: np.ndarray, rate: int, *, data_size: int | None = None, extra: bytes = b""
) -> bytes:
    """RIFF/WAVE s16le with (channels, n) samples; `extra` chunks go between fmt and data."""
    channels = samples.shape[0]
    pcm = samples.T.astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    size = len(pcm) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + extra + b"data"
    body += struct.pack("<I", size) + pcm
    riff_size = 0xFFFFFFFF if data_size is not None else len(body)
    return b"RIFF" + struct.pack("<I", riff_size) + body


def resampled(samples: np.ndarray, rate: int, out_rate: int = OUT_RATE) -> np.ndarray:
    """float32 (n, channels) reference: the whole signal through one resampler."""
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(
        samples.T.reshape(1, -1).astype(np.float32) / 32768, format="flt", layout=layout
    )
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout=layout, rate=out_rate)
    frames = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1, samples.shape[0]) for f in frames])


def test_wav_from_espeak_streams_with_open_ended_sizes() -> None:
    wav = espeak_wav("From espeak.")  # 41 kB: fed a byte at a time too
    if wav is None:
        pytest.skip("espeak-ng is not installed")  # the generated-WAV tests below still run
    assert wav[:4] == b"RIFF" and struct.unpack_from("<I", wav, 40)[0] >= 0x7FFF0000
    samples = np.frombuffer(wav[44:], dtype="<i2").reshape(1, -1)
    expected = resampled(samples, 22050)
    for chunk in (1, 7, 4096):
        pcm, _ = decode_in_chunks(wav, "wav", every(chunk, len(wav)))
        np.testing.assert_allclose(pcm, expected, atol=1e-6)


@pytest.mark.parametrize("data_size", [None, 0xFFFFFFFF, 0x7FFFFFFF, 0])
@pytest.mark.parametrize("chunk", [1, 3, 37, 65536])
def test_wav_header_split_with_list_chunk(data_size: int | None, chunk: int) -> None:
    samples = tone(16000, 0.3, channels=2)
    listing = b"LIST" + struct.pack("<I", 11) + b"INFOISFTxyz" + b"\x00"  # odd size, padded
    wav = wav_bytes(samples, 16000, data_size=data_size, extra=listing)
    pcm, decoder = decode_in_chunks(wav, "wav", every(chunk, len(wav)), channels=2)
    np.testing.assert_allclose(pcm, resampled(samples, 16000), atol=1e-6)
    assert decoder.errors == 0


def test_wav_stops_at_a_real_data_size_and_downmixes() -> None:
    samples = tone(24000, 0.2, channels=2)
    wav = wav_bytes(samples, 24000) + b"LIST" + struct.pack("<I", 4) + b"junk"
    pcm, _ = decode_in_chunks(wav, "wav", every(5, len(wav)), out_rate=24000)
    assert pcm.shape == (4800, 1)
    # FFmpeg's downmix: (left + right) at -3 dB each
    downmix = samples[:, 1000:1010].sum(axis=0) / 32768 / np.sqrt(2)
    np.testing.assert_allclose(pcm[1000:1010, 0], downmix, rtol=1e-3)


def test_wav_errors_name_the_problem() -> None:
    with pytest.raises(DecodeError, match="not a WAV"):
        make_decoder("wav", out_rate=OUT_RATE, out_channels=1).feed(b"ID3\x04" + b"\x00" * 20)
    decoder = make_decoder("wav", out_rate=OUT_RATE, out_channels=1)
    decoder.feed(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(DecodeError, match="header"):
        decoder.flush()


@pytest.mark.parametrize("chunk", [1, 333, 65536])
def test_raw_s16le_at_in_rate(chunk: int) -> None:
    samples = tone(24000, 0.5)
    raw = samples.astype("<i2").tobytes()
    pcm, _ = decode_in_chunks(raw, "raw", every(chunk, len(raw)), in_rate=24000)
    np.testing.assert_allclose(pcm, resampled(samples, 24000), atol=1e-6)
    assert len(pcm) == 24000  # 0.5 s at 48 kHz
    pcm, _ = decode_in_chunks(raw, "pcm", [], in_rate=16000)
    assert len(pcm) == 36000  # the same bytes read as 16 kHz last 0.75 s


def test_mulaw_matches_ffmpegs_table() -> None:
    every_code = bytes(range(256)) * 10
    codec = av.CodecContext.create("pcm_mulaw", "r")
    codec.sample_rate, codec.layout = 8000, "mono"
    expected = np.concatenate(
        [f.to_ndarray().reshape(-1) for f in codec.decode(av.Packet(every_code))]
    )
    pcm, _ = decode_in_chunks(every_code, "mulaw", every(7, 2560), out_rate=8000, in_rate=8000)
    np.testing.assert_array_equal(pcm[:, 0], expected.astype(np.float32) / 32768)


def test_mulaw_duration() -> None:
    pcm, _ = decode_in_chunks(b"\xff" * 8000, "mulaw", every(100, 8000), in_rate=8000)
    assert len(pcm) == OUT_RATE  # one second; 0xff is mu-law silence
    assert abs(pcm).max() == 0


# --- FLAC, Ogg ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 100, 4096, 65536])
def test_flac_incremental_equals_whole_file_decode(chunk: int) -> None:
    flac = encode(tone(24000, 1.0), 24000, container="flac", codec="flac")
    pcm, decoder = decode_in_chunks(flac, "flac", every(chunk, len(flac)))
    np.testing.assert_allclose(pcm, reference(flac), atol=1e-6)
    assert decoder.errors == 0 and len(pcm) == OUT_RATE


def test_flac_is_incremental() -> None:
    flac = encode(tone(24000, 3.0), 24000, container="flac", codec="flac")
    decoder = make_decoder("flac", out_rate=OUT_RATE, out_channels=1)
    first = next(i for i in range(0, len(flac), 64) if decoder.feed(flac[i : i + 64]))
    assert first < len(flac) / 2  # after the 8 KiB seek table and one frame, not at the end


@pytest.mark.parametrize("chunk", [1, 500, 65536])
def test_ogg_vorbis_incremental_equals_whole_file_decode(chunk: int) -> None:
    samples = tone(24000, 1.0, channels=2).astype(np.float32) / 32768
    ogg = encode(
        samples,
        24000,
        container="ogg",
        codec="vorbis",
        sample_format="fltp",
        options={"page_duration": "100000"},  # short pages, as a live stream would send
    )
    pcm, decoder = decode_in_chunks(ogg, "ogg", every(chunk, len(ogg)), channels=2)
    np.testing.assert_allclose(pcm, reference(ogg, channels=2), atol=1e-6)
    assert decoder.errors == 0
    decoder = make_decoder("ogg", out_rate=OUT_RATE, out_channels=2)
    first = next(i for i in range(0, len(ogg), 64) if decoder.feed(ogg[i : i + 64]))
    assert first < ogg.rfind(b"OggS")  # output as soon as an audio page is complete


def test_ogg_opus_duration() -> None:
    ogg = encode(tone(24000, 1.0), 24000, container="ogg", codec="libopus")
    pcm, decoder = decode_in_chunks(ogg, "ogg", every(300, len(ogg)))
    assert decoder.errors == 0
    assert abs(len(pcm) - OUT_RATE) <= OUT_RATE * 0.02  # the end is not trimmed: ≤ 1 packet
