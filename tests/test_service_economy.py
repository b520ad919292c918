"""Issue 17, point 2: a client that is cheap to serve, tested against the realistic local server
(`serve-local --realistic`: slow auth and connect, 201 answers, 429 with Retry-After past a rate,
an idle timeout, typed error frames) over real loopback sockets, with trio's mock clock for
every wait (autojump: virtual time moves only while the test waits for timers alone)."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

import playspeak.localserver.session as session_module
from link_helpers import VOICE, collect, command, served_link
from playspeak.config import ApiConfig, AudioConfig, Config, ControlConfig, SsipConfig
from playspeak.daemon import open_daemon
from playspeak.errors import AuthError, LinkError
from playspeak.localserver import LocalServer, LocalServerSettings, open_local_server
from playspeak.localserver.settings import AuthRate
from playspeak.playai.auth import RateLimited, authenticate
from playspeak.playai.link import MAX_MODELS, Link, LinkPool, LinkSettings
from playspeak.playai.wire import parse_auth_answer

from daemon_helpers import LineClient, speak

KEY, USER = "test-key-economy", "test-user-economy"


def realistic(**overrides: Any) -> LocalServerSettings:
    """`--realistic`, answering at once after its delays (no pacing) with generated audio."""
    fast = dict(first_byte_delay=0, realtime_factor=0, synth="generated")
    return LocalServerSettings.realistic(api_key=KEY, user_id=USER, **{**fast, **overrides})


def served(
    server: LocalServerSettings, **link: Any
) -> AbstractAsyncContextManager[tuple[LocalServer, Link]]:
    return served_link(server, KEY, USER, **{"warm_up": False, "idle_close": 20.0, **link})


async def until(predicate: Any, step: float = 0.25) -> float:
    """Wait (virtual time) until `predicate()`; returns when it became true, give or take
    `step` (each poll costs the autojump threshold in real time: keep polls few)."""
    with trio.fail_after(600):
        while not predicate():
            await trio.sleep(step)
    return trio.current_time()


# ---- the URL of one auth answer is reused ------------------------------------------------


async def test_reconnecting_reuses_the_kept_url(clock: trio.testing.MockClock) -> None:
    async with served(realistic()) as (server, link):
        expected = await server.render(text="three", voice=VOICE)
        await collect(await link.request(command("one")))
        server.faults.drop_after_bytes = 1  # the connection breaks mid-reply
        broken = await link.request(command("two"))
        with pytest.raises(LinkError):
            await collect(broken)
        assert broken.retriable
        assert await collect(await link.request(command("three"))) == expected
        assert server.stats.connections == 2
        assert server.stats.snapshot()["auth_requests"] == 1  # the reconnect asked no auth
        assert link.status()["auths"] == 1


async def test_a_refused_kept_url_authenticates_again_once(
    clock: trio.testing.MockClock,
) -> None:
    async with served(realistic()) as (server, link):
        await collect(await link.request(command("one")))
        server.faults.expire_tokens()  # the service no longer takes the kept URL's token
        link.restart()
        assert await collect(await link.request(command("two")))
        stats = server.stats.snapshot()
        assert (stats["auth_requests"], stats["auth_refused"], stats["ws_connections"]) == (2, 0, 2)


async def test_urls_are_renewed_shortly_before_they_expire(
    clock: trio.testing.MockClock,
) -> None:
    """Tokens live 100 s: the kept URL serves until shortly before (a quarter of its life at
    most: 25 s), then the next connection authenticates again."""
    async with served(
        realistic(token_lifetime=100.0, idle_timeout=0), warm_up=True, idle_close=0
    ) as (server, link):
        await until(lambda: link.state == "connected")
        assert server.stats.auth_calls == 1
        await trio.sleep(60)
        server.faults.drop_after_bytes = 1
        with pytest.raises(LinkError):
            await collect(await link.request(command("one")))
        await until(lambda: server.stats.connections == 2)
        assert server.stats.auth_calls == 1  # at 60 s the URL was still good
        await trio.sleep(30)  # past 75 s: renewed, with a fresh auth
        await until(lambda: server.stats.connections == 3)
        assert server.stats.auth_calls == 2
        assert await collect(await link.request(command("two")))


# ---- lazy connection, idle close ----------------------------------------------------------


async def test_the_link_connects_on_demand_and_closes_when_idle(
    clock: trio.testing.MockClock,
) -> None:
    async with served(realistic(idle_timeout=30.0), idle_close=20.0) as (server, link):
        await trio.sleep(10)
        assert link.status()["state"] == "idle" and server.stats.connections == 0
        assert server.stats.auth_calls == 0
        await collect(await link.request(command("one")))
        assert link.state == "connected" and server.stats.ws_open == 1
        await trio.sleep(19)
        assert link.state == "connected"
        await trio.sleep(2)  # idle_close is 20 s
        assert link.status()["state"] == "idle"
        assert server.stats.ws_open == 0 and link.last_error == ""
        assert server.stats.idle_closes == 0  # we closed it, before the service would
        await trio.sleep(30)
        assert server.stats.connections == 1  # not reopened while nothing is said
        assert await collect(await link.request(command("two")))
        assert server.stats.connections == 2 and server.stats.auth_calls == 1


async def test_a_warm_up_connects_at_start(clock: trio.testing.MockClock) -> None:
    async with served(realistic(), warm_up=True) as (server, link):
        await until(lambda: link.state == "connected")
        assert server.stats.connections == 1 and server.stats.requests == 0


async def test_the_services_idle_close_is_not_an_error(clock: trio.testing.MockClock) -> None:
    async with served(realistic(idle_timeout=10.0), idle_close=0) as (server, link):
        await collect(await link.request(command("one")))
        await trio.sleep(11)
        assert server.stats.idle_closes == 1
        assert link.state == "idle"
        assert link.last_error == ""
        await trio.sleep(60)
        assert server.stats.connections == 1  # reopened on demand only
        assert await collect(await link.request(command("two")))
        assert server.stats.connections == 2 and server.stats.auth_calls == 1


# ---- backoff, Retry-After --------------------------------------------------------------------


async def test_retry_after_of_a_429_is_honoured(clock: trio.testing.MockClock) -> None:
    async with served(realistic(auth_rate=AuthRate(1, 60.0)), request_patience=300.0) as (
        server,
        link,
    ):
        await collect(await link.request(command("one")))
        server.faults.expire_tokens()
        link.restart()  # the kept URL is refused; the new auth call is one too many
        asked = trio.current_time()
        assert await collect(await link.request(command("two")))
        waited = trio.current_time() - asked
        stats = server.stats.snapshot()
        assert stats["auth_rate_limited"] == 1  # asked again only after Retry-After
        assert stats["auth_requests"] == 3
        assert waited >= 55  # Retry-After said about 60 s; the backoff alone is 0.5 s


async def test_a_reconnect_after_a_long_lived_connection_backs_off(
    clock: trio.testing.MockClock,
) -> None:
    server_settings = realistic(idle_timeout=0)  # the connection lives as long as we like
    async with served(server_settings, warm_up=True, idle_close=0, backoff_initial=4.0) as (
        server,
        link,
    ):
        await until(lambda: link.state == "connected")
        await trio.sleep(30)  # a connection that lived long (it used to reopen at once)
        server.faults.drop_after_bytes = 1
        with pytest.raises(LinkError):
            await collect(await link.request(command("one")))
        dropped = trio.current_time()
        assert server.stats.connections == 1
        reopened = await until(lambda: server.stats.connections == 2)
        assert reopened - dropped >= 3.0  # 4 s ± 25 % of jitter


# ---- answers: 2xx, Content-Type, models, error frames, request ids ------------------------


async def test_auth_any_2xx_and_content_type_and_retry_after() -> None:
    seen: list[httpx.Request] = []
    answers = iter(
        [
            httpx.Response(202, json={"webSocketUrls": {"Brand-New-Model": "wss://a/ws"}}),
            httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"}),
        ]
    )

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        result = await authenticate(http, "https://svc", KEY, USER)
        assert result.url_for("Brand-New-Model") == "wss://a/ws"
        with pytest.raises(RateLimited) as info:
            await authenticate(http, "https://svc", KEY, USER)
    assert info.value.retry_after == 7
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


def test_invalid_url_entries_are_skipped_and_named() -> None:
    answer = parse_auth_answer(
        {"webSocketUrls": {"Play3.0-mini": 5, "PlayDialog": None, "Custom-2": "wss://c/ws"}}
    )
    assert answer.websocket_urls == {"Custom-2": "wss://c/ws"}
    assert answer.skipped == ("Play3.0-mini", "PlayDialog")  # authenticate() logs them
    with pytest.raises(AuthError, match=r"no websocket for model 'Play3\.0-mini'"):
        answer.url_for("Play3.0-mini")
    with pytest.raises(AuthError, match="no websocket URLs"):
        parse_auth_answer({"webSocketUrls": {"Play3.0-mini": 5}})


async def test_a_model_the_service_does_not_offer_fails_at_once(
    clock: trio.testing.MockClock,
) -> None:
    async with served(realistic(), model="Not-Offered", request_patience=300.0) as (server, link):
        asked = trio.current_time()
        with pytest.raises(LinkError, match="no websocket for model 'Not-Offered'"):
            await link.request(command("one"))
        assert trio.current_time() - asked < 10  # not request_patience
        with pytest.raises(LinkError, match="no websocket for model"):
            await link.request(command("two"))
        assert server.stats.auth_calls == 1  # the kept answer said so again


async def test_an_error_fails_only_its_request_against_a_realistic_server(
    clock: trio.testing.MockClock,
) -> None:
    async with served(realistic()) as (server, link):
        server.faults.error_on_text = "boom"
        bad = await link.request(command("boom now"))
        good = await link.request(command("fine"))
        with pytest.raises(LinkError, match="the service said: synthesis failed"):
            await collect(bad)
        assert not bad.retriable
        assert await collect(good) == await server.render(text="fine", voice=VOICE)


async def test_a_reply_under_an_unknown_id_is_not_given_to_another(
    clock: trio.testing.MockClock,
) -> None:
    async with served(realistic(), first_audio_timeout=5.0) as (server, link):
        expected = await server.render(text="two", voice=VOICE)
        server.faults.misnumber_reply = "unknown"
        lost = await link.request(command("one"))
        fine = await link.request(command("two"))
        assert await collect(fine) == expected  # not one's audio
        with pytest.raises(LinkError, match="no audio from the TTS service within 5 s"):
            await collect(lost)  # fails after the timeout instead of hanging
        assert lost.retriable
        assert await collect(await link.request(command("two"))) == expected


async def test_a_service_that_sends_null_ids_is_followed_in_order(
    clock: trio.testing.MockClock,
) -> None:
    async with served(realistic()) as (server, link):
        server.faults.misnumber_reply = "null"
        reply = await link.request(command("one"))
        assert await collect(reply) == await server.render(text="one", voice=VOICE)


async def test_a_null_end_for_an_echoed_reply_is_not_matched(
    clock: trio.testing.MockClock,
) -> None:
    """Its end frame names no id though its start did: not taken as its end. The reply then
    fails cleanly: at the next reply's start (not retriable: it may have been heard), or after
    stall_timeout when none follows."""
    async with served(realistic(), stall_timeout=5.0) as (server, link):
        server.faults.misnumber_reply = "null-end"
        first = await link.request(command("one"))
        second = await link.request(command("two"))
        assert await collect(second) == await server.render(text="two", voice=VOICE)
        with pytest.raises(LinkError, match="never ended reply"):
            await collect(first)
        assert not first.retriable
        server.faults.misnumber_reply = "null-end"
        alone = await link.request(command("three"))
        with pytest.raises(LinkError, match="stopped sending"):
            await collect(alone)
        assert alone.retriable


# ---- language, end to end -----------------------------------------------------------------


async def test_language_reaches_the_service_from_speak_and_ssip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon (WAV output) against the realistic server: the `language` of a JSON speak
    and of SSIP's `SET self LANGUAGE` arrive in the TTS command on the wire."""
    frames: list[dict[str, Any]] = []
    parse = session_module.parse_command

    def recording(frame: str | bytes, model: Any) -> Any:
        frames.append(json.loads(frame))
        return parse(frame, model)

    monkeypatch.setattr(session_module, "parse_command", recording)
    ssip = tmp_path / "ssip.sock"
    async with open_local_server(realistic()) as server:
        config = Config(
            api=ApiConfig(url=server.base_url, api_key=KEY, user_id=USER),
            control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
            audio=AudioConfig(device=f"wav:{tmp_path}/out.wav"),
            ssip=SsipConfig(socket=str(ssip)),
        )
        async with open_daemon(config) as daemon:
            client = await LineClient.open(daemon.socket_path)
            status = (await client.command(cmd="status"))["status"]
            assert status["links"][0]["state"] == "idle"  # lazy: nothing said yet
            ident = await speak(client, "Bonjour.", language="french")
            events = await client.events_until_end({ident})
            assert events[-1]["event"] == "finished", events
            stream = await trio.open_unix_socket(str(ssip))
            await stream.send_all(
                b"SET self CLIENT_NAME test:economy:main\r\nSET self NOTIFICATION all on\r\n"
                b"SET self LANGUAGE fr\r\nSPEAK\r\n"
            )
            await stream.send_all(b"Salut.\r\n.\r\n")
            received = b""
            while b"702" not in received and b"703" not in received:  # END (or CANCEL)
                data = await stream.receive_some(4096)
                assert data, received
                received += data
            assert b"702" in received, received
            await stream.aclose()
    assert [f.get("language") for f in frames] == ["french", "fr"]
    assert server.stats.snapshot()["auth_requests"] == 1


