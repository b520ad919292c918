"""The local server behaving like a paid service: delays, idle close, rate limit, stats."""

from __future__ import annotations

import dataclasses
import json
import os

import httpx
import pytest
import trio
import trio_websocket

from playspeak.localserver import LocalServer, LocalServerSettings, open_local_server
from playspeak.localserver.cli import parse_args
from playspeak.localserver.settings import REALISTIC, AuthRate

from localserver_helpers import auth, read_reply, serve_local, speak, ws_url

FAST = {"first_byte_delay": 0, "realtime_factor": 0, "synth": "generated"}


async def stats(server: LocalServer) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        response = await client.get(server.base_url + "/_local/stats")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()


def test_every_cost_is_off_by_default() -> None:
    settings = LocalServerSettings()
    assert (settings.auth_delay, settings.connect_delay, settings.idle_timeout) == (0, 0, 0)
    assert (settings.auth_rate, settings.auth_status) == (None, 200)
    assert parse_args([], {}) == dataclasses.replace(settings, port=8765)


def test_realistic_turns_every_cost_on_and_single_flags_override() -> None:
    realistic = parse_args(["--realistic"], {})
    assert (realistic.auth_delay, realistic.connect_delay, realistic.idle_timeout) == (
        0.25,
        0.15,
        30.0,
    )
    assert realistic.auth_rate == AuthRate(10, 60.0)
    assert realistic.auth_status == 201
    assert realistic == dataclasses.replace(LocalServerSettings.realistic(), port=8765)
    mixed = parse_args(["--realistic", "--auth-rate", "3/1.5", "--idle-timeout", "0"], {})
    assert (mixed.auth_rate, mixed.idle_timeout, mixed.auth_delay) == (AuthRate(3, 1.5), 0, 0.25)
    single = parse_args(["--auth-status", "201"], {})
    assert (single.auth_status, single.auth_delay) == (201, 0)
    assert set(REALISTIC) == {
        "auth_delay",
        "connect_delay",
        "idle_timeout",
        "auth_rate",
        "auth_status",
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["--auth-rate", "10"],
        ["--auth-rate", "0/60"],
        ["--auth-rate", "5/0"],
        ["--auth-status", "302"],
        ["--auth-delay", "-1"],
        ["--idle-timeout", "nan"],
    ],
)
def test_bad_cost_flags_exit_with_usage(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv, {})
    assert exited.value.code == 2


async def test_auth_is_answered_after_the_auth_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_server(auth_delay=0.25, **FAST) as server:
        began = trio.current_time()
        assert (await auth(server)).status_code == 200
        assert trio.current_time() - began == pytest.approx(0.25, abs=1e-3)


async def test_a_websocket_handshake_is_answered_after_the_connect_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_server(connect_delay=0.15, **FAST) as server:
        url = await ws_url(server)
        began = trio.current_time()
        async with trio_websocket.open_websocket_url(url) as ws:
            assert trio.current_time() - began == pytest.approx(0.15, abs=1e-3)
            assert (await speak(ws, output_format="raw")).last["type"] == "end"


async def test_auth_answers_the_configured_success_status() -> None:
    async with open_local_server(auth_status=201, **FAST) as server:
        response = await auth(server)
        assert response.status_code == 201
        assert set(response.json()) == {"webSocketUrls", "expiresAt"}


async def test_auth_past_the_rate_is_refused_with_429_and_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_server(auth_rate=AuthRate(3, 10.0), **FAST) as server:
        first = trio.current_time()
        assert (await auth(server)).status_code == 200
        await trio.sleep(2)
        assert [(await auth(server)).status_code for _ in range(2)] == [200] * 2
        await trio.sleep(2)
        refused = await auth(server)
        assert refused.status_code == 429
        retry_after = int(refused.headers["retry-after"])
        assert retry_after == 6  # the oldest of the three leaves the window 10 s after it came
        assert "error" in refused.json()
        await trio.sleep(retry_after)
        assert trio.current_time() - first >= 10
        assert (await auth(server)).status_code == 200
        again = await auth(server)  # the other two are still in the window
        assert again.status_code == 429 and again.headers["retry-after"] == "2"
        counters = await stats(server)
        assert (counters["auth_requests"], counters["auth_refused"]) == (6, 2)
        assert counters["auth_rate_limited"] == 2


async def test_the_server_closes_an_idle_websocket_and_not_a_busy_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    text = "A reply that takes longer to stream than the idle timeout, by quite a long way."
    async with open_local_server(
        idle_timeout=1.0, first_byte_delay=0, realtime_factor=1.0, synth="generated"
    ) as server:
        async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
            await trio.sleep(0.9)
            sent = trio.current_time()
            reply = await speak(ws, text=text, output_format="raw")
            ended = trio.current_time()
            assert reply.last["type"] == "end" and ended - sent > 3  # streamed past the timeout
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await ws.get_message()
            assert trio.current_time() - ended == pytest.approx(1.0, abs=1e-3)
        assert closed.value.reason.code == 1000
        assert closed.value.reason.reason == "idle timeout"
        await trio.sleep(1)  # virtual: lets the server's side of the close finish
        counters = await stats(server)
        assert (counters["ws_connections"], counters["ws_open"]) == (1, 0)
        assert counters["ws_idle_closed"] == 1


