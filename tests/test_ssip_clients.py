"""Speech Dispatcher's own clients speak through playspeak: Debian's `spd-say` and the `speechd`
Python client, pointed at the SSIP socket by SPEECHD_ADDRESS — checked by their exit status, by
the daemon's events (seen by a subscriber on the control socket) and by the audio recorded at
the null sink."""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from playspeak.config import (
    DEFAULT_VOICE,
    AudioConfig,
    Config,
    ControlConfig,
    LocalServerConfig,
    SsipConfig,
)
from playspeak.daemon import Daemon, open_daemon
from playspeak.errors import PlayspeakError
from playspeak.ssip.server import bind_ssip_socket, ssip_socket_path

from audio_compare import RATE, covered_share, reference_pcm
from daemon_helpers import ENDINGS, LineClient
from soundcard import PulseNullSink, Recorder
from ssip_helpers import SsipClient

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-speechd lives there, not in the venv
LONG = (
    "This is a long weather report that goes on for quite a while, about the clouds, "
    "the rain, and the wind in the north."
)
PY_CLIENT = """
import sys, threading, speechd
done = threading.Event()
def callback(kind, **_):
    print(kind.upper(), flush=True)
    if kind == speechd.CallbackType.END:
        done.set()
client = speechd.SSIPClient("playspeak-test")
client.set_priority(speechd.Priority.MESSAGE)
# speechd registers a callback only after SPEAK's reply: pausing until then makes sure BEGIN
# cannot come first on a busy machine.
client.pause()
client.speak(sys.argv[1], callback=callback, event_types=("begin", "end"))
client.resume()
ok = done.wait(20)
client.close()
sys.exit(0 if ok else 3)
"""


@pytest.fixture
def ssip_path(tmp_path: Path) -> Path:
    if shutil.which("spd-say") is None:
        pytest.fail("spd-say not found: apt-get install speech-dispatcher", pytrace=False)
    return tmp_path / "speechd.sock"


@pytest.fixture
def daemon_config(tmp_path: Path, ssip_path: Path, sound_card: PulseNullSink) -> Config:
    return Config(
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(samplerate=RATE),
        local_server=LocalServerConfig(
            embedded="server", first_byte_delay=0.05, realtime_factor=3.0
        ),
        ssip=SsipConfig(socket=str(ssip_path)),
    )


@pytest.fixture
def recorder(sound_card: PulseNullSink) -> AsyncIterator[Recorder]:
    with sound_card.recorder() as rec:
        yield rec


@pytest.fixture
async def watcher(daemon: Daemon) -> LineClient:
    """A control-socket subscriber: it sees every utterance's events, SSIP ones included."""
    client = await LineClient.open(daemon.socket_path)
    assert (await client.command(cmd="subscribe"))["event"] == "ok"
    return client


@dataclass
class Run:
    """A client process's exit status, output, and the wall-clock time it had exited by."""

    returncode: int
    output: str
    ended: float