async def test_model_names_do_not_grow_the_pool_without_bound(
    clock: trio.testing.MockClock,
) -> None:
    async with open_local_server(realistic()) as server, httpx.AsyncClient() as http:
        pool = LinkPool(LinkSettings(server.base_url, KEY, USER, warm_up=False), http)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            for n in range(MAX_MODELS - 1):
                await pool.get(f"Model-{n}")
            with pytest.raises(LinkError, match="too many different models"):
                await pool.get("One-More")
            assert (await pool.get(None)).settings.model == "Play3.0-mini"
            assert len(pool.status()) == MAX_MODELS
            assert server.stats.auth_calls == 0  # none asked anything: nothing connected
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("reconnect", [True, False], ids=["reconnect", "drain"])
async def test_an_interruption_costs_no_auth(
    clock: trio.testing.MockClock, reconnect: bool
) -> None:
    """Both ways to get rid of a reply still streaming (speech.interrupt_reconnect): reopen the
    websocket with the kept URL, or drain the reply on the same one."""
    async with served(realistic()) as (server, link):
        expected = await server.render(text="next", voice=VOICE)
        unwanted = await link.request(command("A long reply that nobody wants to hear. " * 5))
        assert await unwanted.receive()  # it streams
        if reconnect:
            unwanted.abandon()  # what the speaker does with an interrupted reply
        else:
            unwanted.discard()
        assert await collect(await link.request(command("next"))) == expected
        stats = server.stats.snapshot()
        assert stats["auth_requests"] == 1
        assert stats["ws_connections"] == (2 if reconnect else 1)


