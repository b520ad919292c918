"""Long texts stream sentence by sentence: the first audio comes after the first-byte delay
whatever the length, and ``render()`` gives exactly the bytes a reply streams."""

from __future__ import annotations

import json
import random
import shutil
import time

import numpy as np
import pytest
import trio
import trio_websocket

from playspeak.engines import Synthesizer
from playspeak.engines.generated import RATE, generate
from playspeak.engines.sentences import MAX_SENTENCE, split_sentences
from playspeak.localserver import open_local_server
from playspeak.localserver.audio import AudioEngine, Piece, Rendering
from playspeak.localserver.chunker import Chunker
from playspeak.localserver.encode import STREAM_WAV_SIZE, StreamEncoder, encode, resample

from localserver_helpers import LAME_DELAY, decode, read_reply, speak, ws_url

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank today. "
LONG = SENTENCE * 20  # 1,420 characters: rendered whole, its first byte took 2 s and more
STORY = "First comes this. Then that one! Is there more? Yes:\nthe end."
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng")
FAST = {"first_byte_delay": 0, "realtime_factor": 0, "synth": "generated"}


def test_sentences_end_at_stops_and_line_breaks_and_long_runs_are_cut_at_spaces() -> None:
    assert split_sentences(STORY) == [
        "First comes this.",
        "Then that one!",
        "Is there more?",
        "Yes:",
        "the end.",
    ]
    assert split_sentences("Testing, one two.") == ["Testing, one two."]
    assert split_sentences("  3.14 is pi.  ") == ["3.14 is pi."]
    words = split_sentences("word " * 200)
    assert len(words) > 1 and all(len(s) <= MAX_SENTENCE for s in words)
    assert " ".join(words) == ("word " * 200).strip()
    assert [len(s) for s in split_sentences("x" * 700)] == [300, 300, 100]