async def run(ssip_path: Path, *command: str) -> Run:
    """Run a Speech Dispatcher client against our socket; never an autospawned speechd."""
    env = {
        **os.environ,
        "SPEECHD_ADDRESS": f"unix_socket:{ssip_path}",
        "SPEECHD_CMD": "/bin/false",
    }
    with trio.fail_after(30):
        result = await trio.run_process(
            list(command), env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    output = result.stdout.decode() + result.stderr.decode()
    return Run(result.returncode, output, time.time())


async def spd_say(ssip_path: Path, *args: str) -> Run:
    return await run(ssip_path, "spd-say", *args)


def is_ssip(ident: str) -> bool:
    return ident.startswith("ssip-")


async def ended(watcher: LineClient, count: int = 1) -> list[dict]:
    """Subscriber lines until `count` SSIP utterances have ended."""
    lines, done = [], 0
    while done < count:
        lines.append(line := await watcher.event())
        done += is_ssip(line.get("id", "")) and line["event"] in ENDINGS
    return lines


def outcomes(lines: list[dict]) -> dict[str, str]:
    return {e["id"]: e["event"] for e in lines if e["event"] in ENDINGS}


async def heard(
    daemon: Daemon, recorder: Recorder, text: str, voice: str = DEFAULT_VOICE, speed: float = 1.0
) -> tuple[float, float]:
    """Which share of `text` (as the service renders it) was recorded, and at what gain."""
    rendered = reference_pcm(await daemon.local_server.render(text=text, voice=voice, speed=speed))
    return covered_share(await recorder.heard(), rendered)


async def test_spd_say_wait_returns_once_the_words_were_heard(
    daemon: Daemon, ssip_path: Path, watcher: LineClient, recorder: Recorder
) -> None:
    said = await spd_say(ssip_path, "-w", "Hello from spd say.")
    assert said.returncode == 0, said.output
    lines = await ended(watcher)
    finished = next(e for e in lines if e["event"] == "finished")
    assert finished["t"] <= said.ended, "spd-say -w returned before the last sample was heard"
    assert (await heard(daemon, recorder, "Hello from spd say."))[0] >= 0.9


async def test_spd_say_returns_at_once_and_the_speech_goes_on(
    daemon: Daemon, ssip_path: Path, watcher: LineClient, recorder: Recorder
) -> None:
    said = await spd_say(ssip_path, "Goes on without me.")
    assert said.returncode == 0, said.output
    lines = await ended(watcher)
    assert list(outcomes(lines).values()) == ["finished"]
    finished = next(e for e in lines if e["event"] == "finished")
    assert said.ended < finished["t"], "spd-say waited although it was not asked to"
    assert (await heard(daemon, recorder, "Goes on without me."))[0] >= 0.9


async def test_rate_becomes_the_speed_of_the_request(
    daemon: Daemon, ssip_path: Path, recorder: Recorder
) -> None:
    text = "Faster than usual."
    said = await spd_say(ssip_path, "-w", "-r", "50", text)
    assert said.returncode == 0, said.output
    assert (await heard(daemon, recorder, text, speed=2**0.5))[0] >= 0.9
    assert (await heard(daemon, recorder, text, speed=1.0))[0] < 0.5


async def test_volume_becomes_the_gain(daemon: Daemon, ssip_path: Path, recorder: Recorder) -> None:
    text = "Quieter than usual."
    said = await spd_say(ssip_path, "-w", "-i", "-30", text)
    assert said.returncode == 0, said.output
    share, gain = await heard(daemon, recorder, text)
    assert share >= 0.9 and gain == pytest.approx((-30 + 100) / 200, abs=0.02)


@pytest.mark.parametrize(
    ("option", "text", "voice"),
    [
        (("-y", "angelo"), "Another voice.", "angelo"),  # SYNTHESIS_VOICE: the PlayAI voice
        # LANGUAGE de: espeak-ng's German voice, not the English one
        (("-l", "de"), "Die Haustür ist offen.", "espeak:de"),
        # LANGUAGE en-US: espeak-ng's voice of it, not an en-us Piper voice listed too
        (("-l", "en-US"), "The front door is open.", "espeak:en-us"),
        # a listed voice whose language espeak-ng cannot select by (its file it can)
        (("-y", "espeak:chr-US-Qaaa-x-west"), "Another voice.", "espeak:chr-US-Qaaa-x-west"),
    ],
)
async def test_synthesis_voice_or_language_chooses_the_voice(
    daemon: Daemon,
    ssip_path: Path,
    recorder: Recorder,
    option: tuple[str, str],
    text: str,
    voice: str,
) -> None:
    said = await spd_say(ssip_path, "-w", *option, text)
    assert said.returncode == 0, said.output
    assert (await heard(daemon, recorder, text, voice=voice))[0] >= 0.9
    assert (await heard(daemon, recorder, text))[0] < 0.5


async def test_spd_say_lists_every_espeak_language_as_a_voice(
    daemon: Daemon, ssip_path: Path
) -> None:
    listed = await spd_say(ssip_path, "-L")
    assert listed.returncode == 0, listed.output
    names = {line.split()[0] for line in listed.output.splitlines() if line.strip()}
    languages = espeak_languages()
    assert {f"espeak:{lang}" for lang in languages} <= names and "espeak:de" in names


def espeak_languages() -> list[str]:
    import subprocess

    listing = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True).stdout
    return [line.split()[1] for line in listing.splitlines()[1:] if line.split()]


async def test_cancel_ends_what_speaks_and_the_waiting_client_returns(
    daemon: Daemon, ssip_path: Path, watcher: LineClient, recorder: Recorder
) -> None:
    async with trio.open_nursery() as nursery:
        waiting: list[Run] = []

        async def wait_for_report() -> None:
            waiting.append(await spd_say(ssip_path, "-w", LONG))

        nursery.start_soon(wait_for_report)
        lines = await watcher.until("started", is_ssip)
        cancel = await spd_say(ssip_path, "-C")
        assert cancel.returncode == 0, cancel.output
        lines += await ended(watcher)
    assert list(outcomes(lines).values()) == ["cancelled"]
    assert waiting[0].returncode == 0, waiting[0].output  # it heard 703 CANCELED and returned
    assert (await heard(daemon, recorder, LONG))[0] < 0.5  # only its beginning was said


async def test_important_interrupts_text(
    daemon: Daemon, ssip_path: Path, watcher: LineClient, recorder: Recorder
) -> None:
    report = await spd_say(ssip_path, LONG)  # spd-say's default priority is text
    assert report.returncode == 0, report.output
    lines = await watcher.until("started", is_ssip)
    report_id = lines[-1]["id"]
    alarm = await spd_say(ssip_path, "-w", "-P", "important", "Smoke alarm!")
    assert alarm.returncode == 0, alarm.output
    lines += await ended(watcher, 2)
    alarm_id = next(i for i in outcomes(lines) if i != report_id)
    assert outcomes(lines) == {report_id: "cancelled", alarm_id: "finished"}
    reason = next(e["reason"] for e in lines if e["event"] == "cancelled")
    assert reason == f"interrupted by {alarm_id}"
    assert (await heard(daemon, recorder, "Smoke alarm!"))[0] >= 0.9


