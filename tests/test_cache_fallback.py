"""The phrase cache and the fallback voice through the real daemon, the real local server and
the test sound card: a phrase said twice costs one service request; with the server gone, a
cached phrase is still heard whole, an important one is heard in the local voice, and a
`text` one fails with a reason."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import trio

from playspeak.cache.store import PhraseStore
from playspeak.commands import MAX_WARMING_PER_CLIENT
from playspeak.config import (
    DEFAULT_VOICE,
    ApiConfig,
    AudioConfig,
    CacheConfig,
    Config,
    ControlConfig,
    FallbackConfig,
)
from playspeak.daemon import Daemon, open_daemon
from playspeak.localserver import LocalServer

from audio_compare import hearing, loud_span, reference_pcm
from daemon_helpers import (
    CONTENT_LATENCY,
    CONTENT_PREROLL_MS,
    ENDINGS,
    LineClient,
    daemon_process,
    device_underflows,
    say,
)
from soundcard import PulseNullSink, Recorder

KEY, USER = "cache-key-0123456789", "cache-user"


class Service:
    """The local server in a scope of its own, so that a test can kill it."""

    def __init__(self, server: LocalServer, scope: trio.CancelScope, gone: trio.Event) -> None:
        self.server, self.scope, self.gone = server, scope, gone

    async def kill(self) -> None:
        """Stop it; back once it has stopped, every connection of it closed."""
        self.scope.cancel()
        await self.gone.wait()

    async def tts_requests(self) -> int:
        async with httpx.AsyncClient() as client:
            stats = (await client.get(self.server.base_url + "/_local/stats")).json()
        return stats["tts_requests"]


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    server = LocalServer()
    server.settings = dataclasses.replace(
        server.settings, api_key=KEY, user_id=USER, first_byte_delay=0.02
    )
    async with trio.open_nursery() as nursery:
        scope, gone = trio.CancelScope(), trio.Event()

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    await server.run(task_status=task_status)
            finally:
                gone.set()

        await nursery.start(run)
        yield Service(server, scope, gone)
        nursery.cancel_scope.cancel()


def config_for(tmp_path: Path, service: Service, **fallback: object) -> Config:
    return Config(
        api=ApiConfig(url=service.server.base_url, api_key=KEY, user_id=USER, request_patience=1.0),
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(samplerate=48000, latency=CONTENT_LATENCY, preroll_ms=CONTENT_PREROLL_MS),
        cache=CacheConfig(dir=str(tmp_path / "cache")),
        fallback=FallbackConfig(after=1.0, **fallback),  # type: ignore[arg-type]
    )


@pytest.fixture
def daemon_config(tmp_path: Path, service: Service, sound_card: PulseNullSink) -> Config:
    return config_for(tmp_path, service)


async def test_a_phrase_said_twice_is_fetched_once(daemon: Daemon, service: Service) -> None:
    text = "The washing machine has finished."
    before = await service.tts_requests()
    first = await say(daemon.socket_path, text)
    second = await say(daemon.socket_path, text)
    assert await service.tts_requests() == before + 1
    assert first["started"]["source"] == first["finished"]["source"] == "service"
    assert second["started"]["source"] == second["finished"]["source"] == "cache"
    status = daemon.status()
    assert status["cache"]["entries"] == 1 and status["cache"]["bytes"] > 0


async def test_no_cache_opts_out(daemon: Daemon, service: Service) -> None:
    text = "Not to be kept."
    before = await service.tts_requests()
    await say(daemon.socket_path, text, cache=False)
    again = await say(daemon.socket_path, text)
    assert again["finished"]["source"] == "service"
    assert await service.tts_requests() == before + 2


CACHED = "Front door open."


# requested by name, not by usefixtures: pytest-trio runs only the async fixtures a test names
@pytest.fixture
async def service_gone(daemon: Daemon, service: Service) -> np.ndarray:
    """One phrase fetched (and cached), then the service killed: its connections close with
    it and reconnecting is refused from now on. The phrase's audio as the service made it."""
    expected = reference_pcm(await service.server.render(text=CACHED, voice=DEFAULT_VOICE))
    assert (await say(daemon.socket_path, CACHED))["finished"]["source"] == "service"
    await service.kill()
    return expected


