"""A stalled TTS service does not silence the house: through the real daemon, a reply that brings
no audio (or stops) is asked for again on a fresh connection, or fails with the reason; a
SIGSTOPped server costs the stall timeout and one reconnect, and the status says "stalled"."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from playspeak.config import ApiConfig, AudioConfig, Config, ControlConfig, SpeechConfig
from playspeak.daemon import open_daemon
from playspeak.localserver import LocalServer, open_local_server

from daemon_helpers import DaemonProcess, LineClient, daemon_process, say

KEY, USER = "stall-test-key-0123", "stall-test-user"
TEXT = "Nobody should wait for a service that has stopped talking."
# 5.8 s of the generated voice, streamed at real time: still mid-reply when the SIGSTOP comes
LONG = "A long announcement that takes many seconds to stream at the pace of real time."


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with open_local_server(api_key=KEY, user_id=USER, first_byte_delay=0.02) as s:
        yield s


def config_for(tmp_path: Path, server: LocalServer, max_attempts: int = 3) -> Config:
    return Config(
        api=ApiConfig(
            url=server.base_url,
            api_key=KEY,
            user_id=USER,
            first_audio_timeout=1.0,
            stall_timeout=1.0,
        ),
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(device=f"wav:{tmp_path}/out.wav"),
        speech=SpeechConfig(max_attempts=max_attempts),
    )


@pytest.mark.parametrize("offset", [0, 2000], ids=["before the first byte", "mid-reply"])
async def test_a_stalled_reply_is_asked_for_again_and_finishes(
    tmp_path: Path, server: LocalServer, offset: int
) -> None:
    server.faults.stall_after_bytes = offset  # once
    async with open_daemon(config_for(tmp_path, server)) as daemon:
        end = (await say(daemon.socket_path, TEXT)).ending
        assert end["event"] == "finished", end
        link = daemon.status()["links"][0]
        assert (link["stalls"], link["state"], link["connections"]) == (1, "connected", 2)
    assert server.stats.stalls == 1


async def test_when_every_attempt_stalls_the_utterance_fails_with_the_reason(
    tmp_path: Path, server: LocalServer
) -> None:
    server.faults.stall_after_bytes = 0
    async with open_daemon(config_for(tmp_path, server, max_attempts=1)) as daemon:
        # `text`: a priority the fallback voice does not cover (test_cache_fallback.py)
        end = (await say(daemon.socket_path, TEXT, priority="text")).ending
        assert end["event"] == "failed"
        assert end["reason"] == "no audio from the TTS service within 1 s"
        server.faults.resume_stalls()
        assert (await say(daemon.socket_path, "Back to normal.")).ending["event"] == "finished"


# ---- a real SIGSTOP of a separate server process -------------------------------------------------

STALL, CONNECT = 2.0, 3.0  # api.stall_timeout (= first_audio_timeout), api.connect_timeout


@asynccontextmanager
async def server_process() -> AsyncIterator[tuple[trio.Process, str]]:
    """`playspeak serve-local` as its own process (paced at real time); yields it and its URL."""
    command = [sys.executable, "-m", "playspeak", "serve-local", "--port", "0"]
    command += ["--synth", "generated", "--realtime-factor", "1", "--first-byte-delay", "0.05"]
    env = {**os.environ, "PLAYAI_API_KEY": KEY, "PLAYAI_USER_ID": USER}
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(command, env=env, stderr=-1)
        assert process.stderr is not None
        url: trio.MemorySendChannel[str]
        url, got_url = trio.open_memory_channel[str](1)

        async def drain() -> None:  # read the log all along: a full pipe would stop the server
            buffer = b""
            async for data in process.stderr:
                buffer += data
                if url is not None and (found := re.search(rb"on (http://[\d.]+:\d+)", buffer)):
                    url.send_nowait(found[1].decode())
                    url.close()
                    break
            async for _ in process.stderr:
                pass

        nursery.start_soon(drain)
        try:
            with trio.fail_after(30):
                yield process, await got_url.receive()
        finally:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            await process.wait()


def stall_config(tmp_path: Path, url: str) -> dict[str, str]:
    config = tmp_path / "playspeak.toml"
    config.write_text(
        f"[api]\nfirst_audio_timeout = {STALL}\nstall_timeout = {STALL}\n"
        f"connect_timeout = {CONNECT}\nrequest_patience = 60.0\n"
    )
    return {
        "PLAYSPEAK_CONFIG": str(config),
        "PLAYSPEAK_API_URL": url,
        "PLAYAI_API_KEY": KEY,
        "PLAYAI_USER_ID": USER,
        "PLAYSPEAK_DEVICE": f"wav:{tmp_path}/out.wav",
    }


async def stopped_mid_utterance(
    daemon: DaemonProcess, process: trio.Process
) -> tuple[LineClient, str, float]:
    """A long utterance started, then its server SIGSTOPped mid-reply: the client, the
    utterance's id, and when the server stopped (monotonic)."""
    client = await LineClient.open(daemon.socket_path)
    utterance = (await client.command(cmd="speak", text=LONG))["id"]
    await client.wait_for("started")
    process.send_signal(signal.SIGSTOP)
    return client, utterance, time.monotonic()


