"""One builder for an utterance's fields (utterances.py), whatever front end asked: the control
protocol's speak (and so the CLI and MQTT) and SSIP build the same utterance from the same
choices, with the defaults in force and the limits of limits.py."""

from __future__ import annotations

import dataclasses
import json

import pytest

from playspeak.commands import CommandHandler
from playspeak.config import DEFAULT_VOICE, ApiConfig, Config
from playspeak.control import protocol as p
from playspeak.events import Message
from playspeak.limits import SPEED
from playspeak.marks import Segment
from playspeak.speech import EventHub, SpeechQueue, Utterance
from playspeak.spelling import spell, spell_ssml, spelled
from playspeak.ssip.protocol import SsipReader
from playspeak.ssip.session import Shared, SsipSession
from playspeak.utterances import SpeechRequest, TextTooLong, UtteranceBuilder

API = ApiConfig(voice="configured-voice", speed=1.25, temperature=0.5)


class Outbox:
    def __init__(self) -> None:
        self.got: list[Message] = []
        self.utterances: set[Utterance] = set()
        self.subscribed = False

    def send(self, message: Message) -> None:
        self.got.append(message)


def test_the_defaults_in_force_fill_what_the_client_left_out() -> None:
    builder = UtteranceBuilder(API)
    assert builder.params(SpeechRequest("Hello")) == {
        "text": "Hello",
        "voice": "configured-voice",
        "output_format": "mp3",
        "sample_rate": 24000,
        "speed": 1.25,
        "temperature": 0.5,
    }
    assert "temperature" not in UtteranceBuilder(ApiConfig()).params(SpeechRequest("Hi"))


def test_what_the_client_chose_is_kept() -> None:
    request = SpeechRequest(
        "Hello",
        voice="v2",
        speed=0.75,
        temperature=0.0,  # zero is a choice, not "unset"
        output_format="wav",
        language="de",
    )
    assert UtteranceBuilder(API).params(request) == {
        "text": "Hello",
        "voice": "v2",
        "output_format": "wav",
        "sample_rate": 24000,
        "speed": 0.75,
        "temperature": 0.0,
        "language": "de",
    }
    assert UtteranceBuilder(API).params(SpeechRequest("Hi", voice=""))["voice"] == (
        "configured-voice"
    )


@pytest.mark.parametrize(("factor", "speed"), [(1.0, 1.25), (1.5, 1.875), (4.0, 2.0), (0.1, 0.5)])
def test_a_speed_factor_scales_the_speed_within_the_limits(factor: float, speed: float) -> None:
    params = UtteranceBuilder(API).params(SpeechRequest("Hi", speed_factor=factor))
    assert params["speed"] == speed and SPEED[0] <= params["speed"] <= SPEED[1]


def test_a_text_over_its_models_limit_is_refused_naming_both() -> None:
    builder = UtteranceBuilder(ApiConfig(model="Play3.0-mini"))
    builder.check(SpeechRequest("x" * 20_000))
    with pytest.raises(TextTooLong) as caught:
        builder.build(SpeechRequest("x" * 20_001), id="u1", owner=None)
    assert str(caught.value) == "text is 20001 characters; Play3.0-mini takes at most 20000"
    assert (caught.value.length, caught.value.limit) == (20_001, 20_000)
    builder.check(SpeechRequest("x" * 20_001, model="PlayDialog"))  # its limit is 50,000


def test_build_makes_the_utterance_with_its_id_owner_and_choices() -> None:
    builder = UtteranceBuilder(API, default_priority="text")
    owner = Outbox()
    u = builder.build(SpeechRequest("Hello"), id="a1", owner=None)
    assert (u.id, u.owner, u.priority, u.gain, u.chime, u.cache, u.model) == (
        "a1",
        None,
        "text",
        1.0,
        None,
        True,
        None,
    )
    request = SpeechRequest(
        "Hello", priority="important", gain=0.25, chime=True, cache=False, model="PlayDialog"
    )
    u = builder.build(request, id="a2", owner=owner)
    assert u.owner is owner and (u.priority, u.gain, u.chime, u.cache, u.model) == (
        "important",
        0.25,
        True,
        False,
        "PlayDialog",
    )
    assert u.params == builder.params(request)


def test_a_reload_changes_the_defaults_for_every_front_end() -> None:
    builder = UtteranceBuilder(API)
    builder.api = dataclasses.replace(API, voice="reloaded")
    builder.default_priority = "important"
    u = builder.build(SpeechRequest("Hi"), id="a1", owner=None)
    assert (u.params["voice"], u.priority) == ("reloaded", "important")


# ---- the front ends build through it --------------------------------------------------------


class Speaker:
    """What a front end hands its utterances to: here, a list."""

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub
        self.queue = SpeechQueue(10)
        self.submitted: list[Utterance] = []
        self.sources = None

    def submit(self, utterance: Utterance) -> None:
        self.submitted.append(utterance)