async def test_with_the_service_gone_a_cached_phrase_is_heard_whole(
    daemon: Daemon, service_gone: np.ndarray, recorder: Recorder
) -> None:
    start = recorder.count
    again = await say(daemon.socket_path, CACHED, priority="text")
    assert again["finished"]["source"] == "cache"
    recorded = await recorder.heard(start)
    # From the cache it starts on an idle device within a few ms, its lead-in trimmed: compare
    # from its first loud sample on (the recorder's `start` lags the sink by its capture delay).
    spoken = service_gone[int(np.argmax(np.abs(service_gone[:, 0]) > 0.01)) :]
    cached_heard = hearing(recorded, spoken, device_underflows(daemon))
    assert cached_heard.whole, f"the cached phrase was not heard whole: {cached_heard}"


async def test_with_the_service_gone_an_important_message_is_heard_in_the_local_voice(
    daemon: Daemon, service_gone: np.ndarray, recorder: Recorder
) -> None:
    start = recorder.count
    alarm = await say(daemon.socket_path, "Water leak in the basement.", priority="important")
    assert alarm["started"]["source"] == alarm["finished"]["source"] == "fallback"
    assert loud_span(await recorder.heard(start)) > 48000 // 2  # over half a second of speech


async def test_with_the_service_gone_a_text_message_fails_with_a_reason(
    daemon: Daemon, service_gone: np.ndarray
) -> None:
    plain = await say(daemon.socket_path, "Nobody hears this.", priority="text")
    assert plain.names == ["queued", "failed"] and plain["failed"]["reason"]


