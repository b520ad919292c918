"""The PlayAI link against the real local server: auth, ordered replies, errors, reconnects."""

from __future__ import annotations

import contextlib
import json
import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
import trio
import trio_websocket

import link_helpers
from link_helpers import VOICE, collect, command
from playspeak.errors import LinkError
from playspeak.localserver import LocalServer, LocalServerSettings, open_local_server
from playspeak.playai.link import Link, LinkSettings

KEY, USER = "test-key-abcdef", "test-user-42"


def served_link(
    server: dict[str, Any], **link_settings: Any
) -> AbstractAsyncContextManager[tuple[LocalServer, Link]]:
    """A local server with `server` settings and a running Link to it; both stop on exit."""
    return link_helpers.served_link(LocalServerSettings(**server), KEY, USER, **link_settings)


async def test_pipelined_requests_come_back_in_order_and_whole() -> None:
    async with served_link(
        dict(
            api_key=KEY,
            user_id=USER,
            first_byte_delay=0,
            realtime_factor=0,
            chunk_min=1,
            chunk_max=3000,
        )
    ) as (server, link):
        texts = ["one", "two two", "three three three"]
        replies = [await link.request(command(t)) for t in texts]  # all sent before reading
        for text, reply in zip(texts, replies, strict=True):
            assert await collect(reply) == await server.render(text=text, voice=VOICE)
        assert server.stats.connections == 1 and link.connections == 1


async def test_an_error_frame_fails_only_its_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="playspeak.playai.link")
    async with served_link(
        dict(api_key=KEY, user_id=USER, first_byte_delay=0, realtime_factor=0)
    ) as (server, link):
        server.faults.error_on_text = "boom"
        bad = await link.request(command("boom now"))
        good = await link.request(command("fine"))
        with pytest.raises(LinkError, match="synthesis failed"):
            await collect(bad)
        assert not bad.retriable
        assert await collect(good) == await server.render(text="fine", voice=VOICE)
    # the failing start, the error frame and the end of one request: one failure, no news
    assert "no known request" not in caplog.text


async def test_a_dropped_connection_fails_pending_replies_and_reconnects() -> None:
    async with served_link(
        dict(api_key=KEY, user_id=USER, first_byte_delay=0, realtime_factor=0), backoff_initial=0.01
    ) as (server, link):
        server.faults.drop_after_bytes = 3000
        text = "a sentence long enough to be more than three thousand bytes of audio"
        reply = await link.request(command(text))
        with pytest.raises(LinkError, match="lost"):
            await collect(reply)
        assert reply.retriable
        server.faults.drop_after_bytes = None
        again = await link.request(command(text))
        assert await collect(again) == await server.render(text=text, voice=VOICE)
        assert link.connections == 2


async def test_refused_auth_is_reported_without_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with served_link(
        dict(api_key="the-right-key", user_id=USER), request_patience=1.0, backoff_initial=0.1
    ) as (server, link):
        # A 401 is an answer: the request fails with it at once, not after the 1 s patience,
        # and so does the next one, without a call of its own (the supervisor retries with
        # backoff meanwhile).
        with trio.fail_after(0.5):
            for text in ("hello", "again"):
                with pytest.raises(LinkError, match="refused the credentials"):
                    await link.request(command(text))
        assert link.state == "auth-failed"
        calls = server.stats.auth_calls
        assert calls <= 2, f"{calls} auth calls for two requests"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "401" in logged
    assert KEY not in logged and USER not in logged


async def test_renewal_before_the_connection_lifetime_drops_no_reply(
    clock: trio.testing.MockClock,
) -> None:
    """The server closes every connection after 1.5 s; the link opens the next one 0.375 s
    before that (the margin is at most a quarter of the life) and lets the old one finish its
    replies, so a steady stream of requests never fails. Each reply takes 0.3 s, so one is in
    flight at every renewal (1.125 s, 2.25 s, 3.375 s). Virtual time: in real time a loaded
    machine overran the margin or the 3.5 s, and three renewals then did not fit in."""
    async with served_link(
        dict(
            api_key=KEY,
            user_id=USER,
            first_byte_delay=0.3,
            realtime_factor=0,
            chunk_min=20_000,  # a reply in one frame: fewer waits, each a jump of the clock
            chunk_max=20_000,
            connection_lifetime=1.5,
        ),
        max_age=1.5,
        renew_margin=0.375,
    ) as (server, link):
        expected = await server.render(text="tick", voice=VOICE)
        deadline = trio.current_time() + 3.5
        replies = 0
        while trio.current_time() < deadline:
            assert await collect(await link.request(command("tick"))) == expected
            replies += 1
        assert link.renewals >= 3 and server.stats.connections >= 4
        assert replies >= 5


async def test_an_unwanted_reply_is_skipped_by_a_fresh_connection() -> None:
    async with served_link(
        dict(api_key=KEY, user_id=USER, first_byte_delay=0, realtime_factor=1.0)
    ) as (server, link):
        long = await link.request(command("a long sentence that takes a few seconds to stream"))
        assert await long.receive()  # streaming has begun
        long.discard()
        link.restart()
        with trio.fail_after(1.0):  # far sooner than the rest of the long reply (seconds)
            short = await link.request(command("now"))
            assert await collect(short) == await server.render(text="now", voice=VOICE)
        assert link.connections == 2


# ---- liveness: a stalled service fails over; our own slowness does not ---------------------------

FIRST_AUDIO, STALL = 5.0, 4.0
LONG = "a sentence long enough to be more than three thousand bytes of audio, and then some more"


def stalling_server() -> dict[str, Any]:
    return dict(api_key=KEY, user_id=USER, first_byte_delay=0, realtime_factor=0, synth="generated")


