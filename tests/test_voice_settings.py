"""Speech Dispatcher's settings are honoured by the local voice (espeak-ng), through the real
SSIP door (or the control socket's same fields) and the null sink, on the shipped defaults
(the direct local voice): PITCH moves the voice's F0, PITCH_RANGE widens its melody,
PUNCTUATION all speaks punctuation, CAP_LET_RECOGN spell tells `CHAR A` from `CHAR a`, a
spelled speak is said letter by letter, SSML's break, prosody and say-as are heard; a voice
that cannot (Piper: no pitch) refuses rather than ignoring it. Each recording is checked
against espeak-ng's own rendering first (`covered_share`), so a margin measures the setting,
not the sink."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import trio

from playspeak import ssml
from playspeak.config import DEFAULT_VOICE, AudioConfig, Config, ControlConfig, SsipConfig
from playspeak.daemon import Daemon
from playspeak.engines import Synthesizer
from playspeak.engines.piper import find_models
from playspeak.engines.sentences import split_sentences
from playspeak.localserver.encode import wav_header
from playspeak.style import Style

from audio_compare import RATE, covered_share, f0, f0_spread, loud, loud_span, reference_pcm
from daemon_helpers import LineClient
from soundcard import PulseNullSink, Recorder
from ssip_helpers import SsipClient


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
    """What the local voice makes of `text`, sentence by sentence (SSML whole), at the sink's
    rate."""
    synth = Synthesizer()
    sentences = [text] if style.ssml else split_sentences(text)
    parts = [await synth.pcm(s, DEFAULT_VOICE, 1.0, style) for s in sentences]
    pcm = np.concatenate([p for p, _ in parts]).astype("<i2").tobytes()
    return reference_pcm(wav_header(parts[0][1], len(pcm)) + pcm)


async def said_with(
    daemon: Daemon, recorder: Recorder, setting: str, text: str, style: Style
) -> np.ndarray:
    """`text` spoken over SSIP after `SET SELF <setting>`, as heard: espeak-ng's rendering of
    it in `style`, checked."""
    mark = recorder.count
    await ssip(daemon, f"SET SELF {setting}", "SPEAK", text, ".")
    recorded = await recorder.heard(mark)
    share, _ = covered_share(recorded, await rendering(text, style))
    assert share >= 0.9, (setting, share)
    return recorded


async def test_pitch_moves_the_voice(daemon: Daemon, recorder: Recorder) -> None:
    text = "The front door is open."
    heard = []
    for pitch in (-80, 80):
        heard.append(f0(await said_with(daemon, recorder, f"PITCH {pitch}", text, Style(pitch))))
    low, high = heard
    assert high >= 1.3 * low, heard


async def test_punctuation_all_speaks_the_punctuation(daemon: Daemon, recorder: Recorder) -> None:
    text = "(Yes): #1;"  # 1.5 s with none, 2.7 s with all (espeak-ng)
    spans = []
    for level in ("none", "all"):
        style = Style(punctuation=level)
        spans.append(
            loud_span(await said_with(daemon, recorder, f"PUNCTUATION {level}", text, style))
        )
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
    assert reply["event"] == "error", reply  # refused at once: nothing is queued
    assert "cannot set pitch" in reply["error"] and piper["id"] in reply["error"]
    ssip = await SsipClient.open(Path(daemon.config.ssip.socket))
    with trio.fail_after(10):
        # a pitch set for espeak-ng's voice, then a Piper voice: the voice is refused, not kept
        assert (await ssip.command("SET SELF PITCH 50"))[-1].startswith("204 ")
        last = (await ssip.command(f"SET SELF SYNTHESIS_VOICE {piper['id']}"))[-1]
        assert last.startswith("417 ") and "CANNOT SET PITCH" in last, last
        assert (await ssip.try_speak("Hello."))[-1].startswith("225 ")  # in espeak-ng's voice
        # with the pitch back at its default the Piper voice is taken; then the SET itself is
        # refused and not kept, and the default is taken
        assert (await ssip.command("SET SELF PITCH 0"))[-1].startswith("204 ")
        assert (await ssip.command(f"SET SELF SYNTHESIS_VOICE {piper['id']}"))[-1][:3] == "209"
        for setting, named in [
            ("PITCH 50", "PITCH"),
            ("PITCH_RANGE 20", "PITCH_RANGE"),
            ("PUNCTUATION all", "PUNCTUATION"),
            ("CAP_LET_RECOGN icon", "CAPITALS"),
        ]:
            last = (await ssip.command(f"SET SELF {setting}"))[-1]
            assert (
                last
                == (
                    f"417 ERR VOICE REFUSES (THE VOICE {piper['id']!r} (PIPER) CANNOT SET {named})"
                ).upper()
            ), last
        assert await ssip.command("GET PITCH") == ["251-0", "251 OK GET RETURNED"]
        assert (await ssip.command("SET SELF PUNCTUATION none"))[-1].startswith("205 ")
        # an espeak-ng voice takes them again
        assert (await ssip.command("SET SELF SYNTHESIS_VOICE espeak:de"))[-1][:3] == "209"
        for setting, code in [("PITCH 50", "204"), ("PUNCTUATION all", "205")]:
            assert (await ssip.command(f"SET SELF {setting}"))[-1][:3] == code, setting
    await ssip.aclose()


async def test_pitch_range_widens_the_voice_s_melody(daemon: Daemon, recorder: Recorder) -> None:
    text = "The front door is open. Is anyone at home?"
    spreads = []
    for value in (-100, 100):
        style = Style(pitch_range=value)
        spreads.append(
            f0_spread(await said_with(daemon, recorder, f"PITCH_RANGE {value}", text, style))
        )
    narrow, wide = spreads
    print(f"F0 spread, log(p90/p10): range -100 {narrow:.3f}, +100 {wide:.3f}")
    assert wide >= 3 * narrow, spreads


async def spoken(daemon: Daemon, recorder: Recorder, text: str, **fields: object) -> np.ndarray:
    """A control-socket speak of `text`, heard to its end on the sink."""
    client = await LineClient.open(daemon.socket_path)
    mark = recorder.count
    reply = await client.command(cmd="speak", text=text, **fields)
    assert reply["event"] == "ok", reply
    with trio.fail_after(20):
        events = await client.events_until_end({reply["id"]})
    assert events[-1]["event"] == "finished", events
    return await recorder.heard(mark)


async def test_the_control_socket_sets_the_pitch_range(daemon: Daemon, recorder: Recorder) -> None:
    text = "The front door is open, and the kitchen light is on."
    recorded = await spoken(daemon, recorder, text, pitch_range=-100)
    assert covered_share(recorded, await rendering(text, Style(pitch_range=-100)))[0] >= 0.9
    assert covered_share(recorded, await rendering(text, Style()))[0] < 0.5


async def test_a_spelled_speak_is_said_letter_by_letter(daemon: Daemon, recorder: Recorder) -> None:
    spelled = await spoken(daemon, recorder, "hello", spelling=True)
    assert covered_share(spelled, await rendering("h e l l o", Style()))[0] >= 0.9
    plain = await spoken(daemon, recorder, "hello")
    print(f"spelled {loud_span(spelled) / RATE:.3f} s, plain {loud_span(plain) / RATE:.3f} s")
    assert loud_span(spelled) >= 1.6 * loud_span(plain)  # measured: 2.2 times as long


async def playspeak_say(daemon: Daemon, *args: str) -> tuple[int, str]:
    """`playspeak say ARGS` run against the daemon: its exit code and its stderr."""
    result = await trio.run_process(
        [sys.executable, "-m", "playspeak", "say", *args],
        env={**os.environ, "PLAYSPEAK_SOCKET": str(daemon.socket_path)},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stderr.decode()


async def test_playspeak_say_sets_the_voice_s_pitch_and_range(
    daemon: Daemon, recorder: Recorder
) -> None:
    text = "The front door is open."
    mark = recorder.count
    code, err = await playspeak_say(daemon, "--wait", "--pitch", "60", "--pitch-range=-100", text)
    assert (code, err) == (0, "")
    heard = await recorder.heard(mark)
    assert covered_share(heard, await rendering(text, Style(60, pitch_range=-100)))[0] >= 0.9
    assert covered_share(heard, await rendering(text, Style()))[0] < 0.5


@pytest.mark.skipif(not find_models(), reason="the extra playspeak[piper] is not installed")
async def test_playspeak_say_with_a_pitch_piper_cannot_set_fails_naming_why(
    daemon: Daemon,
) -> None:
    voice = find_models()[0].id
    code, err = await playspeak_say(daemon, "--voice", voice, "--pitch", "50", "Hello.")
    assert code == 1
    assert err == f"playspeak: the voice {voice!r} (piper) cannot set pitch\n"


def longest_pause(samples: np.ndarray) -> float:
    """The longest silence between the first and the last loud sample, in seconds."""
    index = loud(samples)
    return float(np.diff(index).max()) / RATE if len(index) > 1 else 0.0


def rms(samples: np.ndarray) -> float:
    at = loud(samples)
    return float(np.sqrt(np.mean(samples[at[0] : at[-1]].astype(np.float64) ** 2)))


# SSML, the same words without it, and what the SSML must change. Measured here: the break's
# pause 0.547 s against 0.050 s; rate 50 % 1.95 times as long; pitch +50 % F0 ×1.31; volume
# 20 % RMS ×0.19; the word spelled 2.65 times as long.
Check = Callable[[np.ndarray, np.ndarray], bool]
FRONT_DOOR = "The front door is open."
SSML_CASES: dict[str, tuple[str, str, Callable[[np.ndarray], float], Check]] = {
    "break": (
        'One <break time="500ms"/> two.',
        "One two.",
        longest_pause,
        lambda a, b: 0.4 <= longest_pause(a) - longest_pause(b) <= 0.7,
    ),
    "prosody rate": (
        f'<prosody rate="50%">{FRONT_DOOR}</prosody>',
        FRONT_DOOR,
        loud_span,
        lambda a, b: loud_span(a) >= 1.5 * loud_span(b),
    ),
    "prosody pitch": (
        f'<prosody pitch="+50%">{FRONT_DOOR}</prosody>',
        FRONT_DOOR,
        f0,
        lambda a, b: f0(a) >= 1.2 * f0(b),
    ),
    "prosody volume": (
        f'<prosody volume="20%">{FRONT_DOOR}</prosody>',
        FRONT_DOOR,
        rms,
        lambda a, b: rms(a) <= 0.4 * rms(b),
    ),
    "say-as characters": (
        'The <say-as interpret-as="characters">word</say-as>.',
        "The word.",
        loud_span,
        lambda a, b: loud_span(a) >= 1.5 * loud_span(b),
    ),
}


@pytest.mark.parametrize("case", SSML_CASES)
async def test_ssml_is_heard(daemon: Daemon, recorder: Recorder, case: str) -> None:
    markup, words, measure, changed = SSML_CASES[case]
    with_ssml = await spoken(daemon, recorder, markup, ssml=True)
    rendered = await rendering(ssml.render(ssml.parse(markup)), Style(ssml=True))
    assert covered_share(with_ssml, rendered)[0] >= 0.9
    without = await spoken(daemon, recorder, words)
    print(f"{case}: {measure(with_ssml):.3f} with SSML, {measure(without):.3f} without")
    assert changed(with_ssml, without)


async def test_malformed_ssml_is_refused_on_the_control_socket_and_said_as_words_by_ssip(
    daemon: Daemon, recorder: Recorder
) -> None:
    client = await LineClient.open(daemon.socket_path)
    reply = await client.command(cmd="speak", text="<speak>Hello <b>you</speak>", ssml=True)
    assert reply["event"] == "error" and "malformed SSML: mismatched tag" in reply["error"]
    # a screen reader's broken markup: its words rather than silence, and an END
    mark = recorder.count
    replies = await ssip(
        daemon, "SET SELF SSML_MODE on", "SPEAK", "<speak>Hello <b>you</speak>", "."
    )
    assert any(r.startswith("225") for r in replies) and "702 END" in replies[-1]
    heard = await recorder.heard(mark)
    assert covered_share(heard, await rendering("Hello you", Style()))[0] >= 0.9


async def test_a_mark_inside_prosody_is_told_and_the_prosody_holds_after_it(
    daemon: Daemon, recorder: Recorder
) -> None:
    text = '<speak><prosody rate="50%">The front door <mark name="m"/>is open.</prosody></speak>'
    mark = recorder.count
    replies = await ssip(
        daemon, "SET SELF SSML_MODE on", "SET SELF NOTIFICATION INDEX_MARKS on", "SPEAK", text, "."
    )
    slow = await recorder.heard(mark)
    assert "700-m" in replies
    plain = await spoken(daemon, recorder, FRONT_DOOR)
    assert loud_span(slow) >= 1.5 * loud_span(plain)