async def test_a_sigstopped_server_that_stays_stopped_fails_the_utterance_soon(
    tmp_path: Path,
) -> None:
    """Not after request_patience (60 s) nor never: after the stall timeout and one attempt to
    reach the service again (its connect_timeout)."""
    async with (
        server_process() as (process, url),
        daemon_process(tmp_path, stall_config(tmp_path, url)) as daemon,
    ):
        client, utterance, stopped = await stopped_mid_utterance(daemon, process)
        lines = await client.events_until_end({utterance})
        cost = time.monotonic() - stopped
        end = lines[-1]
        assert end["event"] == "failed", lines
        assert end["reason"].startswith("the TTS service stalled and did not answer again")
        print(f"a SIGSTOPped server cost {cost:.1f} s (stall {STALL} s + connect {CONNECT} s)")
        assert cost < STALL + CONNECT + 10  # far from request_patience, and loose on timing
        status = (await client.command(cmd="status"))["status"]
        assert status["links"][0]["stalls"] == 1


async def test_a_sigstopped_server_that_continues_gets_the_utterance_replayed(
    tmp_path: Path,
) -> None:
    async with (
        server_process() as (process, url),
        daemon_process(tmp_path, stall_config(tmp_path, url)) as daemon,
    ):
        client, utterance, stopped = await stopped_mid_utterance(daemon, process)
        while "STATUS=stalled" not in await daemon.next_notification():
            pass  # systemd hears of it (STATUS=)
        link = (await client.command(cmd="status"))["status"]["links"][0]
        assert link["state"] == "stalled", link
        assert link["last_error"] == "the TTS service stopped sending mid-reply (nothing for 2 s)"
        print(f"status: stalled {time.monotonic() - stopped:.1f} s after the SIGSTOP")
        process.send_signal(signal.SIGCONT)  # within the reconnect's connect_timeout
        lines = await client.events_until_end({utterance})
        assert lines[-1]["event"] == "finished", lines
        link = (await client.command(cmd="status"))["status"]["links"][0]
        assert (link["state"], link["stalls"], link["connections"]) == ("connected", 1, 2)


async def test_an_idle_link_to_a_sigstopped_server_is_found_dead_by_its_pings(
    tmp_path: Path,
) -> None:
    env = stall_config(tmp_path, "")
    Path(env["PLAYSPEAK_CONFIG"]).write_text("[api]\nping_interval = 1.0\nconnect_timeout = 2.0\n")
    async with server_process() as (process, url):
        env["PLAYSPEAK_API_URL"] = url
        async with daemon_process(tmp_path, env) as daemon:
            client = await LineClient.open(daemon.socket_path)
            assert (await say(daemon.socket_path, "Connected.")).ending["event"] == "finished"
            process.send_signal(signal.SIGSTOP)  # idle: no reply is pending
            # Without pings the idle link would stay "connected" to the frozen server forever.
            while "the TTS service" not in await daemon.next_notification():
                pass  # STATUS=connecting to / reconnecting to the TTS service
            link = (await client.command(cmd="status"))["status"]["links"][0]
            assert link["state"] in ("connecting", "reconnecting") and link["stalls"] == 0
            process.send_signal(signal.SIGCONT)
            assert (await say(daemon.socket_path, "Back.")).ending["event"] == "finished"
