"""Audio from the local server: every format decodes to the right length; both synthesizers."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import numpy as np
import pytest
import trio
import trio.testing
import trio_websocket

from playspeak.engines.espeak import (
    WAV_HEADER,
    EspeakSpares,
    WavStream,
    espeak_pcm,
    espeak_voice,
)
from playspeak.engines.generated import CHAR_SECONDS, RATE, generate
from playspeak.localserver import LocalServer, open_local_server
from playspeak.localserver.encode import wav_header

from localserver_helpers import LAME_DELAY, decode, id3_size, mp3_frame_offsets, speak, ws_url

TEXT = "Testing, one two."
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng")


@pytest.fixture(params=["generated", pytest.param("espeak", marks=needs_espeak)])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[LocalServer]:
    async with open_local_server(first_byte_delay=0, realtime_factor=0, synth=request.param) as s:
        yield s


async def pcm_seconds(server: LocalServer, sample_rate: int, text: str = TEXT) -> float:
    raw = await server.render(
        text=text, voice="Angelo", sample_rate=sample_rate, output_format="raw"
    )
    return len(raw) / 2 / sample_rate


@pytest.mark.parametrize("output_format", ["mp3", "wav", "raw", "mulaw", "ogg", "flac"])
@pytest.mark.parametrize("sample_rate", [24000, 16000, 44100])
async def test_every_format_decodes_to_the_synthesized_length(
    server: LocalServer, output_format: str, sample_rate: int
) -> None:
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        reply = await speak(ws, text=TEXT, output_format=output_format, sample_rate=sample_rate)
    expected = await pcm_seconds(server, sample_rate)
    assert reply.audio == await server.render(
        text=TEXT, voice="Angelo", sample_rate=sample_rate, output_format=output_format
    )
    samples, rate = decode(reply.audio, output_format, sample_rate)
    assert rate == sample_rate
    if output_format == "mp3":
        samples -= LAME_DELAY  # no Xing/LAME tag, so the decoder cannot trim the encoder delay
    assert abs(samples / rate - expected) < 0.06
    assert expected > 0.5


async def test_mp3_starts_with_an_id3_tag_and_has_no_xing_frame(server: LocalServer) -> None:
    data = await server.render(text=TEXT, voice="Angelo")
    assert data[:3] == b"ID3"
    frames = mp3_frame_offsets(data)
    first_frame = data[frames[0] : frames[1]]
    assert b"Xing" not in first_frame and b"Info" not in first_frame
    header = int.from_bytes(data[frames[0] : frames[0] + 4], "big")
    assert header >> 12 & 0xF == 12  # 128 kbps in MPEG-2 layer III's table
    assert header >> 6 & 3 == 3  # mono
    assert {data[o + 2] >> 4 for o in frames} == {12}  # constant bit rate
    assert frames[0] == id3_size(data)


async def test_mp3_at_an_odd_rate_uses_the_nearest_mp3_rate(server: LocalServer) -> None:
    data = await server.render(text=TEXT, voice="Angelo", sample_rate=23500)
    assert decode(data, "mp3", 23500)[1] == 24000


async def test_wav_header_is_its_own_first_frame(server: LocalServer) -> None:
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        reply = await speak(ws, text=TEXT, output_format="wav", sample_rate=22050)
    header, *rest = reply.chunks
    assert len(header) == 44 and header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    assert header == wav_header(22050, sum(map(len, rest)))


async def test_raw_is_headerless_pcm_and_mulaw_is_one_byte_per_sample(server: LocalServer) -> None:
    raw = await server.render(text=TEXT, voice="Angelo", output_format="raw")
    mulaw = await server.render(text=TEXT, voice="Angelo", output_format="mulaw")
    assert len(mulaw) * 2 == len(raw)
    assert raw[:4] != b"RIFF"


async def test_speed_changes_the_length(server: LocalServer) -> None:
    slow = await server.render(text=TEXT, voice="Angelo", speed=0.5, output_format="raw")
    fast = await server.render(text=TEXT, voice="Angelo", speed=2.0, output_format="raw")
    assert len(slow) > 2.5 * len(fast)


def test_generated_speech_is_deterministic_and_grows_with_the_text() -> None:
    one = generate("Hello there.", "Angelo")
    assert np.array_equal(one, generate("Hello there.", "Angelo"))
    assert not np.array_equal(one, generate("Hello there.", "Deedee"))
    longer = generate("Hello there, how are you today?", "Angelo")
    assert len(longer) > len(one)
    per_char = len(generate("a" * 40, "v")) / 40 / RATE
    assert per_char == pytest.approx(CHAR_SECONDS, rel=0.01)
    assert len(generate("a" * 40, "v", speed=2.0)) == pytest.approx(
        len(generate("a" * 40, "v")) / 2, rel=0.01
    )
    assert one.dtype == np.int16 and 0 < np.abs(one).max() < 32767


def test_generated_speech_has_voiced_sounds_and_pauses() -> None:
    signal = generate("Ah, oh.", "Angelo").astype(float)
    window = int(0.02 * RATE)
    levels = [np.sqrt(np.mean(signal[i : i + window] ** 2)) for i in range(0, len(signal), window)]
    assert max(levels) > 3000 and min(levels) < 1  # sound and silence both present


async def test_generated_audio_is_the_same_from_two_servers() -> None:
    renders = []
    for _ in range(2):
        async with open_local_server(synth="generated") as server:
            renders.append(await server.render(text=TEXT, voice="Samara", output_format="flac"))
    assert renders[0] == renders[1]


@needs_espeak
async def test_espeak_speech_is_deterministic_and_follows_the_voice() -> None:
    renders = []
    for voice in ("Angelo", "Angelo", "Jennifer"):
        async with open_local_server(synth="espeak") as server:  # a fresh cache each time
            assert server.synth == "espeak"
            renders.append(await server.render(text=TEXT, voice=voice, output_format="raw"))
    assert renders[0] == renders[1] != renders[2]


@needs_espeak
async def test_a_spare_espeak_speaks_what_a_fresh_one_would_and_is_ended_with_its_task() -> None:
    spares = EspeakSpares(limit=1)
    fresh, rate = await espeak_pcm(TEXT, "Angelo", 1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(spares.run)
        first = await spares.pcm(TEXT, "Angelo", 1.0)  # no spare yet: a fresh process
        await started(spares, "en-us+m3")  # run() starts the next one
        assert spares.used == 0 and len(spares._spares) == 1
        second = await spares.pcm(TEXT, "Angelo", 1.0)  # on the spare, which is replaced
        assert spares.used == 1
        for pcm, pcm_rate in (first, second):
            assert pcm_rate == rate and np.array_equal(pcm, fresh)
        await spares.pcm(TEXT, "Jennifer", 1.0)  # another voice: its spare replaces Angelo's
        await started(spares, "en-gb+f3")
        [kept] = spares._spares.values()
        assert kept.returncode is None
        nursery.cancel_scope.cancel()
    assert kept.returncode is not None and not spares._spares
    await spares.pcm(TEXT, "Angelo", 1.0)  # run() ended: no more spares are started
    await trio.testing.wait_all_tasks_blocked()
    assert not spares._spares


@needs_espeak
async def test_the_next_spare_starts_once_the_sentence_was_spoken_not_while_it_is() -> None:
    """Starting a spare (a fork, then espeak-ng loading its data) beside the sentence being
    spoken delays that sentence's first audio on two cores: it waits for the sentence."""
    spares = EspeakSpares(limit=1)
    sentence = " and ".join(["the kitchen window is open"] * 12) + "."  # many pieces
    spares_while_spoken: list[int] = []

    async def sink(pcm: np.ndarray, rate: int) -> None:
        spares_while_spoken.append(len(spares._spares))
        await trio.testing.wait_all_tasks_blocked()  # run() has done what it was asked to

    async with trio.open_nursery() as nursery:
        await nursery.start(spares.run)
        await spares.pcm(TEXT, "Angelo", 1.0)  # no spare yet: a fresh process
        await started(spares, "en-us+m3")
        await spares.stream(sentence, "Angelo", 1.0, None, sink)  # on the spare
        assert len(spares_while_spoken) > 1 and set(spares_while_spoken) == {0}
        await started(spares, "en-us+m3")  # and the next one once it was spoken
        nursery.cancel_scope.cancel()


