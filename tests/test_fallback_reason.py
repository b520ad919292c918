"""A refused API key is named to the user: through the real daemon and a real local server whose
every auth call answers 401 (`serve-local --auth-status 401`), the fallback voice's events say
why it speaks (`fallback_reason`, a contract), `say --wait` prints that on stderr, a `text`
message (which the fallback does not cover) fails at once with the 401, and with espeak-ng
missing too the failure still names the 401 (or an installed Piper voice speaks instead); the
direct local voice without espeak-ng says on every event that it speaks a murmur."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from playspeak.config import ApiConfig, AudioConfig, Config, ControlConfig, FallbackConfig
from playspeak.daemon import Daemon, open_daemon
from playspeak.engines import MURMUR, piper
from playspeak.localserver import LocalServer, open_local_server

from daemon_helpers import say
from soundcard import PulseNullSink

REFUSED = "refused the credentials (HTTP 401"
# The patience a request would wait for a connection before this fix: a refusal must not wait
# for it (nor for the fallback's deadline).
PATIENCE = 30.0
FALLBACK_AFTER = 2.0


@pytest.fixture
async def refusing_server() -> AsyncIterator[LocalServer]:
    async with open_local_server(auth_status=401) as server:
        yield server


def config_for(tmp_path: Path, server: LocalServer) -> Config:
    return Config(
        api=ApiConfig(
            url=server.base_url, api_key="wrong-key", user_id="me", request_patience=PATIENCE
        ),
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(samplerate=48000),
        fallback=FallbackConfig(after=FALLBACK_AFTER),
    )


@pytest.fixture
def daemon_config(
    tmp_path: Path, refusing_server: LocalServer, sound_card: PulseNullSink
) -> Config:
    return config_for(tmp_path, refusing_server)


async def say_wait(daemon: Daemon, text: str) -> subprocess.CompletedProcess[bytes]:
    """`playspeak say --wait TEXT` to the daemon, as a user runs it."""
    command = [sys.executable, "-m", "playspeak", "say", "--wait"]
    return await trio.run_process(
        [*command, "--socket", str(daemon.socket_path), text],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def test_every_event_of_the_fallback_voice_names_the_refused_key(daemon: Daemon) -> None:
    events = (await say(daemon.socket_path, "The front door is open.")).events
    spoken = {e["event"]: e for e in events if e["event"] != "queued"}
    assert set(spoken) == {"started", "finished"}, events
    for event in spoken.values():
        assert event["source"] == "fallback"
        assert REFUSED in event["fallback_reason"], event
    # the refusal is known at once: the local voice does not wait for fallback.after
    assert spoken["started"]["t"] - events[0]["t"] < FALLBACK_AFTER
    assert "fallback_reason" not in events[0]  # queued: nobody knew yet


async def test_a_text_message_with_a_refused_key_fails_at_once_naming_it(daemon: Daemon) -> None:
    with trio.fail_after(FALLBACK_AFTER):  # not after api.request_patience (30 s)
        events = (await say(daemon.socket_path, "Nobody hears this.", priority="text")).events
    assert [e["event"] for e in events] == ["queued", "failed"]
    assert REFUSED in events[-1]["reason"]


async def test_say_wait_prints_the_fallback_reason_and_exits_0(daemon: Daemon) -> None:
    done = await say_wait(daemon, "The washing machine has finished.")
    assert done.returncode == 0, done.stderr
    assert REFUSED in done.stderr.decode()
    assert "fallback voice" in done.stderr.decode()


@pytest.fixture
def no_espeak_ng(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """espeak-ng really missing: PATH holds nothing (the daemon runs in this process)."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def no_piper(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without the extra playspeak[piper] (CI installs it: the one stand-in
    here is that the installed voice is not found)."""
    monkeypatch.setattr(piper, "find_models", list)


@pytest.mark.usefixtures("no_espeak_ng", "no_piper")
async def test_without_espeak_ng_the_failure_still_names_the_401(
    tmp_path: Path,
    refusing_server: LocalServer,
    sound_card: PulseNullSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with open_daemon(config_for(tmp_path, refusing_server)) as daemon:
        warnings = daemon.status()["warnings"]
        assert any("there is no fallback voice" in w for w in warnings), warnings
        assert "espeak-ng is not installed" in caplog.text  # said at start, in the log
        with trio.fail_after(FALLBACK_AFTER):
            events = (
                await say(daemon.socket_path, "Water leak in the basement.", priority="important")
            ).events
    assert [e["event"] for e in events] == ["queued", "failed"]
    reason = events[-1]["reason"]
    assert REFUSED in reason and "local voice failed" in reason, reason


@pytest.mark.skipif(not piper.find_models(), reason="the extra playspeak[piper] is not installed")
@pytest.mark.usefixtures("no_espeak_ng")
async def test_without_espeak_ng_an_installed_piper_voice_is_the_fallback(
    tmp_path: Path, refusing_server: LocalServer, sound_card: PulseNullSink
) -> None:
    async with open_daemon(config_for(tmp_path, refusing_server)) as daemon:
        assert daemon.status()["warnings"] == []
        events = (
            await say(daemon.socket_path, "Water leak in the basement.", priority="important")
        ).events
    assert [e["event"] for e in events] == ["queued", "started", "finished"], events
    assert REFUSED in events[-1]["fallback_reason"]
    assert "warning" not in events[-1]


@pytest.mark.usefixtures("no_espeak_ng", "no_piper")
async def test_the_local_voice_without_espeak_ng_says_on_every_event_it_is_a_murmur(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    """No service configured: the direct local voice speaks the generated signal, and every
    event from its start says so, as `say --wait` does on stderr (never a silent default)."""
    config = Config(
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(samplerate=48000),
    )
    async with open_daemon(config) as daemon:
        assert daemon.status()["warnings"] == [MURMUR]
        events = (await say(daemon.socket_path, "Dinner is ready.")).events
        assert [e["event"] for e in events] == ["queued", "started", "finished"], events
        # queued is sent before the voice is chosen, as with fallback_reason
        assert all(e["warning"] == MURMUR for e in events[1:]), events
        done = await say_wait(daemon, "Dinner is ready.")
    assert done.returncode == 0, done.stderr
    assert f"warning: {MURMUR}" in done.stderr.decode()