def _control(builder: UtteranceBuilder, line: str) -> Utterance:
    hub = EventHub()
    speaker = Speaker(hub)
    handler = CommandHandler(speaker, hub, builder, dict)  # type: ignore[arg-type]
    handler(Outbox(), p.parse_line(line), 1)
    (utterance,) = speaker.submitted
    return utterance


def _ssip(builder: UtteranceBuilder, lines: bytes) -> Utterance:
    speaker = Speaker(EventHub())
    session = SsipSession(Shared(speaker, builder), lambda line: None)  # type: ignore[arg-type]
    for item in SsipReader().feed(lines):
        session.handle(item)
    (utterance,) = speaker.submitted
    return utterance


def test_control_and_ssip_build_the_same_utterance_from_the_same_choices() -> None:
    builder = UtteranceBuilder(API)
    by_control = _control(builder, '{"cmd": "speak", "text": "Hello", "volume": 50}')
    by_ssip = _ssip(builder, b"SET SELF VOLUME 0\r\nSPEAK\r\nHello\r\n.\r\n")
    assert by_control.params == by_ssip.params == builder.params(SpeechRequest("Hello"))
    assert (by_control.gain, by_control.priority) == (by_ssip.gain, by_ssip.priority)
    assert by_ssip.id == "ssip-1" and by_control.id.startswith("u")


def test_ssip_says_a_text_too_long_in_its_own_words() -> None:
    builder = UtteranceBuilder(ApiConfig(model="Play3.0-mini"))
    out: list[bytes] = []
    speaker = Speaker(EventHub())
    session = SsipSession(Shared(speaker, builder), out.append)  # type: ignore[arg-type]
    for item in SsipReader(max_line_bytes=100_000).feed(
        b"SPEAK\r\n" + b"x" * 20_001 + b"\r\n.\r\n"
    ):
        session.handle(item)
    assert out[-1] == b"300 ERR MESSAGE TOO LONG (20001 CHARACTERS, LIMIT 20000)\r\n"
    assert speaker.submitted == []


def test_the_configured_defaults_are_the_daemons() -> None:
    builder = UtteranceBuilder(Config().api, Config().speech.default_priority)
    u = builder.build(SpeechRequest("Hi"), id="a1", owner=None)
    assert (u.params["voice"], u.params["speed"], u.priority) == (DEFAULT_VOICE, 1.0, "message")


# ---- spelling: one place for every front end -----------------------------------------------


def test_spelling_spaces_the_letters_of_plain_text_and_of_ssml_words() -> None:
    assert spell("ab c") == "a b c"
    assert spell(" h\tel\nlo ") == "h e l l o"  # white space is dropped, not spelled
    # SSML keeps its markup (escaped anew); only the words of its text are spelled
    said = spell_ssml('<speak>ab <prosody rate="50%">cd &amp; e</prosody></speak>')
    assert said == '<speak>a b<prosody rate="50%">c d&amp;e</prosody></speak>'
    marked = (Segment((), "ab"), Segment(("m",), "cd"), Segment(("end",), ""))
    assert spelled("ab cd", marked, False) == (
        "a b c d",
        (Segment((), "a b"), Segment(("m",), "c d"), Segment(("end",), "")),
    )


def test_a_spelled_speak_and_ssip_spelling_build_the_same_utterance() -> None:
    builder = UtteranceBuilder(API)
    by_control = _control(builder, '{"cmd": "speak", "text": "ab c", "spelling": true}')
    by_ssip = _ssip(builder, b"SET SELF SPELLING on\r\nSPEAK\r\nab c\r\n.\r\n")
    assert by_control.text == by_ssip.text == "a b c"
    assert by_control.params == by_ssip.params == builder.params(SpeechRequest("a b c"))
    # SSML alike: its words spelled, its markup kept; marks cut it as before
    text = 'Hi <mark name="m"/>you'
    line = json.dumps({"cmd": "speak", "text": text, "ssml": True, "spelling": True})
    by_control = _control(builder, line)
    sets = b"SET SELF SPELLING on\r\nSET SELF SSML_MODE on\r\n"
    by_ssip = _ssip(builder, sets + b"SPEAK\r\n" + text.encode() + b"\r\n.\r\n")
    spelled_segments = (Segment((), "<speak>H i</speak>"), Segment(("m",), "<speak>y o u</speak>"))
    assert by_control.segments == by_ssip.segments == spelled_segments
    assert by_control.params == by_ssip.params
    # the limit counts the text as spelled, as the voice reads it
    with pytest.raises(TextTooLong):
        UtteranceBuilder(ApiConfig(model="Play3.0-mini")).check(
            SpeechRequest("x" * 10_001, spelling=True)
        )