@needs_espeak
async def test_espeak_output_is_handed_on_as_it_is_written_and_adds_up_to_the_whole() -> None:
    """A long sentence comes in pieces as espeak-ng writes them, together what a fresh process
    writes. Its audio is several times a pipe's 64 KiB: espeak-ng cannot have finished writing
    it when the first piece came (the pipe would have been full)."""
    sentence = " and ".join(["the kitchen window is open"] * 12) + "."
    fresh, rate = await espeak_pcm(sentence, "Angelo", 1.0)
    assert fresh.nbytes > 4 * 65536
    pieces: list[np.ndarray] = []

    async def sink(pcm: np.ndarray, pcm_rate: int) -> None:
        assert pcm_rate == rate
        pieces.append(pcm)

    await EspeakSpares().stream(sentence, "Angelo", 1.0, None, sink)
    assert len(pieces) > 1 and pieces[0].nbytes < 65536
    assert np.array_equal(np.concatenate(pieces), fresh)


def test_a_wav_stream_split_anywhere_gives_the_same_samples() -> None:
    header = b"RIFF" + bytes(4) + b"WAVE" + bytes(12) + (22050).to_bytes(4, "little")
    header += bytes(WAV_HEADER - len(header))
    body = np.arange(-500, 500, dtype="<i2").tobytes()
    data = header + body
    for cut in (1, 3, 43, 44, 45, 101, len(data) - 1):
        wav = WavStream()
        pcm = np.concatenate([wav.feed(data[:cut]), wav.feed(data[cut:])])
        assert wav.rate == 22050 and np.array_equal(pcm, np.arange(-500, 500))
    with pytest.raises(RuntimeError, match="WAV"):
        WavStream().feed(b"not a wav header at all, but long enough to be one......")


