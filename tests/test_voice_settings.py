"""Speech Dispatcher's settings are honoured by the local voice (espeak-ng), through the real
SSIP door and the null sink, on the shipped defaults (the direct local voice): PITCH moves the
voice's F0, PUNCTUATION all speaks punctuation, CAP_LET_RECOGN spell tells `CHAR A` from
`CHAR a`; a voice that cannot (Piper: no pitch) refuses rather than ignoring it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio

from playspeak.config import DEFAULT_VOICE, AudioConfig, Config, ControlConfig, SsipConfig
from playspeak.daemon import Daemon
from playspeak.engines import Synthesizer
from playspeak.engines.piper import find_models
from playspeak.localserver.encode import wav_header
from playspeak.localserver.sentences import split_sentences
from playspeak.style import Style

from audio_compare import RATE, covered_share, loud_span, reference_pcm
from daemon_helpers import LineClient
from soundcard import PulseNullSink, Recorder


@pytest.fixture
def daemon_config(tmp_path: Path, sound_card: PulseNullSink) -> Config:
    return Config(
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(samplerate=RATE),
        ssip=SsipConfig(socket=str(tmp_path / "speechd.sock")),
    )


async def ssip(daemon: Daemon, *lines: str) -> list[str]:
    """Send SSIP lines on one connection and wait for the last message to be spoken (END)."""
    stream = await trio.open_unix_socket(str(daemon.config.ssip.socket))
    replies: list[str] = []
    buffer = b""
    async with stream:
        await stream.send_all(b"SET SELF NOTIFICATION END on\r\n")
        for line in lines:
            await stream.send_all(line.encode() + b"\r\n")
        with trio.fail_after(20):
            while b"702 END" not in buffer:
                buffer += await stream.receive_some(4096)
    replies = buffer.decode().splitlines()
    return replies


async def rendering(text: str, style: Style) -> np.ndarray:
    """What the local voice makes of `text`, sentence by sentence, at the sink's rate."""
    synth = Synthesizer()
    parts = [await synth.pcm(s, DEFAULT_VOICE, 1.0, style) for s in split_sentences(text)]
    pcm = np.concatenate([p for p, _ in parts]).astype("<i2").tobytes()
    return reference_pcm(wav_header(parts[0][1], len(pcm)) + pcm)


def f0(samples: np.ndarray, rate: int = RATE) -> float:
    """The median fundamental frequency of the voiced 40 ms frames (autocorrelation)."""
    x = samples.astype(np.float64).reshape(-1)
    size, found = int(0.04 * rate), []
    for start in range(0, len(x) - size, size):
        frame = x[start : start + size]
        if np.sqrt(np.mean(frame**2)) < 1000:
            continue
        frame = frame - frame.mean()
        ac = np.correlate(frame, frame, "full")[size - 1 :]
        low, high = rate // 400, rate // 60  # 60..400 Hz
        lag = low + int(np.argmax(ac[low:high]))
        if ac[lag] > 0.3 * ac[0]:
            found.append(rate / lag)
    return float(np.median(found))


async def test_pitch_moves_the_voice(daemon: Daemon, recorder: Recorder) -> None:
    text = "The front door is open."
    heard = []
    for pitch in (-80, 80):
        mark = recorder.count
        await ssip(daemon, f"SET SELF PITCH {pitch}", "SPEAK", text, ".")
        recorded = await recorder.heard(mark)
        share, _ = covered_share(recorded, await rendering(text, Style(pitch=pitch)))
        assert share >= 0.9, (pitch, share)
        heard.append(f0(recorded))
    low, high = heard
    assert high >= 1.3 * low, heard


async def test_punctuation_all_speaks_the_punctuation(daemon: Daemon, recorder: Recorder) -> None:
    text = "(Yes): #1;"  # 1.5 s with none, 2.7 s with all (espeak-ng)
    spans = []
    for level in ("none", "all"):
        mark = recorder.count
        await ssip(daemon, f"SET SELF PUNCTUATION {level}", "SPEAK", text, ".")
        recorded = await recorder.heard(mark)
        share, _ = covered_share(recorded, await rendering(text, Style(punctuation=level)))
        assert share >= 0.9, (level, share)
        spans.append(loud_span(recorded))
    assert spans[1] > 1.3 * spans[0], spans


async def test_capital_letters_spelled_tell_char_a_from_char_a(
    daemon: Daemon, recorder: Recorder
) -> None:
    heard = {}
    for char in ("A", "a"):
        mark = recorder.count
        await ssip(daemon, "SET SELF CAP_LET_RECOGN spell", f"CHAR {char}")
        heard[char] = await recorder.heard(mark)
    spelled = await rendering("A", Style(capitals="spell"))
    assert covered_share(heard["A"], spelled)[0] >= 0.9
    assert loud_span(heard["A"]) > 1.5 * loud_span(heard["a"])


@pytest.mark.skipif(not find_models(), reason="the extra playspeak[piper] is not installed")
async def test_a_pitch_the_voice_cannot_set_is_refused_not_ignored(daemon: Daemon) -> None:
    client = await LineClient.open(daemon.socket_path)
    voices = (await client.command(cmd="voices"))["voices"]
    piper = next(v for v in voices if v["engine"] == "piper")
    assert "pitch" in piper["refuses"]
    reply = await client.command(cmd="speak", text="Hello.", voice=piper["id"], pitch=50)
    events = await client.events_until_end({reply["id"]})
    assert [e["event"] for e in events] == ["queued", "failed"]
    assert "cannot set pitch" in events[-1]["reason"]
