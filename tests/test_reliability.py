"""Reliability through real faults: dropped websockets, refused credentials, error frames,
corrupt audio, a sound server that dies and comes back, and the daemon's signals."""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import trio

from playspeak.audio.player import IDLE_CHECK_SECONDS
from playspeak.config import (
    DEFAULT_VOICE,
    ApiConfig,
    AudioConfig,
    Config,
    ControlConfig,
    SpeechConfig,
)
from playspeak.daemon import Daemon, open_daemon
from playspeak.localserver import LocalServer, open_local_server
from playspeak.speaker import REPLY_BASE_SECONDS, REPLY_SECONDS_PER_CHAR, reply_limit
from playspeak.speech import Utterance

from audio_compare import hearing, loud, reference_pcm
from daemon_helpers import (
    CONTENT_LATENCY,
    CONTENT_PREROLL_MS,
    ENDINGS,
    LineClient,
    daemon_process,
    device_underflows,
)
from soundcard import RATE, PulseNullSink, Recorder

KEY, USER = "reliability-key-0123", "reliability-user"
TEXT = "A sentence long enough to be cut in the middle by a dropped connection."


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with open_local_server(api_key=KEY, user_id=USER, first_byte_delay=0.02) as s:
        yield s


def config_for(tmp_path: Path, server: LocalServer, **api: object) -> Config:
    return Config(
        api=ApiConfig(url=server.base_url, api_key=KEY, user_id=USER, **api),
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(samplerate=48000, latency=CONTENT_LATENCY, preroll_ms=CONTENT_PREROLL_MS),
    )


@pytest.fixture
def daemon_config(tmp_path: Path, server: LocalServer, sound_card: PulseNullSink) -> Config:
    return config_for(tmp_path, server, request_patience=2.0)


async def say_all(daemon: Daemon, *texts: str, **fields: object) -> dict[str, dict]:
    """Speak each text; the ending event of each, by text. The failures below are of the
    `text` priority, which the fallback voice does not cover (test_cache_fallback.py)."""
    client = await LineClient.open(daemon.socket_path)
    ids = {}
    for text in texts:
        ids[(await client.command(cmd="speak", text=text, **fields))["id"]] = text
    lines = await client.events_until_end(set(ids))
    return {ids[e["id"]]: e for e in lines if e["event"] in ENDINGS}


async def test_a_connection_dropped_mid_utterance_is_replayed(
    daemon: Daemon, server: LocalServer
) -> None:
    server.faults.drop_after_bytes = 5000  # once: mid-way through the first reply
    ends = await say_all(daemon, TEXT, "Queued behind it.", "And one more.")
    assert {t: e["event"] for t, e in ends.items()} == dict.fromkeys(ends, "finished")
    assert server.stats.connections == 2


