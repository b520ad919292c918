"""Untrusted SSML made safe for espeak-ng (ssml.py, no I/O): only allowed elements and values
pass, declarations are refused, marks cut the document with its open elements re-opened."""

from __future__ import annotations

import pytest

from playspeak import ssml
from playspeak.engines import Synthesizer
from playspeak.marks import Segment
from playspeak.style import Style


def test_allowed_markup_passes_and_the_rest_is_dropped_keeping_its_words() -> None:
    tokens = ssml.parse('<audio src="/etc/passwd">a <b>bold</b> &amp; <break time="1s"/></audio>')
    assert ssml.render(tokens) == '<speak> a  bold &amp;  <break time="1s"/></speak>'
    assert ssml.words_of(tokens) == "a bold &"
    # an attribute espeak-ng has no use for is dropped, one it reads is checked
    kept = ssml.parse('<speak xml:lang="en"><prosody rate="+20%" foo="x">Hi</prosody></speak>')
    assert ssml.render(kept) == '<speak><prosody rate="+20%">Hi</prosody></speak>'


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<speak>open", "malformed SSML: no element found"),
        ("AT&T", "malformed SSML: not well-formed"),
        ("a &nbsp; b", "malformed SSML: undefined entity"),
        ('<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaa">]><s>&a;</s>', "malformed SSML"),
        ('<prosody rate="1; rm">x</prosody>', "<prosody rate> has a value"),
        ('<mark name="a&#10;700 END"/>x', "a mark's name may not hold a line break"),
        ("<p>" * 40 + "deep", "nests more than 32"),
    ],
)
def test_what_is_not_safe_ssml_is_refused_naming_why(text: str, error: str) -> None:
    with pytest.raises(ssml.SsmlError, match=error):
        ssml.parse(text)


def test_marks_cut_the_document_and_each_part_keeps_its_prosody() -> None:
    tokens = ssml.parse('<prosody rate="50%">One <mark name="m"/>two</prosody><mark name="end"/>')
    assert ssml.segments(tokens) == (
        Segment((), '<speak><prosody rate="50%">One  </prosody></speak>'),
        Segment(("m",), '<speak><prosody rate="50%">two</prosody> </speak>'),
        Segment(("end",), ""),
    )
    with pytest.raises(ssml.SsmlError, match="no words"):
        ssml.spoken(ssml.parse("<speak><break/></speak>"))


def test_a_voice_without_markup_gets_the_words_and_refuses_the_knobs() -> None:
    synth = Synthesizer("generated")
    style = Style(ssml=True)
    assert synth.readable('<speak>Hi <break time="1s"/> you</speak>', "x", style) == (
        "Hi you",
        Style(),
    )
    assert synth.refusal("x", style) is None  # SSML: its words, stated in `voices`
    why = synth.refusal("x", Style(pitch_range=20, capitals="spell"))
    assert why == "the voice 'x' (generated) cannot set capitals, pitch_range"