async def test_a_websocket_nobody_speaks_on_is_closed_after_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_local_server(idle_timeout=30, **FAST) as server,
        trio_websocket.open_websocket_url(await ws_url(server)) as ws,
    ):
        opened = trio.current_time()
        with pytest.raises(trio_websocket.ConnectionClosed):
            await ws.get_message()
        assert trio.current_time() - opened == pytest.approx(30, abs=1e-3)


async def test_a_failed_request_gets_a_failing_start_an_error_and_its_end() -> None:
    """Every client finishes: pyht waits for start and end, Pipecat and the demo look for an
    "error" key, third-party clients read a start's non-2xx status."""
    async with (
        open_local_server(**FAST) as server,
        trio_websocket.open_websocket_url(await ws_url(server)) as ws,
    ):
        bad = await speak(ws, text="", request_id="r-1")
        server.faults.error_on_text = "boom"
        failed = await speak(ws, text="boom", request_id=7)
        await ws.send_message("not json")
        garbled = await read_reply(ws)
        good = await speak(ws, text="Still fine.", request_id="r-2", output_format="raw")
    assert good.last == {"type": "end", "request_id": "r-2", "status": 200}
    for reply, rid, status in ((bad, "r-1", 400), (failed, 7, 500), (garbled, None, 400)):
        start, error, end = reply.messages
        assert len(reply.frames) == 3 and not reply.chunks
        said = error["error"]
        assert isinstance(said, str) and said and error["message"] == said
        assert start == {"type": "start", "request_id": rid, "status": status, "message": said}
        assert error == {**start, "type": "error", "error": said}
        assert end == {"type": "end", "request_id": rid, "status": status}


async def test_stats_count_auths_refusals_connections_and_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_server(api_key="k", user_id="u", **FAST) as server:
        assert await stats(server) == {
            "auth_requests": 0,
            "auth_refused": 0,
            "auth_rate_limited": 0,
            "ws_connections": 0,
            "ws_open": 0,
            "ws_idle_closed": 0,
            "tts_requests": 0,
            "stalls": 0,
        }
        good = {"Authorization": "Bearer k", "X-User-Id": "u"}
        wrong = {"Authorization": "Bearer nope", "X-User-Id": "u"}
        assert (await auth(server, headers=wrong)).status_code == 401
        url = (await auth(server, headers=good)).json()["webSocketUrls"]["PlayDialog"]
        async with trio_websocket.open_websocket_url(url) as ws:
            await speak(ws, output_format="raw")
            await speak(ws, output_format="raw")
            counters = await stats(server)
            assert counters["auth_requests"] == 2 and counters["auth_refused"] == 1
            assert (counters["ws_connections"], counters["ws_open"]) == (1, 1)
            assert counters["tts_requests"] == 2
            async with trio_websocket.open_websocket_url(url):
                assert (await stats(server))["ws_open"] == 2
        await trio.sleep(1)  # virtual: lets the server's side of the closes finish
        counters = await stats(server)
        assert (counters["ws_connections"], counters["ws_open"]) == (2, 0)
        async with httpx.AsyncClient() as client:
            posted = await client.post(server.base_url + "/_local/stats")
        assert posted.status_code == 405 and posted.headers["allow"] == "GET"
        assert (await stats(server))["auth_requests"] == 2  # reading stats is not an auth


async def test_a_realistic_server_in_process(autojump_clock: trio.testing.MockClock) -> None:
    settings = LocalServerSettings.realistic(port=0, **FAST)
    async with open_local_server(settings) as server:
        began = trio.current_time()
        first = await auth(server)
        assert first.status_code == 201
        assert trio.current_time() - began == pytest.approx(0.25, abs=1e-3)
        url = first.json()["webSocketUrls"]["Play3.0-mini"]
        async with trio_websocket.open_websocket_url(url) as ws:
            await ws.send_message(json.dumps({"voice": "Angelo"}))
            assert "text is required" in str((await read_reply(ws)).messages[1]["error"])
        codes = [(await auth(server)).status_code for _ in range(10)]
        assert codes == [201] * 9 + [429]


def test_serve_local_realistic_from_the_command_line() -> None:
    args = ["--port", "0", "--synth", "generated", "--realistic", "--auth-rate", "1/60"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYAI_")}
    with serve_local(args, env) as base_url:
        url = base_url + "/api/v1/tts/websocket-auth"
        creds = {"Authorization": "Bearer any", "X-User-Id": "any"}
        assert httpx.post(url, headers=creds).status_code == 201
        refused = httpx.post(url, headers=creds)
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
        counters = httpx.get(base_url + "/_local/stats").json()
        assert (counters["auth_requests"], counters["auth_refused"]) == (2, 1)
        assert (counters["ws_connections"], counters["ws_open"], counters["tts_requests"]) == (
            0,
            0,
            0,
        )
