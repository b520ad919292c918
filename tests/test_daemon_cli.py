"""The daemon as users run it: `playspeak run` as a process, `playspeak say --wait`, the socket
file's life, a missing sound card, and `playspeak demo`."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import trio

from playspeak.config import DEFAULT_VOICE, AudioConfig, Config, ControlConfig
from playspeak.config import ApiConfig as Api
from playspeak.control.server import SocketInUse, bind_unix_socket
from playspeak.daemon import open_daemon
from playspeak.localserver import open_local_server

from audio_compare import reference_pcm
from daemon_helpers import LineClient, daemon_process
from soundcard import PulseNullSink

KEY, USER = "cli-test-key-123", "cli-test-user"
CREDS = {"PLAYAI_API_KEY": KEY, "PLAYAI_USER_ID": USER}


async def playspeak(*args: str, env: dict[str, str], stdin: bytes = b"") -> tuple[int, str, str]:
    result = await trio.run_process(
        [sys.executable, "-m", "playspeak", *args],
        env={**os.environ, **env},
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_say_wait_exit_status_follows_the_outcome(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    async with open_local_server(api_key=KEY, user_id=USER, first_byte_delay=0.02) as server:
        server.faults.error_on_text = "doomed"
        env = {**CREDS, "PLAYSPEAK_API_URL": server.base_url}
        async with daemon_process(tmp_path, env) as daemon:
            env["PLAYSPEAK_SOCKET"] = str(daemon.socket_path)
            code, out, err = await playspeak("say", "--wait", "Hello there.", env=env)
            assert (code, err) == (0, "")
            code, out, err = await playspeak("say", "--wait", env=env, stdin=b"Piped\ntext.\n")
            assert (code, err) == (0, "")
            # `text`: a priority the fallback voice does not cover, so it fails
            code, out, err = await playspeak(
                "say", "--wait", "--priority", "text", "This is doomed.", env=env
            )
            assert code == 1
            assert "failed" in err and "synthesis failed (injected)" in err
            code, out, err = await playspeak("say", "No wait.", env=env)
            assert code == 0 and out.strip().startswith("u")
            code, out, err = await playspeak("ping", env=env)
            assert code == 0


async def test_say_without_a_daemon_names_the_problem(tmp_path: Path) -> None:
    env = {"PLAYSPEAK_SOCKET": str(tmp_path / "nobody.sock")}
    code, _out, err = await playspeak("say", "--wait", "hello", env=env)
    assert code == 1
    assert "cannot reach the playspeak daemon" in err and "Traceback" not in err


async def test_a_second_daemon_on_a_live_socket_refuses_to_start(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    async with daemon_process(tmp_path) as daemon:
        mode = stat.S_IMODE(os.stat(daemon.socket_path).st_mode)
        assert mode == 0o660
        env = {"PLAYSPEAK_SOCKET": str(daemon.socket_path)}
        code, _out, err = await playspeak("run", env=env)
        assert code == 1
        assert f"another playspeak daemon is answering on {daemon.socket_path}" in err
        assert "Traceback" not in err
        client = await LineClient.open(daemon.socket_path)  # the first one still serves
        assert (await client.command(cmd="ping"))["event"] == "ok"


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: what a killed daemon leaves
    sock = bind_unix_socket(path, 0o660)
    try:
        with pytest.raises(SocketInUse):
            bind_unix_socket(path, 0o660)  # now somebody listens
    finally:
        sock.close()


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "important.txt"
    path.write_text("keep me")
    with pytest.raises(Exception, match="exists and is not a socket"):
        bind_unix_socket(path, 0o660)
    assert path.read_text() == "keep me"


async def test_an_unknown_device_is_a_clear_error(tmp_path: Path, sound_card: PulseNullSink):
    env = {"PLAYSPEAK_SOCKET": str(tmp_path / "s.sock"), "PLAYSPEAK_DEVICE": "no-such-card"}
    code, _out, err = await playspeak("run", env=env)
    assert code == 1
    assert "no-such-card" in err and "Traceback" not in err


def no_sound_card_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which PortAudio finds no sound server and no device."""
    empty = tmp_path / "runtime"
    empty.mkdir(mode=0o700)
    return {"XDG_RUNTIME_DIR": str(empty), "PULSE_SERVER": f"unix:{empty}/none"}


async def test_no_sound_card_is_a_clear_error_naming_the_fix(tmp_path: Path) -> None:
    env = {**no_sound_card_env(tmp_path), "PLAYSPEAK_SOCKET": str(tmp_path / "s.sock")}
    code, _out, err = await playspeak("run", env=env)
    assert code == 1, err
    assert "Traceback" not in err
    assert "PLAYSPEAK_DEVICE" in err or "playspeak devices" in err


async def test_demo_without_a_sound_card_writes_the_greeting_to_a_wav_file(
    tmp_path: Path,
) -> None:
    wav = tmp_path / "greeting.wav"
    env = no_sound_card_env(tmp_path)
    code, _out, err = await playspeak("demo", "--wav", str(wav), "Testing the demo.", env=env)
    assert code == 0, err
    assert "no sound card" in err and str(wav) in err
    with wave.open(str(wav)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        seconds = w.getnframes() / w.getframerate()
    assert 0.5 < seconds < 5 and np.abs(frames).max() > 3000


async def test_demo_speaks_on_the_sound_card(tmp_path: Path, sound_card: PulseNullSink) -> None:
    with sound_card.recorder() as recorder:
        code, out, err = await playspeak("demo", "Hi.", env={})
        assert code == 0, err
        assert '"event": "finished"' in out
        assert recorder.wait_sound(2400, timeout=5, start=recorder.mark)


@pytest.mark.parametrize(("low", "high"), [(1, 1), (1, 7), (500, 4000), (65536, 65536)])
async def test_chunk_sizes_from_one_byte_to_64k_give_the_same_audio(
    tmp_path: Path, low: int, high: int, batch_priority: None
) -> None:
    text = "Hi."  # 11 kB of MP3: one-byte chunks are 11,000 websocket messages
    async with open_local_server(
        api_key=KEY,
        user_id=USER,
        first_byte_delay=0,
        realtime_factor=0,
        chunk_min=low,
        chunk_max=high,
    ) as server:
        wav = tmp_path / "out.wav"
        config = Config(
            api=Api(url=server.base_url, api_key=KEY, user_id=USER),
            control=ControlConfig(socket=str(tmp_path / "s.sock")),
            # every sample, the leading silence too (its trimming is test_leading_silence's)
            audio=AudioConfig(device=f"wav:{wav}", samplerate=48000, trim_leading_silence=False),
        )
        async with open_daemon(config) as daemon:
            client = await LineClient.open(daemon.socket_path)
            reply = await client.command(cmd="speak", text=text)
            events = await client.events_until_end({reply["id"]})
            assert events[-1]["event"] == "finished"
        expected = reference_pcm(await server.render(text=text, voice=DEFAULT_VOICE))
    with wave.open(str(wav)) as w:
        played = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32767
    reference = np.clip(expected[:, 0], -1, 1)
    assert len(played) == len(reference)
    assert np.max(np.abs(played - reference)) < 2 / 32767  # the same samples, to int16 rounding


def test_subprocess_run_help_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "playspeak", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "say" in result.stdout and "serve-local" in result.stdout
