"""The SSIP core without sockets: framing, SPEAK data, SET rules, replies, 7xx events, and one
connection's command handling against a stand-in speaker."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playspeak.config import DEFAULT_VOICE, Config
from playspeak.events import Failed, Finished, Paused, Resumed, Started
from playspeak.marks import Segment
from playspeak.speech import EventHub, QueueFull, Utterance
from playspeak.ssip import settings as s
from playspeak.ssip.protocol import (
    INVALID_COMMAND,
    INVALID_ENCODING,
    LINE_TOO_LONG,
    RECEIVING_DATA,
    Command,
    Reply,
    Speak,
    SsipError,
    SsipReader,
    event,
)
from playspeak.ssip.session import Shared, SsipSession
from playspeak.style import Style
from playspeak.utterances import UtteranceBuilder
from playspeak.voices import Voice

# ---- replies and events ----------------------------------------------------------------------


def test_replies_are_crlf_lines_with_dash_continuations() -> None:
    assert Reply(208, "OK CLIENT NAME SET").encode() == b"208 OK CLIENT NAME SET\r\n"
    assert Reply(225, "OK MESSAGE QUEUED", ("21",)).encode() == (
        b"225-21\r\n225 OK MESSAGE QUEUED\r\n"
    )


def test_events_carry_message_and_client_ids() -> None:
    assert event(701, "BEGIN", 12, 3) == b"701-12\r\n701-3\r\n701 BEGIN\r\n"
    assert event(703, "CANCELED", 5, 1) == b"703-5\r\n703-1\r\n703 CANCELED\r\n"


# ---- framing ---------------------------------------------------------------------------------


def test_commands_end_in_crlf_or_bare_lf_and_may_arrive_in_pieces() -> None:
    reader = SsipReader()
    assert reader.feed(b"SET SELF CLIENT_NAME joe:vi:default\r") == []
    assert reader.feed(b"\nset self rate 20\nQUIT\r\n") == [
        Command("SET", "SELF CLIENT_NAME joe:vi:default"),
        Command("SET", "self rate 20"),
        Command("QUIT"),
    ]


def test_speak_data_until_the_dot_line_with_dot_stuffing_undone() -> None:
    reader = SsipReader()
    assert reader.feed(b"SPEAK\r\n") == [RECEIVING_DATA]
    assert reader.receiving_data
    body = b"Hello,\r\n..hidden dot line\r\nbare lf line\n.. \r\n"
    assert reader.feed(body) == []
    assert reader.feed(b".\r\nQUIT\r\n") == [
        Speak("Hello,\n.hidden dot line\nbare lf line\n. "),
        Command("QUIT"),
    ]
    assert not reader.receiving_data


def test_a_whole_exchange_in_one_packet() -> None:
    items = SsipReader().feed(b"speak\nhi\n.\nspeak\r\n..\r\n.\r\n")
    assert items == [RECEIVING_DATA, Speak("hi"), RECEIVING_DATA, Speak(".")]


def test_bad_utf8_and_unknown_lines_get_error_replies_and_reading_goes_on() -> None:
    reader = SsipReader()
    assert reader.feed(b"SET SELF LANGUAGE \xff\r\n") == [INVALID_ENCODING]
    assert reader.feed(b"\r\n") == [INVALID_COMMAND]
    assert reader.feed(b"SPEAK\r\nbad \xc3\r\n.\r\n") == [RECEIVING_DATA, INVALID_ENCODING]
    assert reader.feed(b"QUIT\r\n") == [Command("QUIT")]


def test_overlong_lines_are_refused_once_and_skipped() -> None:
    reader = SsipReader(max_line_bytes=16)
    assert reader.feed(b"SET SELF LANGUAGE " + b"x" * 40) == [LINE_TOO_LONG]
    assert reader.feed(b"y" * 40) == []  # the rest of the same line
    assert reader.feed(b"zz\r\nQUIT\r\n") == [Command("QUIT")]
    assert reader.feed(b"SET SELF LANGUAGE toolong\r\n") == [LINE_TOO_LONG]


def test_an_overlong_text_is_read_to_its_dot_then_refused() -> None:
    reader = SsipReader(max_line_bytes=16, max_text_bytes=32)
    assert reader.feed(b"SPEAK\r\n") == [RECEIVING_DATA]
    assert reader.feed(b"a line of twenty chars\r\n" * 3) == []
    (reply,) = reader.feed(b".\r\n")
    assert isinstance(reply, Reply) and reply.code // 100 == 3
    assert reader.feed(b"SPEAK\r\nshort\r\n.\r\n") == [RECEIVING_DATA, Speak("short")]


def test_unfinished_input_is_counted_and_an_overlong_text_is_not_kept() -> None:
    reader = SsipReader(max_line_bytes=16, max_text_bytes=32)
    assert (reader.unfinished, reader.buffered) == (False, 0)
    reader.feed(b"SET SELF")
    assert (reader.unfinished, reader.buffered) == (True, 8)
    reader.feed(b" RATE 1\r\nSPEAK\r\nhello\r\n")
    assert (reader.unfinished, reader.buffered) == (True, 6), "the text so far, until its dot"
    reader.feed(b"a line of twenty chars\r\n" * 3)
    assert (reader.unfinished, reader.buffered) == (True, 0), "over its limit: dropped"
    (reply,) = reader.feed(b".\r\n")
    assert isinstance(reply, Reply) and reply.code == 300
    assert (reader.unfinished, reader.buffered) == (False, 0)


# ---- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "code", "attribute", "expected"),
    [
        ("CLIENT_NAME", '"joe:spd-say:main"', 208, "client_name", "joe:spd-say:main"),
        ("PRIORITY", "IMPORTANT", 202, "priority", "important"),
        ("LANGUAGE", "C", 201, "language", "C"),
        ("RATE", "-100", 203, "rate", -100),
        ("PITCH", "30", 204, "pitch", 30),
        ("PITCH_RANGE", "10", 263, "pitch_range", 10),
        ("VOLUME", "-30", 218, "volume", -30),
        ("VOICE_TYPE", "female1", 209, "voice_type", "FEMALE1"),
        ("SYNTHESIS_VOICE", "angelo", 209, "synthesis_voice", "angelo"),
        ("OUTPUT_MODULE", "espeak-ng", 216, "output_module", "espeak-ng"),
        ("PUNCTUATION", "most", 205, "punctuation", "most"),
        ("SPELLING", "on", 207, "spelling", True),
        ("CAP_LET_RECOGN", "icon", 206, "cap_let_recogn", "icon"),
        ("PAUSE_CONTEXT", "2", 217, "pause_context", 2),
        ("SSML_MODE", "On", 219, "ssml_mode", True),
    ],
)
def test_set_replies_with_speechd_codes(
    name: str, value: str, code: int, attribute: str, expected: Any
) -> None:
    settings = s.Settings()
    s.check_set(name, is_self=True, in_block=False)
    assert s.apply_set(settings, name, value).code == code
    assert getattr(settings, attribute) == expected


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("RATE", "fast", 511),
        ("RATE", "101", 409),
        ("RATE", "-101", 410),
        ("VOLUME", "200", 413),
        ("PRIORITY", "urgent", 408),
        ("SPELLING", "maybe", 513),
        ("PUNCTUATION", "lots", 514),
        ("NOTIFICATION", "begin", 510),
        ("NOTIFICATION", "begin perhaps", 513),
        ("NOTIFICATION", "everything on", 514),
        ("LANGUAGE", "", 510),
        ("PAUSE_CONTEXT", "²", 511),
    ],
)
def test_bad_set_values_get_error_codes(name: str, value: str, code: int) -> None:
    with pytest.raises(SsipError) as caught:
        s.apply_set(s.Settings(), name, value)
    assert caught.value.reply.code == code


def test_set_rules_for_targets_blocks_and_unknown_parameters() -> None:
    for name, code in (("PRIORITY", 301), ("CLIENT_NAME", 514), ("NOTIFICATION", 514)):
        with pytest.raises(SsipError) as caught:
            s.check_set(name, is_self=False, in_block=False)
        assert caught.value.reply.code == code
    with pytest.raises(SsipError) as caught:
        s.check_set("PRIORITY", is_self=True, in_block=True)
    assert caught.value.reply.code == 332
    s.check_set("RATE", is_self=False, in_block=True)
    with pytest.raises(SsipError) as caught:
        s.check_set("COLOUR", is_self=True, in_block=False)
    assert caught.value.reply.code == 514


def test_client_name_is_set_once() -> None:
    settings = s.Settings()
    s.apply_set(settings, "CLIENT_NAME", "a:b:c")
    with pytest.raises(SsipError) as caught:
        s.apply_set(settings, "CLIENT_NAME", "d:e:f")
    assert caught.value.reply.code == 311 and settings.client_name == "a:b:c"


def test_notifications_by_type_and_all() -> None:
    settings = s.Settings()
    assert s.apply_set(settings, "NOTIFICATION", "END on").code == 220
    assert settings.notifications == {"end"}
    s.apply_set(settings, "NOTIFICATION", "all on")
    s.apply_set(settings, "NOTIFICATION", "index_marks off")
    assert settings.notifications == {"begin", "end", "cancel", "pause", "resume"}


def test_rate_and_volume_map_to_speed_and_gain() -> None:
    settings = s.Settings()
    assert (settings.speed, settings.gain) == (1.0, 1.0)  # speechd's defaults: rate 0, volume 100
    settings.rate, settings.volume = 100, 0
    assert (settings.speed, settings.gain) == (2.0, 0.5)
    settings.rate, settings.volume = -100, -100
    assert (settings.speed, settings.gain) == (0.5, 0.0)


def test_texts_for_ssml_spelling_chars_keys_and_icons() -> None:
    ssml = s.Settings(ssml_mode=True)
    # SSML made safe for espeak-ng: an unknown tag dropped, the text escaped again
    said = ssml.text_for("<speak>Hello <b>world</b> &amp; you</speak>")
    assert said == s.Spoken(
        "<speak>Hello  world &amp; you</speak>", ssml=True, words="Hello world & you"
    )
    marked = ssml.text_for("<speak>Hello <mark name='m'/>world &amp; you</speak>")
    assert marked.segments == (
        Segment((), "<speak>Hello  </speak>"),
        Segment(("m",), "<speak>world &amp; you</speak>"),
    )
    # markup that is not SSML: its words, and why
    broken = ssml.text_for("<speak>Hello <b>world</speak>")
    assert (broken.text, broken.ssml) == ("Hello world", False)
    assert "malformed SSML: mismatched tag" in broken.problem
    assert s.Settings(ssml_mode=False).text_for("a <mark name='m'/>").text == "a <mark name='m'/>"
    assert s.char_text("space") == "space" and s.char_text("é") == "é"
    assert s.key_text("control_alt_kp-enter") == "control alt kp enter"
    assert s.key_text("_") == "_" and s.key_text("shift_A") == "shift A"
    assert s.icon_text("message_new") == "message new"


def test_get_returns_values() -> None:
    settings = s.Settings(rate=20)
    assert s.get(settings, "rate").encode() == b"251-20\r\n251 OK GET RETURNED\r\n"


# ---- one connection, with a stand-in speaker -----------------------------------------------


class FakeSpeaker:
    """Records what a session asks; sends the events a real speaker sends at once."""

    def __init__(self, limit: int = 10) -> None:
        self.hub = EventHub()
        self.submitted: list[Utterance] = []
        self.cancelled: list[str] = []
        self.holds: dict[object, Callable[[Utterance], bool]] = {}
        self.jobs: list[Any] = []
        self.limit = limit

    def submit(self, u: Utterance) -> None:
        if len(self.submitted) >= self.limit:
            raise QueueFull(f"queue full ({self.limit} utterances waiting)")
        self.submitted.append(u)
        self.hub.queued(u, 1)
        if u.priority == "notification":  # as if something else were speaking
            self.hub.cancelled(u, "dropped")

    def cancel(self, select: Callable[[Utterance], bool], reason: str = "") -> list[str]:
        ids = [u.id for u in self.submitted if select(u) and not u.ended]
        for u in self.submitted:
            if u.id in ids:
                self.hub.cancelled(u, reason)
        self.cancelled += ids
        return ids

    def hold(self, holder: object, select: Callable[[Utterance], bool]) -> None:
        self.holds[holder] = select

    def release(self, holder: object) -> bool:
        return self.holds.pop(holder, None) is not None


class Client:
    """A session and the bytes it sent back."""

    def __init__(self, shared: Shared) -> None:
        self.out: list[bytes] = []
        self.session = SsipSession(shared, self.out.append)
        shared.sessions[self.session.client_id] = self.session
        self.reader = SsipReader()

    def say(self, data: bytes) -> bytes:
        """Send lines; what came back since the last call."""
        self.out.clear()
        for item in self.reader.feed(data):
            self.session.handle(item)
        return b"".join(self.out)


@pytest.fixture
def shared() -> Shared:
    return Shared(FakeSpeaker(), UtteranceBuilder(Config().api))  # type: ignore[arg-type]


def test_speak_builds_the_utterance_from_the_settings(shared: Shared) -> None:
    client = Client(shared)
    client.say(b"SET SELF RATE 100\r\nSET SELF VOLUME 0\r\nSET SELF PRIORITY text\r\n")
    client.say(b"SET SELF SYNTHESIS_VOICE angelo\r\n")
    assert client.say(b"SPEAK\r\nHello\r\n.\r\n") == (
        b"230 OK RECEIVING DATA\r\n225-1\r\n225 OK MESSAGE QUEUED\r\n"
    )
    (u,) = shared.speaker.submitted
    assert u.text == "Hello" and u.priority == "text" and u.gain == 0.5 and u.id == "ssip-1"
    assert u.params == {
        "text": "Hello",
        "voice": "angelo",
        "output_format": "mp3",
        "sample_rate": 24000,
        "speed": 2.0,
    }
    client.say(b"SET SELF SYNTHESIS_VOICE " + DEFAULT_VOICE.encode() + b"\r\nCHAR space\r\n")
    assert shared.speaker.submitted[1].text == "space"


def test_events_follow_the_reply_and_only_those_switched_on(shared: Shared) -> None:
    client = Client(shared)
    client.say(b"SET SELF NOTIFICATION cancel on\r\nSET SELF PRIORITY notification\r\n")
    # The stand-in drops a notification at once: its 703 comes after the 225, never before.
    assert client.say(b"SPEAK\r\nNew mail\r\n.\r\n") == (
        b"230 OK RECEIVING DATA\r\n225-1\r\n225 OK MESSAGE QUEUED\r\n"
        b"703-1\r\n703-1\r\n703 CANCELED\r\n"
    )
    (u,) = shared.speaker.submitted
    assert u.owner is not None
    client.out.clear()
    u.owner.send(Started(u.id, 0.0, "service"))
    assert client.out == []  # BEGIN was not switched on


def test_events_map_to_their_codes(shared: Shared) -> None:
    client = Client(shared)
    client.say(b"SET SELF NOTIFICATION all on\r\nSPEAK\r\nhi\r\n.\r\n")
    (u,) = shared.speaker.submitted
    assert u.owner is not None
    for happened, code, text in (
        (Started(u.id, 0.0, "service"), 701, "BEGIN"),
        (Paused(u.id, 0.0), 704, "PAUSED"),
        (Resumed(u.id, 0.0), 705, "RESUMED"),
        (Finished(u.id, 0.0, "cache"), 702, "END"),
        (Failed(u.id, 0.0, "link lost"), 703, "CANCELED"),
    ):
        client.out.clear()
        u.owner.send(happened)
        assert client.out == [event(code, text, 1, client.session.client_id)]


def test_cancel_self_takes_only_this_connections_messages(shared: Shared) -> None:
    a, b = Client(shared), Client(shared)
    a.say(b"SPEAK\r\nmine\r\n.\r\n")
    b.say(b"SPEAK\r\ntheirs\r\n.\r\n")
    assert b.say(b"CANCEL self\r\n") == b"213 OK CANCELED\r\n"
    assert shared.speaker.cancelled == ["ssip-2"]
    assert a.say(f"CANCEL {b.session.client_id}\r\n".encode()) == b"213 OK CANCELED\r\n"
    assert a.say(b"CANCEL all\r\n") == b"213 OK CANCELED\r\n"
    assert shared.speaker.cancelled == ["ssip-2", "ssip-1"]
    assert a.say(b"CANCEL nobody\r\n").startswith(b"514 ")
    assert a.say("CANCEL ²\r\n".encode()).startswith(b"514 ")


def test_set_all_and_set_by_id_reach_other_connections(shared: Shared) -> None:
    a, b = Client(shared), Client(shared)
    assert a.say(b"SET all RATE 40\r\n") == b"203 OK RATE SET\r\n"
    assert (a.session.settings.rate, b.session.settings.rate) == (40, 40)
    a.say(f"SET {b.session.client_id} VOLUME 10\r\n".encode())
    assert (a.session.settings.volume, b.session.settings.volume) == (100, 10)
    assert a.say(b"SET 99 VOLUME 10\r\n").startswith(b"402 ")


def test_pause_resume_and_the_4xx_for_resuming_what_is_not_paused(shared: Shared) -> None:
    a, b = Client(shared), Client(shared)
    holds = shared.speaker.holds  # type: ignore[attr-defined]
    assert a.say(b"RESUME self\r\n").startswith(b"4")
    assert a.say(b"PAUSE self\r\n") == b"211 OK PAUSED\r\n"
    assert set(holds) == {a.session}  # its own messages only
    assert a.say(b"RESUME self\r\n") == b"212 OK RESUMED\r\n"
    assert a.say(b"PAUSE all\r\n") == b"211 OK PAUSED\r\n"
    assert set(holds) == {a.session, b.session}
    b.session.close()  # a connection's pause ends with it
    assert set(holds) == {a.session}
    assert a.say(b"RESUME all\r\n") == b"212 OK RESUMED\r\n"
    assert not holds


def test_lists_history_help_and_quit(shared: Shared) -> None:
    client = Client(shared)
    assert client.say(b"LIST OUTPUT_MODULES\r\n") == b"250-playai\r\n250 OK MODULE LIST SENT\r\n"
    voices = client.say(b"LIST VOICES\r\n")
    assert voices.startswith(b"249-MALE1\r\n") and voices.endswith(b"249 OK VOICE LIST SENT\r\n")
    assert client.say(b"LIST SYNTHESIS_VOICES\r\n") == (
        f"249-{DEFAULT_VOICE}\tnone\tnone\r\n249 OK VOICE LIST SENT\r\n".encode()
    )
    cid = client.session.client_id
    assert client.say(b"HISTORY GET CLIENT_ID\r\n") == (
        f"245-{cid}\r\n245 OK CLIENT ID SENT\r\n".encode()
    )
    assert client.say(b"HISTORY GET LAST\r\n").startswith(b"380 ")
    assert client.say(b"HELP\r\n").endswith(b"248 OK HELP SENT\r\n")
    assert client.say(b"FROBNICATE\r\n") == b"500 ERR INVALID COMMAND\r\n"
    assert client.say(b"SET SELF HISTORY on\r\n").startswith(b"299 ")
    assert client.say(b"QUIT\r\n") == b"231 HAPPY HACKING\r\n"


def test_a_block_is_one_message_spoken_when_it_ends(shared: Shared) -> None:
    client = Client(shared)
    assert client.say(b"BLOCK END\r\n").startswith(b"331 ")
    assert client.say(b"BLOCK BEGIN\r\n") == b"260 OK INSIDE BLOCK\r\n"
    assert client.say(b"BLOCK BEGIN\r\n").startswith(b"330 ")
    assert client.say(b"SPEAK\r\nThe word\r\n.\r\n").endswith(b"225-1\r\n225 OK MESSAGE QUEUED\r\n")
    assert client.say(b"SET SELF RATE 10\r\n") == b"203 OK RATE SET\r\n"
    assert client.say(b"SET SELF PRIORITY text\r\n").startswith(b"332 ")
    assert client.say(b"LIST VOICES\r\n").startswith(b"332 ")
    assert client.say(b"KEY shift_a\r\n") == b"225-1\r\n225 OK MESSAGE QUEUED\r\n"
    assert shared.speaker.submitted == []
    assert client.say(b"BLOCK END\r\n") == b"261 OK OUTSIDE BLOCK\r\n"
    (u,) = shared.speaker.submitted
    assert u.text == "The word\nshift a" and u.params["speed"] == 1.0  # settings of its start


def test_empty_text_queue_full_and_internal_errors_keep_the_connection(shared: Shared) -> None:
    client = Client(shared)
    assert client.say(b"SPEAK\r\n\r\n.\r\n").endswith(b"227 OK MESSAGE CANCELED\r\n")
    shared.speaker.limit = 0
    assert client.say(b"SPEAK\r\nToo many\r\n.\r\n").endswith(b"\r\n")
    assert client.out[-1].startswith(b"300 ERR QUEUE FULL")
    shared.speaker.submit = None  # a bug
    assert client.say(b"CHAR a\r\n") == b"300 ERR INTERNAL\r\n"
    assert client.say(b"GET RATE\r\n") == b"251-0\r\n251 OK GET RETURNED\r\n"


WORDS = [b"SET", b"SELF", b"all", b"7", b"SPEAK", b".", b"..", b"RATE", b"NOTIFICATION", b"on"]
CHUNKS = st.lists(
    st.one_of(st.binary(max_size=40), st.sampled_from([*WORDS, b" ", b"\r\n", b"\n"])),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(CHUNKS)
def test_any_bytes_get_well_formed_replies_and_nothing_escapes(chunks: list[bytes]) -> None:
    client = Client(Shared(FakeSpeaker(), UtteranceBuilder(Config().api)))  # type: ignore[arg-type]
    client.reader.max_line_bytes = 64
    replies = b"".join(client.say(chunk) for chunk in chunks)
    for line in replies.split(b"\r\n")[:-1]:
        assert line[:3].isdigit() and line[3:4] in (b"-", b" "), replies
        assert not line.startswith(b"300 ERR INTERNAL"), replies


def test_a_language_the_client_set_is_passed_to_the_service(shared: Shared) -> None:
    client = Client(shared)
    client.say(b"SPEAK\r\nHello\r\n.\r\n")
    assert "language" not in shared.speaker.submitted[0].params  # the factory "en" is not sent
    assert client.say(b"SET SELF LANGUAGE de\r\n") == b"201 OK LANGUAGE SET\r\n"
    client.say(b"SPEAK\r\nHallo\r\n.\r\n")
    assert shared.speaker.submitted[1].params["language"] == "de"


# ---- a setting the session's voice cannot honour: refused at its SET -------------------------


def _no_knobs_but_espeak(voice: str, style: Style) -> str | None:
    """A stand-in for Synthesizer.refusal: a piper:… voice has none of style.SETTINGS."""
    asked = style.unsettable()
    if not voice.startswith("piper:") or not asked:
        return None
    return f"the voice {voice!r} (piper) cannot set {', '.join(asked)}"


def refusing(voice: str = DEFAULT_VOICE) -> Shared:
    api = dataclasses.replace(Config().api, voice=voice)
    voices = [
        Voice("piper:de", "Thorsten", "de", "piper"),
        Voice("espeak:de", "German", "de", "espeak"),
    ]
    builder = UtteranceBuilder(api, voices=voices, refusal=_no_knobs_but_espeak)
    return Shared(FakeSpeaker(), builder)  # type: ignore[arg-type]


REFUSES = b"417 ERR VOICE REFUSES (THE VOICE 'PIPER:X' (PIPER) CANNOT SET %s)\r\n"


def test_a_style_setting_the_voice_cannot_honour_is_refused_at_its_set_and_not_kept() -> None:
    client = Client(refusing())
    assert client.say(b"SET SELF SYNTHESIS_VOICE piper:x\r\n").startswith(b"209")
    for line, refused in [
        (b"PITCH 50", b"PITCH"),
        (b"PITCH_RANGE -20", b"PITCH_RANGE"),
        (b"PUNCTUATION all", b"PUNCTUATION"),
        (b"CAP_LET_RECOGN spell", b"CAPITALS"),
    ]:
        assert client.say(b"SET SELF " + line + b"\r\n") == REFUSES % refused
    assert client.say(b"GET PITCH\r\n").startswith(b"251-0\r\n")
    assert client.say(b"GET PUNCTUATION\r\n").startswith(b"251-none\r\n")
    # the defaults are always taken; a wrong value is still told as such
    for line, code in [
        (b"PITCH 0", b"204"),
        (b"PITCH_RANGE 0", b"263"),
        (b"PUNCTUATION none", b"205"),
        (b"CAP_LET_RECOGN none", b"206"),
        (b"PITCH 500", b"411"),
        (b"RATE 50", b"203"),  # not a style setting: every voice has a rate
    ]:
        assert client.say(b"SET SELF " + line + b"\r\n")[:3] == code, line
    # nothing refused was kept: the message is spoken
    assert client.say(b"SPEAK\r\nHi\r\n.\r\n").endswith(b"225 OK MESSAGE QUEUED\r\n")
    (u,) = client.session.shared.speaker.submitted
    assert (u.params["voice"], "pitch" in u.params) == ("piper:x", False)


def test_the_voice_asked_is_the_one_the_session_would_speak_in() -> None:
    espeak = Client(refusing())  # the configured voice: espeak-ng's, which takes them all
    assert espeak.say(b"SET SELF PITCH 50\r\nSET SELF CAP_LET_RECOGN icon\r\n") == (
        b"204 OK PITCH SET\r\n206 OK CAP LET RECOGNITION SET\r\n"
    )
    # chosen by its language: the first voice listed for it
    by_language = Client(refusing())
    by_language.say(b"SET SELF LANGUAGE de\r\n")
    assert by_language.say(b"SET SELF PITCH 50\r\n").startswith(b"417 ")
    # else the configured one
    assert Client(refusing("piper:x")).say(b"SET SELF PITCH 50\r\n") == REFUSES % b"PITCH"
    # a voice that takes them, then one that does not: the voice is refused at its SET and
    # not kept, so the messages go on in the voice that takes them
    assert espeak.say(b"SET SELF SYNTHESIS_VOICE piper:x\r\n") == (
        b"417 ERR VOICE REFUSES (THE VOICE 'PIPER:X' (PIPER) CANNOT SET PITCH, CAPITALS)\r\n"
    )
    assert espeak.say(b"SET SELF LANGUAGE de\r\n").startswith(b"417 ")  # its voice: Piper's
    assert espeak.say(b"SPEAK\r\nHi\r\n.\r\n").endswith(b"225 OK MESSAGE QUEUED\r\n")
    (u,) = espeak.session.shared.speaker.submitted
    assert (u.params["voice"], "pitch" in u.params) == (DEFAULT_VOICE, True)
    # with the settings back at their defaults, the voice is taken
    espeak.say(b"SET SELF PITCH 0\r\nSET SELF CAP_LET_RECOGN none\r\n")
    assert espeak.say(b"SET SELF SYNTHESIS_VOICE piper:x\r\n").startswith(b"209")


def test_a_set_for_all_is_refused_for_all_when_one_voice_refuses() -> None:
    shared = refusing()
    piper, espeak = Client(shared), Client(shared)
    piper.say(b"SET SELF SYNTHESIS_VOICE piper:x\r\n")
    assert espeak.say(b"SET ALL PITCH 50\r\n") == REFUSES % b"PITCH"
    assert espeak.say(b"GET PITCH\r\n").startswith(b"251-0\r\n")  # not kept for any
    assert espeak.say(b"SET ALL PITCH 0\r\n") == b"204 OK PITCH SET\r\n"
    assert espeak.say(b"BLOCK BEGIN\r\n").startswith(b"260")  # within a block alike
    assert piper.say(b"BLOCK BEGIN\r\nSET SELF PITCH 50\r\n").endswith(REFUSES % b"PITCH")