async def test_a_request_cancelled_while_the_link_connects_is_never_sent(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    """Cancelled before it could be asked for, an utterance is not asked for once the
    connection is up: its reply would be streamed in full ahead of the next one's."""
    async with (
        open_local_server(api_key=KEY, user_id=USER, connect_delay=1.0) as server,
        open_daemon(config_for(tmp_path, server)) as daemon,
    ):
        ends = await say_all(daemon, "Never asked for.", "Asked for.", priority="text")
    assert ends["Never asked for."]["event"] == "cancelled"
    assert ends["Asked for."]["event"] == "finished"
    assert server.stats.requests == 1


async def test_an_error_frame_fails_only_its_utterance(daemon: Daemon, server: LocalServer):
    server.faults.error_on_text = "poison"
    ends = await say_all(daemon, "This is poison.", priority="text")
    ends.update(await say_all(daemon, "This is fine."))
    assert ends["This is poison."]["event"] == "failed"
    assert "synthesis failed (injected)" in ends["This is poison."]["reason"]
    assert ends["This is fine."]["event"] == "finished"
    assert server.stats.connections == 1


async def test_corrupt_audio_mid_reply_is_passed_over_and_the_utterance_finishes(
    daemon: Daemon, server: LocalServer, recorder: Recorder
) -> None:
    server.faults.corrupt_after_bytes = 3000  # random bytes after 0.19 s of 128 kbit/s MP3
    ends = await say_all(daemon, TEXT)
    # the decoder drops what it cannot parse and resyncs on the next frame header, if any: once
    # a reply has given audio, damage later in it never fails the utterance (mp3.py)
    assert ends[TEXT]["event"] == "finished", ends[TEXT]
    # the clean audio before the damage was played
    assert len(loud(await recorder.heard())) >= 0.1 * RATE
    mark = recorder.count
    ends = await say_all(daemon, "Afterwards all is well.")
    assert ends["Afterwards all is well."]["event"] == "finished"
    heard = await recorder.heard(mark)
    expected = reference_pcm(
        await server.render(text="Afterwards all is well.", voice=DEFAULT_VOICE)
    )
    # The MP3's encoder delay puts ~45 ms of near-silence before its speech, more than the
    # daemon may take to first sound after `mark`: lead the recording with silence, so that
    # the lag searched for cannot be negative.
    lead = np.zeros(RATE // 10, dtype=heard.dtype)
    afterwards = hearing(np.concatenate([lead, heard]), expected, device_underflows(daemon))
    assert afterwards.whole, afterwards


async def test_a_reply_with_no_decodable_audio_fails_naming_it(
    daemon: Daemon, server: LocalServer
) -> None:
    server.faults.corrupt_after_bytes = 0  # random bytes from the first on: no MP3 at all
    ends = await say_all(daemon, TEXT * 3)  # past mp3.GIVE_UP_BYTES of them
    assert ends[TEXT * 3]["event"] == "failed", ends[TEXT * 3]
    assert ends[TEXT * 3]["reason"].startswith("undecodable audio: no MP3 audio"), ends[TEXT * 3]
    after = await say_all(daemon, "Afterwards all is well.")
    assert after["Afterwards all is well."]["event"] == "finished"


async def test_refused_credentials_fail_waiting_utterances_then_recover(
    daemon: Daemon, server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await say_all(daemon, "Connected."))["Connected."]["event"] == "finished"
    server.faults.reject_auth = True
    server.faults.expire_tokens()  # the kept websocket URL is refused: auth is asked again
    server.faults.drop_after_requests = 1  # the open connection ends; re-auth is refused
    ends = await say_all(daemon, "Nobody will hear this.", priority="text")
    event = ends["Nobody will hear this."]
    assert event["event"] == "failed" and "refused the credentials" in event["reason"]
    refusals = [
        r
        for r in caplog.records
        if r.name == "playspeak.playai.link"
        and "refused the credentials" in r.getMessage()
        and r.levelname == "WARNING"
    ]
    assert len(refusals) == 1, "one clear line from the link, not one per retry"
    assert KEY not in caplog.text and USER not in caplog.text
    server.faults.reject_auth = False
    # It comes back by itself once its backoff (grown while refused) next tries: until then
    # each attempt fails after the 2 s patience, with the reason.
    with trio.fail_after(60):
        while (ends := await say_all(daemon, "Back again.", priority="text"))["Back again."][
            "event"
        ] != "finished":
            assert "refused the credentials" in ends["Back again."]["reason"]


@pytest.fixture
def doomed_card() -> Iterator[PulseNullSink]:
    """A sound server of its own that a test may kill; the environment points at it."""
    card = PulseNullSink(sink="doomed")
    card.start()
    saved = {k: os.environ.get(k) for k in card.env}
    os.environ.update(card.env)
    try:
        yield card
    finally:
        card.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def test_a_lost_sound_server_is_reported_and_speech_resumes_when_it_returns(
    tmp_path: Path, server: LocalServer, doomed_card: PulseNullSink
) -> None:
    async with open_daemon(config_for(tmp_path, server)) as daemon:
        watcher = await LineClient.open(daemon.socket_path)
        await watcher.command(cmd="subscribe")
        client = await LineClient.open(daemon.socket_path)
        # Long enough (about 12 s) that it cannot have been played out before the loss is
        # detected (up to 2 s after the server dies, while the callback may still run).
        first = (await client.command(cmd="speak", text=" ".join([TEXT] * 3)))["id"]
        second = (await client.command(cmd="speak", text="After the outage."))["id"]
        await watcher.wait_for("started")
        doomed_card.stop()  # the sound server dies mid-sentence
        lost = await watcher.wait_for("device")
        assert lost["state"] == "lost"
        assert daemon.status()["device"]["state"] == "lost"
        with sound_server_back() as recorder:
            opened = await watcher.wait_for("device")
            assert opened["state"] == "open"
            lines = await client.events_until_end({first, second})
            ends = {e["id"]: e for e in lines if e["event"] in ENDINGS}
            assert ends[first]["event"] == "failed", [(e["event"], e.get("reason")) for e in lines]
            assert ends[first]["reason"].startswith("audio device lost: "), ends[first]  # its cause
            assert ends[second]["event"] == "finished"
            expected = reference_pcm(
                await server.render(text="After the outage.", voice=DEFAULT_VOICE)
            )
            after = hearing(await recorder.heard(), expected, device_underflows(daemon))
            assert after.whole, after


@contextmanager
def sound_server_back() -> Iterator[Recorder]:
    """A new sound server in place of the one that died (the environment points at it, so a
    reopened stream finds it), recorded from before the daemon can reopen its device."""
    back = PulseNullSink(sink="back")
    back.start()
    try:
        os.environ.update(back.env)
        with back.recorder() as recorder:
            yield recorder
    finally:
        back.stop()


async def test_speech_sent_while_the_sound_server_is_down_waits_for_it(
    tmp_path: Path, server: LocalServer, doomed_card: PulseNullSink
) -> None:
    """The daemon is idle (no stream open) when the sound server dies: an announcement sent
    then is not failed at the first attempt to open the device but waits with the queue, and
    both it and the one behind it are heard, each ending once, when the server is back."""
    texts = ["Sent during the outage.", "Queued behind it."]
    async with open_daemon(config_for(tmp_path, server)) as daemon:
        watcher = await LineClient.open(daemon.socket_path)
        await watcher.command(cmd="subscribe")
        client = await LineClient.open(daemon.socket_path)
        doomed_card.stop()
        ids = [(await client.command(cmd="speak", text=t))["id"] for t in texts]
        assert (await watcher.wait_for("device"))["state"] == "lost"
        assert daemon.status()["device"]["state"] == "lost"
        with sound_server_back() as recorder:
            assert (await watcher.wait_for("device"))["state"] == "open"
            lines = await client.events_until_end(set(ids))
            outcomes = [(e["id"], e["event"]) for e in lines if e["event"] in ENDINGS]
            assert outcomes == [(i, "finished") for i in ids], lines
            assert [e["id"] for e in lines if e["event"] == "started"] == ids
            heard = await recorder.heard()
            for text in texts:
                expected = reference_pcm(await server.render(text=text, voice=DEFAULT_VOICE))
                heard_text = hearing(heard, expected, device_underflows(daemon))
                assert heard_text.whole, (text, str(heard_text))


async def test_status_tells_a_sound_server_gone_while_idle(
    tmp_path: Path, server: LocalServer, doomed_card: PulseNullSink
) -> None:
    """No speech at all: the idle device is checked (audio.player.IDLE_CHECK_SECONDS), so
    `status` and the subscribers learn that it is gone, and that it is back."""
    async with open_daemon(config_for(tmp_path, server)) as daemon:
        watcher = await LineClient.open(daemon.socket_path)
        await watcher.command(cmd="subscribe")
        assert daemon.status()["device"]["state"] == "open"
        doomed_card.stop()
        with trio.fail_after(3 * IDLE_CHECK_SECONDS):
            assert (await watcher.wait_for("device"))["state"] == "lost"
        assert daemon.status()["device"]["state"] == "lost"
        with sound_server_back():
            assert (await watcher.wait_for("device"))["state"] == "open"
            assert daemon.status()["device"]["state"] == "open"


async def test_a_reply_that_never_ends_fails_and_frees_the_queue(
    tmp_path: Path, server: LocalServer, sound_card: PulseNullSink
) -> None:
    """The service's audio for one text repeats for ever: past speech.max_reply_seconds the
    utterance fails with the reason, nothing of it is cached, and the next one is heard."""
    server.faults.endless_on_text = "for ever"
    config = dataclasses.replace(
        config_for(tmp_path, server), speech=SpeechConfig(max_reply_seconds=1.5)
    )
    async with open_daemon(config) as daemon:
        with trio.fail_after(20):
            ends = await say_all(daemon, "This goes on for ever.", priority="text")
            event = ends["This goes on for ever."]
            assert event["event"] == "failed", event
            assert "passed 1.5 s of audio (speech.max_reply_seconds)" in event["reason"]
            assert daemon.status()["cache"]["entries"] == 0
            after = await say_all(daemon, "After it.")
        assert after["After it."]["event"] == "finished"


def test_a_reply_is_bounded_by_its_text_unless_configured() -> None:
    short = Utterance("Hello.", {"speed": 1.0})
    assert reply_limit(short, 0.0) == REPLY_BASE_SECONDS + 6 * REPLY_SECONDS_PER_CHAR
    assert reply_limit(Utterance("Hello.", {"speed": 0.5}), 0.0) == 2 * reply_limit(short, 0.0)
    assert reply_limit(short, 12.0) == 12.0


async def test_sigterm_cancels_pending_utterances_and_exits_cleanly(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    async with daemon_process(tmp_path) as daemon:
        client = await LineClient.open(daemon.socket_path)
        ids = [(await client.command(cmd="speak", text=f"Pending {n}."))["id"] for n in range(3)]
        daemon.process.send_signal(signal.SIGTERM)
        lines = await client.events_until_end(set(ids))
        ends = {e["id"]: e for e in lines if e["event"] in ENDINGS}
        # none can have finished: the signal comes before the first one's audio could have
        # played out (on_shutdown = "cancel", the default)
        assert {i: (e["event"], e.get("reason")) for i, e in ends.items()} == dict.fromkeys(
            ids, ("cancelled", "daemon stopping")
        )
        assert await daemon.process.wait() == 0
        assert "STOPPING=1" in await daemon.next_notification()
    assert not daemon.socket_path.exists()


async def test_sighup_reloads_the_configuration_and_keeps_the_queue(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    config = tmp_path / "playspeak.toml"
    config.write_text('[speech]\ndefault_priority = "message"\n')
    async with daemon_process(tmp_path, {"PLAYSPEAK_CONFIG": str(config)}) as daemon:
        client = await LineClient.open(daemon.socket_path)
        queued = [(await client.command(cmd="speak", text=f"Kept {n}."))["id"] for n in range(2)]
        config.write_text('[speech]\ndefault_priority = "important"\n[log]\nlevel = "debug"\n')
        daemon.process.send_signal(signal.SIGHUP)
        notes = [await daemon.next_notification()]
        while "READY=1" not in notes[-1]:  # reloaded (`systemctl reload` waits for this)
            notes.append(await daemon.next_notification())
        assert any("RELOADING=1" in n for n in notes), notes
        # ... while the second was still waiting its turn
        status = (await client.command(cmd="status"))["status"]
        assert queued[1] in [u["id"] for u in status["queue"]], status
        lines = await client.events_until_end(set(queued))
        assert [e["event"] for e in lines if e["event"] in ENDINGS] == ["finished", "finished"]
        # Reloaded: a plain line now has the new default priority (important interrupts).
        long = await client.command(cmd="speak", text="A long message " * 8, priority="text")
        await client.wait_for("started")
        urgent = await client.command(cmd="speak", text="Urgent.")
        lines = await client.events_until_end({long["id"], urgent["id"]})
        ends = {e["id"]: e["event"] for e in lines if e["event"] in ENDINGS}
        assert ends == {long["id"]: "cancelled", urgent["id"]: "finished"}


async def test_sighup_with_a_file_that_is_not_utf8_mid_utterance_keeps_the_old_configuration(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    config = tmp_path / "playspeak.toml"
    config.write_text('[speech]\ndefault_priority = "message"\n')
    log = tmp_path / "daemon.log"
    async with daemon_process(tmp_path, {"PLAYSPEAK_CONFIG": str(config)}, stderr=log) as daemon:
        client = await LineClient.open(daemon.socket_path)
        speaking = (await client.command(cmd="speak", text="A long message " * 4))["id"]
        await client.wait_for("started")
        config.write_bytes(b'[speech]\ndefault_priority = "important"\n# caf\xe9\n')
        daemon.process.send_signal(signal.SIGHUP)
        while "READY=1" not in await daemon.next_notification():  # RELOADING=1 first
            pass
        lines = await client.events_until_end({speaking})
        assert [e["event"] for e in lines if e["event"] in ENDINGS] == ["finished"]
        assert (await client.command(cmd="ping"))["event"] == "ok"
    said = log.read_text()
    assert "kept the old configuration" in said
    assert f"{config}, line 3: configuration is not UTF-8 (column 6)" in said
    assert "Traceback" not in said


async def test_an_unreachable_service_fails_utterances_but_not_the_daemon(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    """Nothing listens at the API URL: the link keeps retrying, utterances fail after the
    configured patience with the reason, and the daemon keeps serving."""
    with trio.socket.socket() as placeholder:  # a port that surely refuses connections
        await placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    config = Config(
        api=ApiConfig(
            url=f"http://127.0.0.1:{port}", api_key=KEY, user_id=USER, request_patience=1.0
        ),
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(samplerate=48000),
    )
    async with open_daemon(config) as daemon:
        ends = await say_all(daemon, "Is anybody there?", priority="text")
        event = ends["Is anybody there?"]
        assert event["event"] == "failed" and "cannot reach" in event["reason"]
        client = await LineClient.open(daemon.socket_path)
        status = (await client.command(cmd="status"))["status"]
        assert status["links"][0]["state"] == "reconnecting"


async def test_sigterm_with_on_shutdown_finish_says_what_is_pending_first(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    config = tmp_path / "playspeak.toml"
    config.write_text('[speech]\non_shutdown = "finish"\nshutdown_timeout = 30.0\n')
    async with daemon_process(tmp_path, {"PLAYSPEAK_CONFIG": str(config)}) as daemon:
        client = await LineClient.open(daemon.socket_path)
        ids = [(await client.command(cmd="speak", text=f"Last words {n}."))["id"] for n in (1, 2)]
        daemon.process.send_signal(signal.SIGTERM)
        lines = await client.events_until_end(set(ids))
        assert [e["event"] for e in lines if e["event"] in ENDINGS] == ["finished", "finished"]
        assert await daemon.process.wait() == 0


async def test_a_second_sigterm_while_finishing_stops_at_once_and_cleanly(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    """SIGTERM in finish mode waits for what is pending; a second SIGTERM means "now": the rest
    is cancelled with a reason and the exit is still clean (0, not death by the signal: 143)."""
    config = tmp_path / "playspeak.toml"
    config.write_text('[speech]\non_shutdown = "finish"\nshutdown_timeout = 600.0\n')
    async with daemon_process(tmp_path, {"PLAYSPEAK_CONFIG": str(config)}) as daemon:
        client = await LineClient.open(daemon.socket_path)
        long = "A long goodbye that would take minutes to say in full. " * 20
        ids = [(await client.command(cmd="speak", text=t))["id"] for t in (long, "And more.")]
        await client.wait_for("started")
        daemon.process.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in await daemon.next_notification():
            pass  # the first one is being handled: finishing
        daemon.process.send_signal(signal.SIGTERM)
        lines = await client.events_until_end(set(ids))
        ends = {e["id"]: e for e in lines if e["event"] in ENDINGS}
        assert [ends[i]["event"] for i in ids] == ["cancelled", "cancelled"]
        assert {ends[i]["reason"] for i in ids} == {"daemon stopping"}
        assert await daemon.process.wait() == 0
