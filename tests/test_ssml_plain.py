"""SSML as the voices without markup say it (ssml_plain.py, no I/O): parts of words at a speed
and gain, each followed by its pause, with espeak-ng's values and the guards kept."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from playspeak import ssml
from playspeak.limits import SPEED
from playspeak.ssml_plain import MAX_GAIN, MAX_PAUSE, Part, parts, parts_of


@pytest.mark.parametrize(
    ("brk", "seconds"),
    [
        ("<break/>", 0.16),
        ('<break strength="x-weak"/>', 0.05),
        ('<break strength="weak"/>', 0.10),
        ('<break strength="medium"/>', 0.16),
        ('<break strength="strong"/>', 0.30),
        ('<break strength="x-strong"/>', 0.60),
        ('<break strength="bogus"/>', 0.16),
        ('<break time="500ms"/>', 0.5),
        ('<break time="2s"/>', 2.0),
        ('<break time="1.5s"/>', 1.5),
        ('<break time="250"/>', 0.25),  # a bare number is milliseconds, as espeak-ng reads it
        ('<break strength="x-strong" time="100ms"/>', 0.1),  # the time wins
        ('<break time="20s"/>', MAX_PAUSE),  # espeak-ng would hold the speaker 20 s
        ('<break time="999999s"/>', MAX_PAUSE),
    ],
)
def test_a_break_is_a_pause_after_the_words_before_it(brk: str, seconds: float) -> None:
    assert parts(f"One {brk} two") == (Part("One", pause=seconds), Part("two"))
    assert parts('One <break strength="none"/> two') == (Part("One two"),)


def test_breaks_with_no_words_between_are_one_pause_the_longest() -> None:
    text = 'a <break/> <break time="1s"/><break strength="weak"/> b'
    assert parts(text) == (Part("a", pause=1.0), Part("b"))
    assert parts('<speak><break time="2s"/>late</speak>') == (Part("", pause=2.0), Part("late"))


@pytest.mark.parametrize(
    ("rate", "speed"),
    [
        ("x-slow", 0.6),
        ("slow", 0.8),
        ("medium", 1.0),
        ("default", 1.0),
        ("fast", 1.25),
        ("x-fast", 1.6),
        ("50%", 0.5),
        ("+20%", 1.2),
        ("-25%", 0.75),
        ("2", 2.0),  # espeak-ng: a number is a factor
        ("+0.5", 1.5),
        ("nonsense", 1.0),
    ],
)
def test_prosody_rate_is_a_speed_factor(rate: str, speed: float) -> None:
    assert parts(f'<prosody rate="{rate}">Hello</prosody>') == (Part("Hello", speed=speed),)


@pytest.mark.parametrize(
    ("volume", "gain"),
    [
        ("silent", 0.0),
        ("x-soft", 0.3),
        ("soft", 0.65),
        ("medium", 1.0),
        ("loud", 1.5),
        ("x-loud", MAX_GAIN),  # espeak-ng's 230 % would only clip
        ("50%", 0.5),
        ("-50%", 0.5),
        ("+6dB", 10 ** (6 / 20)),
        ("-6dB", 10 ** (-6 / 20)),
        ("20", 0.2),  # espeak-ng's amplitude, 100 the voice's own
        ("-20", 0.8),
        ("+40dB", MAX_GAIN),
    ],
)
def test_prosody_volume_is_a_gain(volume: str, gain: float) -> None:
    (part,) = parts(f'<prosody volume="{volume}">Hello</prosody>')
    assert part.words == "Hello" and part.gain == pytest.approx(gain)


def test_nested_prosody_changes_the_value_around_it_and_a_keyword_the_utterances() -> None:
    text = (
        '<prosody rate="50%">half <prosody rate="50%">quarter '
        '<prosody rate="fast">fast</prosody></prosody></prosody> whole'
    )
    assert parts(text) == (
        Part("half", speed=0.5),
        Part("quarter", speed=0.25),
        Part("fast", speed=1.25),
        Part("whole"),
    )
    assert Part("quarter", speed=0.25).speed_at(1.0) == SPEED[0]
    assert Part("x", speed=1.6).speed_at(1.5) == SPEED[1]
    assert Part("x", speed=0.8).speed_at(1.0) == 0.8


def test_pitch_and_emphasis_are_dropped_and_their_words_kept() -> None:
    text = '<prosody pitch="+50%" range="x-high">High</prosody> <emphasis>now</emphasis>'
    assert parts(text) == (Part("High now"),)


def test_say_as_characters_spells_and_sub_says_its_alias() -> None:
    text = (
        'Key <say-as interpret-as="characters">ab c</say-as>, '
        '<say-as interpret-as="date">2024</say-as> <sub alias="World Wide Web">WWW</sub>.'
    )
    assert parts(text) == (Part(f"Key {ssml.spelled('abc')} , 2024 World Wide Web ."),)
    assert ssml.spelled("ab c") == "a b c"


def test_a_mark_is_no_part_of_the_sound() -> None:
    assert parts('One <mark name="m"/>two') == (Part("One two"),)


_PIECES = st.sampled_from(
    [
        "word ",
        "two words ",
        '<break time="3s"/>',
        '<break time="60s"/>',
        '<break strength="strong"/>',
        '<prosody rate="x-fast">',
        '<prosody rate="10%">',
        '<prosody rate="+300%">',
        '<prosody volume="x-loud">',
        '<prosody volume="+30dB">',
        '<prosody volume="-200%">',
        '<prosody pitch="+50%">',
        "<s>",
        '<mark name="m"/>',
    ]
)


def test_words_of_one_speed_and_gain_parted_only_by_white_space_are_one_part() -> None:
    # the silent prosody between them holds nothing but <s>'s space (found by the test below)
    text = (
        '<prosody volume="x-loud">word <prosody volume="-200%"><s>'
        '<prosody volume="x-loud">word </prosody></s></prosody></prosody>'
    )
    assert parts(text) == (Part("word word", 1.0, MAX_GAIN),)


@given(st.lists(_PIECES, max_size=12), st.floats(SPEED[0], SPEED[1]))
def test_any_ssml_keeps_its_words_in_order_and_stays_within_the_guards(
    pieces: list[str], speed: float
) -> None:
    closing = {"<s>": "</s>", "<prosody": "</prosody>"}
    closes = "".join(closing.get(p.split(" ")[0], "") for p in reversed(pieces))
    tokens = ssml.parse("".join(pieces) + closes)
    said = parts_of(tokens)
    assert " ".join(p.words for p in said if p.words) == ssml.words_of(tokens)
    for part in said:
        assert 0.0 <= part.pause <= MAX_PAUSE and 0.0 <= part.gain <= MAX_GAIN
        assert SPEED[0] <= part.speed_at(speed) <= SPEED[1]
        assert part.words or part.pause
    # consecutive parts differ in something: otherwise they would be one
    for before, after in itertools.pairwise(said):
        assert before.pause or (before.speed, before.gain) != (after.speed, after.gain)