def test_chunks_are_cut_the_same_whether_the_audio_comes_whole_or_in_pieces() -> None:
    data = bytes(range(256)) * 40
    whole = Chunker(random.Random(3), 100, 700)
    whole.add(Piece(data, 2.0, header=44))
    whole.finish()
    expected = list(iter(whole.next_cut, None))
    pieced = Chunker(random.Random(3), 100, 700)
    cuts = []
    for start in range(0, len(data), 333):
        end = min(start + 333, len(data))
        pieced.add(Piece(data[start:end], 2.0 * end / len(data), header=44 if start == 0 else 0))
        cuts += iter(pieced.next_cut, None)
    pieced.finish()
    cuts += iter(pieced.next_cut, None)
    assert cuts == expected
    assert (cuts[0].start, cuts[0].end) == (0, 44)
    assert b"".join(c.data for c in cuts) == data
    assert pieced.seconds_at(len(data)) == pytest.approx(2.0)
    assert pieced.seconds_at(len(data) // 2) == pytest.approx(1.0, abs=0.01)
    # pieces of uneven pace: every offset falls in the piece that holds it, interpolated there
    uneven = Chunker(random.Random(1), 100, 700)
    for size, seconds in [(100, 0.5), (300, 0.6), (50, 1.6)]:
        uneven.add(Piece(bytes(size), seconds))
    assert [uneven.seconds_at(b) for b in (0, 50, 100, 250, 400, 425, 450, 999)] == pytest.approx(
        [0.0, 0.25, 0.5, 0.55, 0.6, 1.1, 1.6, 1.6]
    )


@pytest.mark.parametrize("output_format", ["raw", "mulaw", "mp3"])
def test_a_stream_encoder_fed_in_pieces_makes_the_whole_encoding(output_format: str) -> None:
    pcm = generate("Hello there, how are you?", "Angelo")
    encoder = StreamEncoder(RATE, 24000, output_format)
    streamed = encoder.feed(pcm[:10000]) + encoder.feed(pcm[10000:]) + encoder.close()
    assert streamed == encode(resample(pcm, RATE, 24000), 24000, output_format).data


async def streamed_pieces(text: str, output_format: str) -> list[Piece]:
    """The pieces a fresh engine's `stream` emits for `text` (generated voice, 24 kHz)."""
    pieces: list[Piece] = []

    async def keep(piece: Piece) -> None:
        pieces.append(piece)

    asked = Rendering(text, "Angelo", output_format=output_format)
    await AudioEngine("generated").stream(asked, keep)
    return pieces


async def test_one_sentence_streams_in_slices_that_join_to_its_whole_encoding() -> None:
    # Its first bytes go out once its first slice is encoded, not the whole sentence.
    text = "Hello there, how are you today, my friend from the village by the sea?"
    pieces = await streamed_pieces(text, "mp3")
    pcm = generate(text, "Angelo")
    assert len(pieces) > 3
    assert [p.seconds for p in pieces] == sorted(p.seconds for p in pieces)
    assert pieces[0].seconds <= 0.2 + 1e-9
    assert pieces[-1].seconds == pytest.approx(len(pcm) / RATE)
    whole = encode(resample(pcm, RATE, 24000), 24000, "mp3").data
    assert b"".join(p.data for p in pieces) == whole
    # a format that states its length up front is still encoded whole, with real sizes
    [piece] = await streamed_pieces(text, "wav")
    assert int.from_bytes(piece.data[40:44], "little") == len(piece.data) - 44


def test_a_wav_stream_says_its_length_is_unknown() -> None:
    encoder = StreamEncoder(RATE, 16000, "wav")
    data = encoder.feed(generate("Hi.", "Angelo")) + encoder.close()
    assert encoder.header == 44 and data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    assert int.from_bytes(data[4:8], "little") == STREAM_WAV_SIZE
    assert data[36:40] == b"data" and int.from_bytes(data[40:44], "little") == STREAM_WAV_SIZE
    assert (len(data) - 44) % 2 == 0 and decode(data, "wav", 16000)[1] == 16000


async def test_the_first_audio_byte_comes_while_later_sentences_are_still_synthesized(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_audio = trio.Event()
    synthesized: list[str] = []
    real_pcm = Synthesizer.pcm

    async def gated_pcm(self: Synthesizer, text: str, voice: str, speed: float, style=None):  # type: ignore[no-untyped-def]
        if synthesized:  # every sentence after the first waits for the client's first audio
            await first_audio.wait()
        synthesized.append(text)
        return await real_pcm(self, text, voice, speed, style)

    monkeypatch.setattr(Synthesizer, "pcm", gated_pcm)
    async with (
        open_local_server(first_byte_delay=0.3, realtime_factor=3.0, synth="generated") as server,
        trio_websocket.open_websocket_url(await ws_url(server)) as ws,
    ):
        sent = trio.current_time()
        await ws.send_message(json.dumps({"text": LONG, "voice": "Angelo", "request_id": 1}))
        with trio.fail_after(5):  # virtual seconds; whole-text rendering would never get here
            assert json.loads(await ws.get_message()) == {
                "type": "start",
                "request_id": 1,
                "status": 200,
            }
            assert isinstance(await ws.get_message(), bytes)
        assert trio.current_time() - sent == pytest.approx(0.3, abs=1e-3)
        assert len(synthesized) == 1
        first_audio.set()
        rest = await read_reply(ws)
    assert rest.last == {"type": "end", "request_id": 1, "status": 200}
    assert len(synthesized) == len(split_sentences(LONG)) == 20


async def test_a_long_text_starts_long_before_it_could_have_been_rendered_whole() -> None:
    async with (
        open_local_server(**FAST) as server,
        trio_websocket.open_websocket_url(await ws_url(server)) as ws,
    ):
        began = time.monotonic()
        await ws.send_message(json.dumps({"text": LONG, "voice": "Angelo"}))
        while not isinstance(await ws.get_message(), bytes):
            pass
        first_byte = time.monotonic() - began
    engine = AudioEngine("generated")  # a cold cache: the whole text, rendered
    began = time.monotonic()
    await engine.render(Rendering(LONG, "Angelo"))
    whole = time.monotonic() - began
    assert first_byte < whole / 4, (first_byte, whole)


@pytest.mark.parametrize("output_format", ["mp3", "raw", "wav", "flac"])
@pytest.mark.parametrize("synth", ["generated", pytest.param("espeak", marks=needs_espeak)])
async def test_a_streamed_reply_is_what_render_gives_on_another_server(
    output_format: str, synth: str
) -> None:
    fast = {**FAST, "synth": synth}
    async with (
        open_local_server(chunk_min=200, chunk_max=900, **fast) as server,
        trio_websocket.open_websocket_url(await ws_url(server)) as ws,
    ):
        reply = await speak(ws, text=STORY, output_format=output_format, sample_rate=16000)
        again = await speak(ws, text=STORY, output_format=output_format, sample_rate=16000)
    async with open_local_server(**fast) as fresh:
        rendered = await fresh.render(
            text=STORY, voice="Angelo", output_format=output_format, sample_rate=16000
        )
        raw = await fresh.render(text=STORY, voice="Angelo", output_format="raw", sample_rate=16000)
    assert reply.audio == again.audio == rendered
    if output_format == "wav":
        assert len(reply.chunks[0]) == 44
    samples, rate = decode(reply.audio, output_format, 16000)
    samples -= LAME_DELAY if output_format == "mp3" else 0
    assert rate == 16000 and abs(samples - len(raw) // 2) / rate < 0.06
    if synth == "generated":
        pieces = [generate(s, "Angelo") for s in split_sentences(STORY)]
        assert len(raw) // 2 == pytest.approx(sum(map(len, pieces)) * 16000 / RATE, abs=2)


async def test_a_long_reply_is_paced_over_its_whole_duration(
    autojump_clock: trio.testing.MockClock,
) -> None:
    text = " ".join([SENTENCE.strip()] * 6)
    async with open_local_server(
        first_byte_delay=0.4, realtime_factor=3.0, synth="generated"
    ) as server:
        async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
            sent = trio.current_time()
            await ws.send_message(json.dumps({"text": text, "voice": "Angelo"}))
            times, sizes = [], []
            while not isinstance(message := await ws.get_message(), str) or "end" not in message:
                if isinstance(message, bytes):
                    times.append(trio.current_time())
                    sizes.append(len(message))
        raw = await server.render(text=text, voice="Angelo", output_format="raw")
    duration = len(raw) / 2 / 24000
    assert times[0] - sent == pytest.approx(0.4, abs=1e-3)
    # the first chunk's audio was made within the first-byte delay, the rest comes at 3x
    after_first = duration * (1 - sizes[0] / sum(sizes))
    assert times[-1] - times[0] == pytest.approx(after_first / 3, rel=0.02)
    assert times == sorted(times) and len(set(times)) > 10


async def test_synthesis_failing_part_way_sends_the_audio_made_then_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_pcm = Synthesizer.pcm

    async def failing_pcm(self: Synthesizer, text: str, voice: str, speed: float, style=None):  # type: ignore[no-untyped-def]
        if text.startswith("Is there"):
            raise RuntimeError("the synthesizer fell over")
        return await real_pcm(self, text, voice, speed, style)

    monkeypatch.setattr(Synthesizer, "pcm", failing_pcm)
    async with (
        open_local_server(**FAST) as server,
        trio_websocket.open_websocket_url(await ws_url(server)) as ws,
    ):
        broken = await speak(ws, text=STORY, request_id="s", output_format="raw")
        fine = await speak(ws, text="Next, please.", request_id="t", output_format="raw")
    start, error, end = broken.messages
    assert start == {"type": "start", "request_id": "s", "status": 200}
    assert (error["type"], error["request_id"], error["status"]) == ("error", "s", 500)
    assert end == {"type": "end", "request_id": "s", "status": 500}
    two_sentences = sum(len(generate(s, "Angelo")) for s in split_sentences(STORY)[:2])
    assert len(broken.audio) // 2 == pytest.approx(two_sentences * 24000 / RATE, abs=64)
    assert np.frombuffer(broken.audio, "<i2").any()
    assert fine.last == {"type": "end", "request_id": "t", "status": 200}
