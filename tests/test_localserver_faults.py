"""Fault injection: drops, refusals, injected errors, corruption and garbage frames."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
import trio_websocket

from playspeak.localserver import LocalServer, open_local_server

from localserver_helpers import read_reply, speak, ws_url

INJECTED = "synthesis failed (injected)"
TEXT = "Fault injection, for a robust client."


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with open_local_server(
        first_byte_delay=0, realtime_factor=0, chunk_min=200, chunk_max=600, synth="generated"
    ) as s:
        yield s


async def read_until_closed(
    ws: trio_websocket.WebSocketConnection,
) -> tuple[list[str | bytes], int]:
    frames: list[str | bytes] = []
    with pytest.raises(trio_websocket.ConnectionClosed) as closed:
        while True:
            frames.append(await ws.get_message())
    return frames, closed.value.reason.code


async def test_drop_after_bytes_cuts_the_connection_once(server: LocalServer) -> None:
    server.faults.drop_after_bytes = 1000
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        await ws.send_message(json.dumps({"text": TEXT, "voice": "Angelo"}))
        frames, code = await read_until_closed(ws)
    audio = b"".join(f for f in frames if isinstance(f, bytes))
    assert code == 1006  # abnormal: no close frame came
    assert audio == (await server.render(text=TEXT, voice="Angelo"))[:1000]
    assert server.faults.drop_after_bytes is None
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        assert (await speak(ws, text=TEXT)).last["type"] == "end"
    assert server.stats.connections == 2


async def test_drop_after_bytes_counts_across_replies_on_a_connection(server: LocalServer) -> None:
    first = await server.render(text=TEXT, voice="Angelo", output_format="raw")
    server.faults.drop_after_bytes = len(first) + 10
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        assert (await speak(ws, text=TEXT, output_format="raw")).audio == first
        await ws.send_message(json.dumps({"text": TEXT, "voice": "Angelo", "output_format": "raw"}))
        frames, code = await read_until_closed(ws)
    assert code == 1006
    assert sum(len(f) for f in frames if isinstance(f, bytes)) == 10


async def test_drop_after_requests_cuts_when_the_nth_command_arrives(server: LocalServer) -> None:
    server.faults.drop_after_requests = 2
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        assert (await speak(ws, output_format="raw")).last["type"] == "end"
        await ws.send_message(json.dumps({"text": TEXT, "voice": "Angelo"}))
        frames, code = await read_until_closed(ws)
    assert frames == [] and code == 1006
    assert server.faults.drop_after_requests is None
    assert server.stats.requests == 2
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        assert (await speak(ws, output_format="raw")).last["type"] == "end"


async def test_error_on_text_answers_matching_commands_with_an_error(server: LocalServer) -> None:
    server.faults.error_on_text = "boom"
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        for _ in range(2):
            failed = await speak(ws, text="this goes boom", request_id="bad")
            said = "synthesis failed (injected)"
            assert [(m["type"], m.get("error")) for m in failed.messages] == [
                ("start", None),
                ("error", said),
                ("end", None),
            ]
            assert {m["request_id"] for m in failed.messages} == {"bad"} and not failed.chunks
            assert (await speak(ws, text="this is fine", request_id="ok")).last["type"] == "end"
        server.faults.error_on_text = None
        assert (await speak(ws, text="this goes boom")).last["type"] == "end"


async def test_corrupt_after_bytes_garbles_one_reply_past_the_offset(server: LocalServer) -> None:
    clean = await server.render(text=TEXT, voice="Angelo")
    server.faults.corrupt_after_bytes = 700
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        corrupted = (await speak(ws, text=TEXT)).audio
        again = (await speak(ws, text=TEXT)).audio
    assert len(corrupted) == len(clean)
    assert corrupted[:700] == clean[:700]
    assert corrupted[700:] != clean[700:]
    assert sum(a != b for a, b in zip(corrupted[700:], clean[700:], strict=True)) > 0.9 * (
        len(clean) - 700
    )
    assert again == clean
    assert server.faults.corrupt_after_bytes is None


async def test_garbage_frames_come_before_each_start(server: LocalServer) -> None:
    server.faults.garbage_frames = True
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        for request_id in ("a", "b"):
            reply = await speak(ws, request_id=request_id, output_format="raw")
            not_json, unknown, start = reply.frames[:3]
            assert isinstance(not_json, str)
            with pytest.raises(ValueError):
                json.loads(not_json)
            assert json.loads(str(unknown))["type"] not in ("start", "end")
            assert json.loads(str(start)) == {
                "type": "start",
                "request_id": request_id,
                "status": 200,
            }
            assert reply.last == {"type": "end", "request_id": request_id, "status": 200}
        server.faults.garbage_frames = False
        reply = await speak(ws, output_format="raw")
        assert json.loads(str(reply.frames[0]))["type"] == "start"


@pytest.mark.parametrize("offset", [0, 700])
async def test_stall_after_bytes_holds_one_reply_until_resumed(
    server: LocalServer, offset: int, clock: trio.testing.MockClock
) -> None:
    """The connection stays open and silent (0: right after the start frame) until
    resume_stalls(); then the reply goes on where it stopped, and the next one is not held."""
    clean = await server.render(text=TEXT, voice="Angelo")
    server.faults.stall_after_bytes = offset
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        await ws.send_message(json.dumps({"text": TEXT, "voice": "Angelo", "request_id": "s"}))
        frames = [await ws.get_message()]
        while sum(len(f) for f in frames if isinstance(f, bytes)) < offset:
            frames.append(await ws.get_message())
        assert json.loads(frames[0]) == {"type": "start", "request_id": "s", "status": 200}
        with trio.move_on_after(30) as silent:  # virtual time: nothing more comes
            frames.append(await ws.get_message())
        assert silent.cancelled_caught
        assert server.stats.stalls == 1 and server.faults.stall_after_bytes is None
        server.faults.resume_stalls()
        rest = await read_reply(ws)
        audio = b"".join(f for f in frames + rest.frames if isinstance(f, bytes))
        assert audio == clean and rest.last == {"type": "end", "request_id": "s", "status": 200}
        assert (await speak(ws, text=TEXT)).audio == clean  # not held again
