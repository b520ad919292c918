"""Untrusted SSML made safe for espeak-ng (ssml.py, no I/O): only allowed elements and values
pass, declarations are refused, marks cut the document with its open elements re-opened; a
voice without markup says its parts (ssml_plain.py), each pause silence in the reply."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from playspeak import ssml
from playspeak.engines import Synthesizer, generated
from playspeak.localvoice import LocalReply
from playspeak.marks import Segment
from playspeak.ssml_plain import Part
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


def test_a_voice_without_markup_gets_the_parts_and_refuses_the_knobs() -> None:
    synth = Synthesizer("generated")
    style = Style(ssml=True)
    assert synth.readable('<speak>Hi <break time="1s"/> you</speak>', "x", style) == (
        (Part("Hi", pause=1.0), Part("you")),
        Style(),
    )
    assert synth.readable("Hi", "x", Style()) == ((Part("Hi"),), Style())
    silence, rate = synth.silence("x", 0.5)
    assert rate == generated.RATE and len(silence) == rate // 2 and not silence.any()
    assert synth.refusal("x", style) is None  # SSML: its parts, stated in `voices`
    why = synth.refusal("x", Style(pitch_range=20, capitals="spell"))
    assert why == "the voice 'x' (generated) cannot set capitals, pitch_range"


async def said(synth: Synthesizer, text: str, voice: str, speed: float = 1.0) -> np.ndarray:
    """What the local voice's reply carries for SSML `text`: its samples, as the speaker reads
    them."""
    steps, style = synth.steps_of(text, voice, speed, Style(ssml=True))
    reply = LocalReply()
    chunks = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reply.produce, synth, steps, voice, style)
        while (chunk := await reply.receive_stamped()) is not None:
            chunks.append(chunk[0])
    return np.frombuffer(b"".join(chunks), "<i2")


async def test_the_generated_voice_says_each_part_at_its_speed_and_gain_then_its_pause() -> None:
    synth = Synthesizer("generated")
    text = (
        '<speak><break time="200ms"/>One, <break time="1s"/>'
        '<prosody rate="50%" volume="50%">two</prosody> <break strength="strong"/></speak>'
    )
    one = generated.generate("One,", "generated", 1.2)
    two = generated.generate("two", "generated", 0.6)  # half of 1.2, within the speed limits
    quieter = np.round(two.astype(np.float32) * 0.5).astype(np.int16)
    rate = generated.RATE
    pauses = [np.zeros(round(seconds * rate), np.int16) for seconds in (0.2, 1.0, 0.3)]
    expected = np.concatenate([pauses[0], one, pauses[1], quieter, pauses[2]])
    assert np.array_equal(await said(synth, text, "generated", 1.2), expected)
    # the speed limits hold: 20 % of 1.2 is spoken at 0.5
    slowest = generated.generate("two", "generated", 0.5)
    assert np.array_equal(
        await said(synth, '<prosody rate="20%">two</prosody>', "generated", 1.2), slowest
    )