async def test_with_the_service_still_gone_the_local_voice_does_not_wait_again(
    daemon: Daemon, service_gone: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    first = await say(daemon.socket_path, "Water leak in the basement.", priority="important")
    # fallback.after (1 s here) passed once before the local voice spoke
    assert first["started"]["t"] - first["queued"]["t"] >= 1.0
    second = await say(daemon.socket_path, "Smoke in the kitchen.", priority="message")
    assert second["finished"]["source"] == "fallback"
    # Still down since the last fallback: the local voice speaks without waiting fallback.after
    # again; its synthesis takes a fraction of that.
    assert second["started"]["t"] - second["queued"]["t"] < 1.0
    warnings = [r for r in caplog.records if "local voice until it is back" in r.getMessage()]
    assert len(warnings) == 1, "the log says once that the fallback is in use"


async def test_a_late_service_reply_is_not_played_after_the_fallback(
    daemon: Daemon, service: Service
) -> None:
    service.server.faults.stall_after_bytes = 0  # its start frame, then nothing until resumed
    client = await LineClient.open(daemon.socket_path)
    ident = (await client.command(cmd="speak", text="Garage door open.", priority="important"))[
        "id"
    ]
    first = await client.event()
    while first["event"] != "started":
        first = await client.event()
    assert first["source"] == "fallback"
    service.server.faults.resume_stalls()  # the service's audio now comes, too late
    events = [first, *await client.events_until_end({ident})]
    names = [e["event"] for e in events if e.get("id") == ident]
    assert names == ["started", "finished"], names
    assert events[-1]["source"] == "fallback"
    after = await say(daemon.socket_path, "And the service again.")
    assert after["finished"]["source"] == "service"


async def test_a_truncated_entry_is_fetched_again_not_played(
    tmp_path: Path, daemon: Daemon, service: Service
) -> None:
    text = "The dishwasher is done."
    assert (await say(daemon.socket_path, text))["finished"]["source"] == "service"
    [entry] = (tmp_path / "cache").glob("*.entry")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # as a crash might
    before = await service.tts_requests()
    again = await say(daemon.socket_path, text)
    assert again["started"]["source"] == again["finished"]["source"] == "service"
    assert await service.tts_requests() == before + 1
    assert daemon.status()["cache"]["damaged_dropped"] == 1
    assert (await say(daemon.socket_path, text))["finished"][
        "source"
    ] == "cache"  # stored whole again


async def test_a_cache_over_its_cap_shrinks_to_it(
    tmp_path: Path, service: Service, sound_card: PulseNullSink
) -> None:
    full = PhraseStore(tmp_path / "cache")
    full.open()
    for i in range(20):
        full.put(f"{i:064x}", bytes(50_000))
    assert full.stats()["bytes"] > 20 * 50_000
    config = config_for(tmp_path, service)
    config = dataclasses.replace(config, cache=dataclasses.replace(config.cache, max_bytes=300_000))
    async with open_daemon(config) as daemon:
        client = await LineClient.open(daemon.socket_path)
        cache = (await client.command(cmd="cache", action="stats"))["cache"]
        assert 0 < cache["bytes"] <= 300_000 and cache["entries"] == 5
        on_disk = sum(p.stat().st_size for p in (tmp_path / "cache").iterdir())
        assert on_disk == cache["bytes"]
        assert (await say(daemon.socket_path, "One more phrase."))["finished"][
            "source"
        ] == "service"
        status = (await client.command(cmd="status"))["status"]["cache"]
        assert status["bytes"] <= 300_000


async def test_cache_warm_makes_phrases_work_offline(
    tmp_path: Path, daemon: Daemon, service: Service
) -> None:
    phrases = ["Front door open.", "The washing machine has finished."]
    (tmp_path / "phrases.txt").write_text("\n".join(phrases) + "\n\n")
    env = {**os.environ, "PLAYSPEAK_SOCKET": str(daemon.socket_path)}
    command = [sys.executable, "-m", "playspeak", "cache", "warm", str(tmp_path / "phrases.txt")]
    before = await service.tts_requests()
    warm = await trio.run_process(command, env=env, capture_stdout=True, capture_stderr=True)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.decode().splitlines() == [f"stored\t{p}" for p in phrases]
    assert await service.tts_requests() == before + 2
    again = await trio.run_process(command, env=env, capture_stdout=True)
    assert again.stdout.decode().splitlines() == [f"cached\t{p}" for p in phrases]

    await service.kill()
    for phrase in phrases:
        events = await say(daemon.socket_path, phrase, priority="text")
        assert events["finished"]["source"] == "cache"

    stats = await trio.run_process(
        [sys.executable, "-m", "playspeak", "cache", "stats"], env=env, capture_stdout=True
    )
    assert json.loads(stats.stdout)["cache"]["entries"] == 2
    cleared = await trio.run_process(
        [sys.executable, "-m", "playspeak", "cache", "clear"], env=env, capture_stdout=True
    )
    assert json.loads(cleared.stdout) == {"cleared": 2}
    assert daemon.status()["cache"]["entries"] == 0


async def test_a_fifo_in_place_of_an_entry_neither_freezes_speech_nor_the_stop(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    # The embedded server, not the direct local voice: only a service's replies are cached.
    config = tmp_path / "playspeak.toml"
    config.write_text('[local_server]\nembedded = "server"\n')
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "PLAYSPEAK_CONFIG": str(config)}
    async with daemon_process(tmp_path, env) as daemon:
        client = await LineClient.open(daemon.socket_path)
        text = "The post has come."
        with trio.fail_after(20):
            first = await speak_and_end(client, text)
            assert first["source"] == "service"
            [entry] = (tmp_path / "xdg" / "playspeak").glob("*.entry")
            entry.unlink()
            os.mkfifo(entry)  # nobody writes it: reading it would wait for ever
            again = await speak_and_end(client, text)
            assert (again["event"], again["source"]) == ("finished", "service")
        daemon.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await daemon.process.wait() == 0


async def speak_and_end(client: LineClient, text: str) -> dict:
    ident = (await client.command(cmd="speak", text=text))["id"]
    [end] = [e for e in await client.events_until_end({ident}) if e["event"] in ENDINGS]
    return end


async def test_a_cache_directory_others_may_write_turns_the_cache_off_not_the_speech(
    tmp_path: Path, service: Service, sound_card: PulseNullSink, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "cache").mkdir(mode=0o777)
    (tmp_path / "cache").chmod(0o777)  # past the umask
    async with open_daemon(config_for(tmp_path, service)) as daemon:
        text = "Someone is at the front door."
        for _ in range(2):
            said = await say(daemon.socket_path, text)
            assert said["finished"]["source"] == "service"
        assert daemon.status()["cache"] == {"enabled": False}
    [warning] = [r.getMessage() for r in caplog.records if "phrase cache off" in r.getMessage()]
    assert "has mode 0777: other users may write to it" in warning
    assert list((tmp_path / "cache").iterdir()) == []


async def test_many_warm_requests_neither_pile_up_nor_hold_up_speech(
    daemon: Daemon, service: Service
) -> None:
    """150 `cache warm` requests on one connection: beyond commands.MAX_WARMING_PER_CLIENT in
    flight each is refused with the reason (nothing is dropped unsaid), and a `text` say on
    another connection is heard behind at most one warm reply, not behind all of them."""
    warmer = await LineClient.open(daemon.socket_path)
    replies = [
        await warmer.command(cmd="cache", action="warm", text=f"Phrase number {n}.")
        for n in range(150)
    ]
    accepted = [r for r in replies if r["event"] == "ok"]
    refused = [r for r in replies if r["event"] == "error"]
    # A warm request that finished while the 150 went out freed its place (its `warmed` came
    # before a later reply; seen once on a loaded machine): never more than the share in flight.
    early = sum(e["event"] == "warmed" for e in warmer.backlog)
    assert len(accepted) == MAX_WARMING_PER_CLIENT + early
    assert len(refused) == 150 - len(accepted)
    assert all("in flight" in r["error"] for r in refused)
    with trio.fail_after(10):  # 150 warm replies first would take over a minute
        events = await say(daemon.socket_path, "Speech goes first.", priority="text")
    assert events["finished"]["source"] == "service"
    warmed = []
    with trio.fail_after(20):
        while len(warmed) < len(accepted):
            if (event := await warmer.event())["event"] == "warmed":
                warmed.append(event["result"])
    assert warmed == ["stored"] * len(accepted)
    # their `warmed` events free the client's share again
    assert (await warmer.command(cmd="cache", action="warm", text="One more."))["event"] == "ok"


async def test_the_fallback_voice_says_the_ssml_and_the_style_a_service_is_sent() -> None:
    """Standing in for the service, the local voice says what the service was sent: the SSML
    beside the words (sources.py) with its break, and the pitch."""
    from playspeak.fallback import FallbackVoice

    voice = FallbackVoice(after=1.0, priorities=("important",))
    words = "Front door, back door."
    base = {"voice": DEFAULT_VOICE, "speed": 1.0, "output_format": "raw", "sample_rate": 24000}
    plain = await voice.render({**base, "text": words})
    markup = '<speak>Front door, <break time="1s"/> back door.</speak>'
    unbroken = await voice.render({**base, "text": words, "ssml": f"<speak>{words}</speak>"})
    broken = await voice.render({**base, "text": words, "ssml": markup})
    assert abs(len(unbroken) - len(plain)) < 0.05 * 2 * 24000  # the words alone, as said
    assert 0.8 <= (len(broken) - len(unbroken)) / 2 / 24000 <= 1.2
    low, high = [await voice.render({**base, "text": words, "pitch": p}) for p in (-80, 80)]
    assert low != high and low != plain
