"""Streaming behaviour: ordering under pipelining, chunking, pacing, token and connection life."""

from __future__ import annotations

import json

import pytest
import trio
import trio_websocket

from playspeak.engines.generated import RATE
from playspeak.localserver import open_local_server

from localserver_helpers import mp3_frame_offsets, read_reply, speak, ws_url

END = {"type": "end", "request_id": None, "status": 200}
FAST = {"first_byte_delay": 0, "realtime_factor": 0, "synth": "generated"}


async def test_twenty_pipelined_requests_come_back_complete_and_in_order() -> None:
    formats = ["mp3", "wav", "raw", "mulaw", "ogg", "flac"]
    commands = [
        {
            "text": f"Number {i}." + " more" * (i % 4),
            "voice": ["Angelo", "Deedee", "s3://x/manifest.json"][i % 3],
            "output_format": formats[i % len(formats)],
            "request_id": [f"id-{i}", i, {"n": i}, [i, "x"]][i % 4],
        }
        for i in range(20)
    ]
    commands[7].pop("request_id")
    async with open_local_server(chunk_min=100, chunk_max=700, seed=5, **FAST) as server:
        async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
            for command in commands:
                await ws.send_message(json.dumps(command))
            replies = [await read_reply(ws) for _ in commands]
        for command, reply in zip(commands, replies, strict=True):
            rid = command.get("request_id")
            assert reply.messages == [
                {"type": "start", "request_id": rid, "status": 200},
                {"type": "end", "request_id": rid, "status": 200},
            ]
            assert isinstance(reply.frames[0], str) and isinstance(reply.frames[-1], str)
            expected = await server.render(
                text=str(command["text"]),
                voice=str(command["voice"]),
                output_format=str(command["output_format"]),
            )
            assert reply.audio == expected
        assert server.stats.requests == 20 and server.stats.connections == 1


async def test_chunks_are_random_sizes_in_range_and_ignore_mp3_frames() -> None:
    async with (
        open_local_server(chunk_min=300, chunk_max=900, **FAST) as server,
        trio_websocket.open_websocket_url(await ws_url(server)) as ws,
    ):
        reply = await speak(ws, text="A somewhat longer sentence, for many chunks.")
    sizes = [len(c) for c in reply.chunks]
    assert len(sizes) > 5
    assert all(300 <= s <= 900 for s in sizes[:-1]) and 0 < sizes[-1] <= 900
    assert len(set(sizes)) > len(sizes) // 2
    boundaries = {sum(sizes[:i]) for i in range(1, len(sizes))}
    frames = set(mp3_frame_offsets(reply.audio))
    assert boundaries - frames, "every chunk boundary fell on an MP3 frame"


async def test_chunking_is_deterministic_for_a_seed() -> None:
    sizes = []
    for seed in (1, 1, 2):
        async with open_local_server(seed=seed, **FAST) as server:
            async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
                reply = await speak(ws, text="The same text every time, please.")
            sizes.append([len(c) for c in reply.chunks])
    assert sizes[0] == sizes[1] != sizes[2]


async def test_first_byte_delay_and_pacing_on_the_trio_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    text = "Paced speech, arriving about three times faster than real time."
    async with open_local_server(
        first_byte_delay=0.4, realtime_factor=3.0, synth="generated"
    ) as server:
        # raw PCM at the synthesizer's own rate: every byte is the same span of time
        request = {"text": text, "voice": "Angelo", "output_format": "raw", "sample_rate": RATE}
        async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
            for _ in range(2):  # the delay counts from when the server takes up each request
                sent = trio.current_time()
                await ws.send_message(json.dumps(request))
                arrivals: list[tuple[float, str | bytes]] = []
                while not arrivals or arrivals[-1][1] != json.dumps(END):
                    message = await ws.get_message()
                    arrivals.append((trio.current_time(), message))
                chunks = [(t, m) for t, m in arrivals if isinstance(m, bytes)]
                assert len(chunks) > 3
                first, first_chunk = chunks[0]
                assert first - sent == pytest.approx(0.4, abs=1e-3)
                # The first chunk's audio was made within the first-byte delay; each later one
                # goes out once the audio after the first chunk, up to its own end, is made at
                # 3x real time (not the first chunk's again).
                sent_bytes = 0
                for at, chunk in chunks:
                    sent_bytes += len(chunk)
                    made = (sent_bytes - len(first_chunk)) / 2 / RATE
                    assert at - first == pytest.approx(made / 3.0, abs=1e-3)


async def test_no_pacing_when_realtime_factor_is_zero(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_local_server(first_byte_delay=0.25, realtime_factor=0) as server,
        trio_websocket.open_websocket_url(await ws_url(server)) as ws,
    ):
        sent = trio.current_time()
        await speak(ws, text="Unpaced speech arrives all at once.")
        assert trio.current_time() - sent == pytest.approx(0.25, abs=1e-3)


async def test_tokens_expire_after_their_lifetime(autojump_clock: trio.testing.MockClock) -> None:
    async with open_local_server(token_lifetime=60, **FAST) as server:
        url = await ws_url(server)
        await trio.sleep(59)
        async with trio_websocket.open_websocket_url(url) as ws:
            assert (await speak(ws, output_format="raw")).last["type"] == "end"
        await trio.sleep(2)
        with pytest.raises(trio_websocket.ConnectionRejected) as refused:
            async with trio_websocket.open_websocket_url(url):
                pass
        assert refused.value.status_code in (401, 403)
        async with trio_websocket.open_websocket_url(await ws_url(server)):
            pass


async def test_expire_tokens_invalidates_every_token_minted_so_far() -> None:
    async with open_local_server(**FAST) as server:
        old = [await ws_url(server), await ws_url(server, "PlayDialog")]
        server.faults.expire_tokens()
        fresh = await ws_url(server)
        for url in old:
            with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                async with trio_websocket.open_websocket_url(url):
                    pass
            assert refused.value.status_code in (401, 403)
        async with trio_websocket.open_websocket_url(fresh) as ws:
            assert (await speak(ws, output_format="raw")).last["type"] == "end"


async def test_the_server_closes_a_connection_at_the_end_of_its_lifetime(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_server(connection_lifetime=5.0, **FAST) as server:
        async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
            opened = trio.current_time()
            await speak(ws, output_format="raw")
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await ws.get_message()
            assert trio.current_time() - opened == pytest.approx(5.0, abs=1e-3)
        assert closed.value.reason.code == 1000
        assert closed.value.reason.reason == "connection lifetime exceeded"


async def test_at_its_lifetime_a_connection_finishes_the_reply_in_flight_then_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """pyht returns a reply cut by a close as if it were whole: the close waits for its end."""
    text = "A reply that is still streaming when the connection reaches its lifetime."
    async with open_local_server(
        connection_lifetime=1.0, first_byte_delay=0, realtime_factor=1.0, synth="generated"
    ) as server:
        expected = await server.render(text=text, voice="Angelo", output_format="raw")
        seconds = len(expected) / 2 / 24000
        assert seconds > 2  # so the lifetime falls inside the reply
        async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
            opened = trio.current_time()
            reply = await speak(ws, text=text, output_format="raw", request_id="long")
            ended = trio.current_time() - opened
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await ws.get_message()
            closed_after = trio.current_time() - opened
    assert reply.audio == expected and reply.last["status"] == 200
    assert ended > 1.0 and closed_after == pytest.approx(ended, abs=1e-3)
    assert closed.value.reason.reason == "connection lifetime exceeded"
