"""Voices a client can list and choose: `{"cmd": "voices"}`, `playspeak voices`, and a voice or a
language in a speak selecting one (the SSIP door's LIST SYNTHESIS_VOICES and LANGUAGE are in
test_ssip_clients.py). Through the real daemon on its shipped defaults (the direct local voice)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from playspeak.config import Config, ControlConfig
from playspeak.daemon import open_daemon
from playspeak.engines import Synthesizer
from playspeak.engines.espeak import espeak_voice
from playspeak.engines.piper import find_models
from playspeak.style import SETTINGS
from playspeak.utterances import SpeechRequest, UtteranceBuilder
from playspeak.voices import (
    Voice,
    espeak_voices,
    for_language,
    parse_espeak_voices,
    service_voices,
)

from daemon_helpers import LineClient
from soundcard import PulseNullSink

LISTING = """Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  af              --/M      Afrikaans          gmw/af
 5  chr-US-Qaaa-x-west --/M      Cherokee_          iro/chr
 5  de              --/M      German             gmw/de
 5  en-gb-scotland  --/M      English_(Scotland) gmw/en-GB-scotland
 2  en-us           --/M      English_(America)  gmw/en-US            (en 10)
 5  yue             --/M      Chinese_(Cantonese) sit/yue              (zh-yue 5)(zh 8)
 5  yue             --/M      Chinese_(Cantonese,_latin_as_Jyutping) sit/yue-Latn-jyutping