async def test_the_speechd_python_client_gets_begin_and_end(
    daemon: Daemon, ssip_path: Path, watcher: LineClient, recorder: Recorder
) -> None:
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} not found (python3-speechd runs there)", pytrace=False)
    text = "Hello from Python."
    said = await run(ssip_path, SYSTEM_PYTHON, "-c", PY_CLIENT, text)
    assert said.returncode == 0, said.output
    assert said.output.split() == ["BEGIN", "END"]
    lines = await ended(watcher)
    events = [e["event"] for e in lines if e["id"].startswith("ssip-")]
    assert [e for e in events if e in ("started", "finished")] == ["started", "finished"]
    assert (await heard(daemon, recorder, text))[0] >= 0.9


async def test_a_client_that_sets_a_language_begins_at_once_in_the_default_voice(
    tmp_path: Path, ssip_path: Path, sound_card: PulseNullSink
) -> None:
    """speechd's own Python client test (test_callbacks) sets LANGUAGE en and RATE 30 and
    counts on its first message having begun 1 s after it was sent. `en` is espeak-ng's
    voice, the daemon's default engine: an installed Piper voice (listed too) loads its model
    at its first message, and 701 BEGIN came after 0.75 s in a speechd-suite run (1.37 s in
    another); espeak-ng's after 0.02-0.05 s. On the shipped defaults, as speechd-suite runs."""
    config = Config(
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        ssip=SsipConfig(socket=str(ssip_path)),
    )
    async with open_daemon(config) as daemon:
        client = await SsipClient.open(ssip_path)
        for line in ("SET SELF NOTIFICATION ALL ON", "SET SELF LANGUAGE en", "SET SELF RATE 30"):
            assert (await client.command(line))[-1][0] == "2", line
        sent = time.monotonic()
        await client.speak(LONG)
        assert (await client.event())[-1] == "701 BEGIN"
        began = time.monotonic() - sent
        assert (await client.command("CANCEL SELF"))[-1].startswith("213")
        assert (await client.event())[-1] == "703 CANCELED"
        synth = daemon.speaker.sources.local if daemon.speaker.sources else None
        assert synth is not None and not synth._piper._loaded  # no Piper model was wanted
    assert began < 0.5, began


async def test_errors_get_replies_and_the_connection_stays(daemon: Daemon, ssip_path: Path) -> None:
    stream = await trio.open_unix_socket(str(ssip_path))
    buffer = b""

    async def replies(count: int) -> list[bytes]:
        """The next `count` final reply lines (codes and text)."""
        nonlocal buffer
        finals: list[bytes] = []
        while len(finals) < count:
            while b"\r\n" not in buffer:
                data = await stream.receive_some(65536)
                assert data, "the server closed the connection"
                buffer += data
            line, buffer = buffer.split(b"\r\n", 1)
            if line[3:4] == b" ":
                finals.append(line)
        return finals

    long_line = b"SET SELF LANGUAGE " + b"x" * 70000 + b"\r\n"
    await stream.send_all(b"FROBNICATE\r\nSET SELF RATE \xff\xfe\r\n" + long_line)
    await stream.send_all(b"SET SELF RATE 500\r\nSET SELF PRIORITY text\r\nCANCEL all\r\n")
    got = await replies(6)
    assert [r[:3] for r in got] == [b"500", b"501", b"500", b"409", b"202", b"213"], got
    await stream.send_all(b"SPEAK\r\n")
    assert await replies(1) == [b"230 OK RECEIVING DATA"]
    await stream.send_all(b"Still here.\r\n.\r\nCANCEL self\r\nQUIT\r\n")
    assert await replies(3) == [b"225 OK MESSAGE QUEUED", b"213 OK CANCELED", b"231 HAPPY HACKING"]
    with trio.fail_after(5):
        assert await stream.receive_some(65536) == b""  # QUIT closes it
    await stream.aclose()


def test_the_socket_path_expands_and_a_live_server_keeps_its_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    config = Config(ssip=SsipConfig(socket="$XDG_RUNTIME_DIR/speech-dispatcher/speechd.sock"))
    path = ssip_socket_path(config)
    assert path == tmp_path / "speech-dispatcher" / "speechd.sock"
    assert ssip_socket_path(Config()) is None  # off by default
    first = bind_ssip_socket(path, 0o600)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(PlayspeakError, match="Speech Dispatcher"):
            bind_ssip_socket(path, 0o600)
    finally:
        first.close()
    bind_ssip_socket(path, 0o600).close()  # a stale socket file is replaced
