"""Index marks cut a text into segments (marks.py), and how a mark is told on each wire."""

from __future__ import annotations

import json

from playspeak import ssml
from playspeak.control.protocol import encode_message
from playspeak.events import Mark
from playspeak.marks import Segment, joined, plain, split_marks
from playspeak.ssip.protocol import notification


def test_ssml_is_cut_at_its_marks_with_its_other_tags_rendered_safe() -> None:
    text = "<speak>One <mark name=\"a\"/>two &amp; <b>three</b><mark name='b'/></speak>"
    segments = ssml.segments(ssml.parse(text))
    assert segments == (
        Segment((), "<speak>One  </speak>"),
        Segment(("a",), "<speak>two &amp;  three </speak>"),
        Segment(("b",), ""),
    )


def test_marks_with_no_words_between_are_told_together() -> None:
    tokens = ssml.parse('<mark name="a"/><mark name="b"/> Hello <mark name="c"/>')
    assert ssml.segments(tokens) == (
        Segment(("a", "b"), "<speak> Hello  </speak>"),
        Segment(("c",), ""),
    )
    plain_segments = split_marks('<mark name="a"/><mark name="b"/> Hello <mark name="c"/>')
    assert plain_segments == (Segment(("a", "b"), "Hello"), Segment(("c",), ""))
    assert joined(plain_segments) == "Hello"


def test_a_text_without_marks_or_without_words_is_not_cut() -> None:
    assert ssml.segments(ssml.parse("<speak>Hello</speak>")) == ()
    assert split_marks("Hello") == ()
    assert split_marks('<mark name="a"/>') == ()
    assert plain("<speak>Hello <b>world</b> &lt;3</speak>") == "Hello world <3"


def test_plain_text_keeps_every_other_angle_bracket() -> None:
    segments = split_marks('if a < b <mark name="m"/> then <b> stays')
    assert segments == (Segment((), "if a < b"), Segment(("m",), "then <b> stays"))
    assert split_marks("a <mark name='x\ny'/> b") == ()  # no line break in a name


def test_a_mark_on_the_control_socket_and_on_ssip() -> None:
    event = Mark("u1", 12.5, "m1")
    line = json.loads(encode_message(event))
    assert line == {"event": "mark", "id": "u1", "t": 12.5, "name": "m1"}
    assert (
        notification(event, 7, 3, {"index_marks"})
        == b"700-7\r\n700-3\r\n700-m1\r\n700 INDEX_MARK\r\n"
    )
    assert notification(event, 7, 3, {"begin", "end"}) is None