"""


def test_espeak_listing_becomes_one_voice_each_with_its_own_id() -> None:
    voices = parse_espeak_voices(LISTING)
    assert [v.id for v in voices] == [
        "espeak:af",
        "espeak:chr-US-Qaaa-x-west",
        "espeak:de",
        "espeak:en-gb-scotland",
        "espeak:en-us",
        "espeak:yue",
        "espeak:yue-Latn-jyutping",  # yue's second voice: named by its file
    ]
    assert voices[3].name == "English (Scotland)" and voices[3].engine == "espeak"
    assert [v.language for v in voices[-3:]] == ["en-us", "yue", "yue"]


def test_a_listed_espeak_voice_is_named_to_espeak_ng_by_its_file() -> None:
    assert espeak_voice("espeak:chr-US-Qaaa-x-west") == "iro/chr"
    assert espeak_voice("Espeak:EN-us+f3") == "gmw/en-US+f3"  # any case, a variant kept
    assert espeak_voice("espeak:en-zz") == "en-zz"  # not listed: espeak-ng chooses


async def test_every_listed_espeak_voice_speaks_as_itself() -> None:
    """The real espeak-ng: each voice offered speaks (Cherokee's language, as listed, is no
    name `espeak-ng -v` knows), and each is its own (yue's second voice is not the first)."""
    synth = Synthesizer("espeak")
    voices = espeak_voices()
    assert len(voices) > 100 and "espeak:chr-US-Qaaa-x-west" in [v.id for v in voices]
    spoken: dict[str, bytes] = {}
    failed: list[str] = []
    for voice in voices:
        try:
            pcm, _ = await synth.pcm("test", voice.id, 1.0)
        except subprocess.CalledProcessError:
            failed.append(voice.id)
            continue
        assert len(pcm) > 0, voice.id
        spoken[voice.id] = pcm.tobytes()
    assert failed == []
    assert spoken["espeak:yue"] != spoken["espeak:yue-Latn-jyutping"]


def test_a_language_picks_its_voice_exactly_else_one_of_its_family() -> None:
    voices = parse_espeak_voices(LISTING)
    assert for_language(voices, "de").id == "espeak:de"  # type: ignore[union-attr]
    assert for_language(voices, "en_US").id == "espeak:en-us"  # type: ignore[union-attr]
    # no plain en: the voice espeak-ng serves en with, "(en 10)", before the family's first
    assert for_language(voices, "en").id == "espeak:en-us"  # type: ignore[union-attr]
    assert for_language(voices, "en-gb").id == "espeak:en-gb-scotland"  # type: ignore[union-attr]
    assert for_language(voices, "fr") is None


def test_a_language_is_looked_for_in_the_default_engines_voices_first() -> None:
    """The first listed engine is the default one (local_voices): an English Piper voice
    listed after espeak-ng's is not what `en` gets, and listed first it is."""
    espeak = parse_espeak_voices(LISTING)
    piper = Voice("piper:en_US-joe-medium", "en_US-joe-medium", "en-us", "piper")
    assert for_language([*espeak, piper], "en-us").id == "espeak:en-us"  # type: ignore[union-attr]
    assert for_language([piper, *espeak], "en").id == piper.id  # type: ignore[union-attr]
    assert for_language([piper, *espeak], "de").id == "espeak:de"  # type: ignore[union-attr]


def test_the_builder_gives_a_speak_with_a_language_a_voice_of_it() -> None:
    """One builder: the control protocol, MQTT, the CLI and SSIP all get this."""
    builder = UtteranceBuilder(Config().api, voices=parse_espeak_voices(LISTING))
    assert builder.params(SpeechRequest("Hallo", language="de"))["voice"] == "espeak:de"
    chosen = SpeechRequest("Hallo", voice="espeak:af", language="de")
    assert builder.params(chosen)["voice"] == "espeak:af"  # a voice named wins
    assert builder.params(SpeechRequest("Bonjour", language="fr"))["voice"] == Config().api.voice


def test_a_service_lists_the_configured_voice() -> None:
    [voice] = service_voices(Config().api.voice)
    assert voice == Voice(Config().api.voice, "female-cs", "", "service")


async def test_voices_lists_every_espeak_language_and_each_piper_voice(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    listing = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True).stdout
    languages = [line.split()[1] for line in listing.splitlines()[1:] if line.split()]
    config = Config(control=ControlConfig(socket=str(tmp_path / "playspeak.sock")))
    async with open_daemon(config) as daemon:
        client = await LineClient.open(daemon.socket_path)
        reply = await client.command(cmd="voices")
        assert reply["event"] == "ok" and reply["cmd"] == "voices"
        voices = reply["voices"]
        assert all({"id", "name", "language", "engine"} <= set(v) for v in voices)
        ids = [v["id"] for v in voices]
        espeak = [v for v in voices if v["engine"] == "espeak"]
        assert [v["language"] for v in espeak] == [lang.lower() for lang in languages]
        assert len(set(ids)) == len(ids) and "espeak:chr-US-Qaaa-x-west" in ids
        piper = [v for v in voices if v["engine"] == "piper"]
        assert [v["id"] for v in piper] == [m.id for m in find_models()]
        plain = ["break", "mark", "prosody", "say-as", "sub"]
        assert all(v["refuses"] == list(SETTINGS) and v["ssml"] == plain for v in piper)
        german = next(v for v in voices if v["id"] == "espeak:de")
        assert german["language"] == "de" and german["refuses"] == []
        assert german["ssml"] == ["break", "emphasis", "mark", "prosody", "say-as", "sub"]

        env = {**os.environ, "PLAYSPEAK_SOCKET": str(daemon.socket_path)}
        result = await trio.run_process(
            [sys.executable, "-m", "playspeak", "voices"], env=env, capture_stdout=True
        )
        lines = result.stdout.decode().splitlines()
        assert [line.split("\t")[0] for line in lines] == ids
        assert "espeak:de\tde\tespeak\tGerman" in lines


@pytest.mark.parametrize("voice", ["espeak:de", "espeak:fr", "espeak:chr-US-Qaaa-x-west"])
async def test_a_listed_voice_in_a_speak_is_spoken(
    tmp_path: Path, sound_card: PulseNullSink, voice: str
) -> None:
    config = Config(control=ControlConfig(socket=str(tmp_path / "playspeak.sock")))
    async with open_daemon(config) as daemon:
        client = await LineClient.open(daemon.socket_path)
        reply = await client.command(cmd="speak", text="Bonjour.", voice=voice)
        events = await client.events_until_end({reply["id"]})
        assert [e["event"] for e in events] == ["queued", "started", "finished"]