async def test_abandoning_a_reply_that_has_ended_keeps_the_connection(
    clock: trio.testing.MockClock,
) -> None:
    """Only a reply still streaming costs a reconnect: one whose end came is simply dropped."""
    async with served(realistic()) as (server, link):
        done = await link.request(command("short"))
        await collect(done)
        done.abandon()
        assert await collect(await link.request(command("next")))
        assert server.stats.snapshot()["ws_connections"] == 1


async def test_a_short_url_expiry_leaves_an_idle_link_alone(
    clock: trio.testing.MockClock,
) -> None:
    """URLs said to expire after 2 s: one request, then 32 s of nothing. The renewal is timed
    from a floor (link.MIN_RENEWAL_LIFETIME), not from the 2 s, and the idle link closes after
    idle_close (20 s) instead of being renewed, and its idle clock restarted, every 1.5 s."""
    async with served(realistic(token_lifetime=2.0, idle_timeout=0, auth_rate=None)) as (
        server,
        link,
    ):
        await collect(await link.request(command("one")))
        await trio.sleep(32)
        assert server.stats.auth_calls == 1
        assert link.status()["state"] == "idle" and server.stats.ws_open == 0
        # the next request opens a new connection, authenticating again (the URL expired)
        assert await collect(await link.request(command("two")))
        assert server.stats.auth_calls == 2