def liveness(**more: Any) -> dict[str, Any]:
    return dict(first_audio_timeout=FIRST_AUDIO, stall_timeout=STALL, **more)


async def test_a_reply_with_no_audio_fails_over_after_first_audio_timeout(
    clock: trio.testing.MockClock,
) -> None:
    async with served_link(stalling_server(), **liveness()) as (server, link):
        expected = await server.render(text="hello", voice=VOICE)
        server.faults.stall_after_bytes = 0  # start frame, then nothing
        asked = trio.current_time()
        reply = await link.request(command("hello"))
        with pytest.raises(LinkError, match="no audio from the TTS service within 5 s"):
            await collect(reply)
        waited = trio.current_time() - asked
        assert reply.retriable and server.stats.stalls == 1
        assert FIRST_AUDIO <= waited < FIRST_AUDIO + 0.5
        assert link.status()["state"] == "stalled" and link.stalls == 1
        # Asked again on a fresh connection: whole, at once.
        assert await collect(await link.request(command("hello"))) == expected
        assert trio.current_time() - asked < FIRST_AUDIO + 0.5
        assert link.state == "connected" and link.connections == 2


async def test_a_reply_that_stops_mid_stream_fails_over_after_stall_timeout(
    clock: trio.testing.MockClock,
) -> None:
    async with served_link(stalling_server(), **liveness()) as (server, link):
        expected = await server.render(text=LONG, voice=VOICE)
        server.faults.stall_after_bytes = 3000
        reply = await link.request(command(LONG))
        received, last = 0, trio.current_time()
        with pytest.raises(LinkError, match=r"stopped sending mid-reply \(nothing for 4 s\)"):
            while (chunk := await reply.receive()) is not None:
                received, last = received + len(chunk), trio.current_time()
        assert received == 3000 and reply.retriable
        assert STALL <= trio.current_time() - last < STALL + 0.5
        server.faults.resume_stalls()  # the old reply goes on into a closed connection: harmless
        assert await collect(await link.request(command(LONG))) == expected
        assert link.stalls == 1 and link.connections == 2


async def test_a_consumer_that_stops_reading_is_not_a_stall(
    clock: trio.testing.MockClock,
) -> None:
    """The reply's channel fills, the reader waits for us (back-pressure), the service waits for
    the reader: nothing is overdue, however long that lasts."""
    server = dict(stalling_server(), chunk_min=100, chunk_max=200)  # many more chunks than fit
    async with served_link(server, **liveness()) as (local, link):
        expected = await local.render(text=LONG * 3, voice=VOICE)
        reply = await link.request(command(LONG * 3))
        first = await reply.receive()
        assert first is not None
        await trio.sleep(10 * (FIRST_AUDIO + STALL))  # a paused speaker
        assert first + await collect(reply) == expected
        assert link.stalls == 0 and link.connections == 1 and link.state == "connected"


async def test_a_stalled_service_that_is_gone_fails_the_request_with_the_reason(
    clock: trio.testing.MockClock,
) -> None:
    """Not request_patience (60 s here) but the first failed attempt to reach it again ends the
    wait: the cost is first_audio_timeout and one reconnect."""
    async with (
        httpx.AsyncClient() as http,
        trio.open_nursery() as nursery,
    ):
        async with open_local_server(**stalling_server()) as server:
            settings = LinkSettings(server.base_url, KEY, USER, request_patience=60.0, **liveness())
            link = Link(settings, http)
            await nursery.start(link.run)
            server.faults.stall_after_bytes = 0
            asked = trio.current_time()
            reply = await link.request(command("hello"))
            with pytest.raises(LinkError, match="no audio"):
                await collect(reply)
        # The server is gone now (its port closed): the link's next attempt fails at once.
        with pytest.raises(LinkError, match="stalled and did not answer again: cannot reach"):
            await link.request(command("hello"))
        assert trio.current_time() - asked < FIRST_AUDIO + 1.0
        nursery.cancel_scope.cancel()


DEEP_FRAME = '{"type":' + "[" * 5000 + "]" * 5000 + "}"


async def serve_auth(ws_url: str, *, task_status: trio.TaskStatus[str]) -> None:
    """A loopback HTTP server answering every request with an auth answer naming `ws_url`."""
    body = json.dumps({"websocket_url": ws_url}).encode()
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := await stream.receive_some(4096)):
                head += chunk
            await stream.send_all(answer)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}")
    await trio.serve_listeners(handler, listeners)


async def test_a_frame_nested_too_deeply_is_ignored_and_the_link_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A service of our own on loopback: the local server sends no such frame on purpose.
    async def service(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            while True:
                rid = json.loads(await ws.get_message())["request_id"]
                await ws.send_message(DEEP_FRAME)
                await ws.send_message(json.dumps({"type": "start", "request_id": rid}))
                await ws.send_message(b"audio of " + rid.encode())
                await ws.send_message(json.dumps({"type": "end", "request_id": rid}))

    async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
        ws_server = await nursery.start(
            trio_websocket.serve_websocket, service, "127.0.0.1", 0, None
        )
        base_url = await nursery.start(serve_auth, f"ws://127.0.0.1:{ws_server.port}/tts")
        link = Link(LinkSettings(base_url, KEY, USER), http)
        await nursery.start(link.run)
        with trio.fail_after(10):
            for rid in ("a", "b"):
                reply = await link.request({**command("hi"), "request_id": rid})
                assert await collect(reply) == b"audio of " + rid.encode()
        assert link.connections == 1
        nursery.cancel_scope.cancel()
    assert any("nested too deeply" in r.getMessage() for r in caplog.records)