async def started(spares: EspeakSpares, voice: str) -> None:
    """Until a spare for `voice` is there (run() starts it in a worker thread)."""
    with trio.fail_after(10):
        while not any(voice in command for command in spares._spares):
            await trio.sleep(0.01)


def test_espeak_voice_mapping_is_deterministic() -> None:
    angelo = (
        "s3://voice-cloning-zero-shot/baf1ef41-36b6-428c-9bdf-50ba54682bd8/original/manifest.json"
    )
    assert espeak_voice(angelo) == espeak_voice("Angelo") == "en-us+m3"
    assert espeak_voice("jennifer") == "en-gb+f3"
    assert espeak_voice("some-unknown-voice") == espeak_voice("some-unknown-voice")
    mapped = {espeak_voice(f"voice-{i}") for i in range(40)}
    assert mapped == {"en-us", "en-us+f3", "en-gb+m3", "en-gb+f3"}


@pytest.mark.parametrize("synth", ["espeak", "generated"])
async def test_ssml_in_its_own_field_is_said_with_its_break(synth: str) -> None:
    """A playspeak client sends SSML beside its words (`ssml`): the break is in the reply,
    and the reply is what `render` gives for the same SSML. A client without the field (pyht,
    Pipecat) gets its words."""
    words = "Front door, back door."
    markup = '<speak>Front door, <break time="1s"/> back door.</speak>'
    async with (
        open_local_server(synth=synth) as server,
        trio_websocket.open_websocket_url(await ws_url(server)) as ws,
    ):
        plain = await speak(ws, text=words, output_format="raw")
        unbroken = await speak(ws, text=words, ssml=f"<speak>{words}</speak>", output_format="raw")
        marked = await speak(ws, text=words, ssml=markup, output_format="raw")
        rendered = await server.render(text=words, voice="Angelo", output_format="raw", ssml=markup)
    assert marked.audio == rendered
    replies = (plain, unbroken, marked)
    plain_n, unbroken_n, marked_n = (decode(r.audio, "raw", 24000)[0] for r in replies)
    assert abs(unbroken_n - plain_n) < 0.05 * 24000  # the words alone, as said
    longer = (marked_n - unbroken_n) / 24000
    print(f"{synth}: the break made the reply {longer:.3f} s longer")
    assert 0.8 <= longer <= 1.2, longer
