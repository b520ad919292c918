"""The leading-silence trimmer (I/O-free): what it drops and what it never drops."""

from __future__ import annotations

import numpy as np

from playspeak.audio.silence import LeadingSilenceTrimmer, UtteranceStart

RATE = 48000


def tone(frames: int, level: float = 0.3) -> np.ndarray:
    t = np.arange(frames) / RATE
    # a cosine: loud from its very first sample
    return (level * np.cos(2 * np.pi * 440 * t)).astype(np.float32).reshape(-1, 1)


def silence(frames: int, level: float = 0.0) -> np.ndarray:
    return np.full((frames, 1), level, dtype=np.float32)


def feed_all(trimmer: LeadingSilenceTrimmer, blocks: list[np.ndarray]) -> np.ndarray:
    out = [trimmer.feed(b) for b in blocks]
    tail = trimmer.flush()
    return np.concatenate(out + ([tail] if tail is not None else []))


def test_drops_leading_silence_across_blocks_and_keeps_5_ms_before_the_onset() -> None:
    speech = tone(4800)
    blocks = [silence(1000), silence(1000, 2e-4), np.concatenate([silence(400), speech])]
    trimmer = LeadingSilenceTrimmer(RATE)
    played = feed_all(trimmer, blocks)
    keep = 240  # 5 ms at 48 kHz
    assert trimmer.trimmed == 2400 - keep
    assert len(played) == keep + len(speech)
    np.testing.assert_array_equal(played[keep:], speech)
    assert np.abs(played[:keep]).max() < 1e-3


def test_everything_after_the_first_sound_passes_untouched_including_later_pauses() -> None:
    blocks = [silence(960), tone(960), silence(4800), tone(960)]
    trimmer = LeadingSilenceTrimmer(RATE)
    played = feed_all(trimmer, blocks)
    np.testing.assert_array_equal(played, np.concatenate(blocks)[960 - 240 :])


def test_never_drops_more_than_the_limit() -> None:
    trimmer = LeadingSilenceTrimmer(RATE, max_seconds=0.1)
    played = feed_all(trimmer, [silence(RATE), tone(480)])
    assert trimmer.trimmed == RATE // 10
    assert len(played) == RATE - RATE // 10 + 480


def test_a_silent_utterance_still_plays_the_few_frames_kept_back() -> None:
    trimmer = LeadingSilenceTrimmer(RATE)
    played = feed_all(trimmer, [silence(1000), silence(1000)])
    assert len(played) == 240


def test_disabled_trimmer_passes_everything() -> None:
    blocks = [silence(2000), tone(480)]
    trimmer = LeadingSilenceTrimmer(RATE, max_seconds=0)
    played = feed_all(trimmer, blocks)
    np.testing.assert_array_equal(played, np.concatenate(blocks))
    assert trimmer.trimmed == 0


def test_a_loud_sample_in_any_channel_is_sound() -> None:
    stereo = np.zeros((1000, 2), dtype=np.float32)
    stereo[600, 1] = 0.5
    trimmer = LeadingSilenceTrimmer(RATE)
    played = trimmer.feed(stereo)
    assert len(played) == 400 + 240
    assert played[240, 1] == np.float32(0.5)


def test_the_start_holds_the_pre_roll_back_once_then_passes_each_chunk_at_once() -> None:
    start = UtteranceStart(RATE, trim=True, preroll_seconds=0.1)  # 4800 frames
    assert start.feed([silence(2000)]) is None  # leading silence: nothing to play yet
    assert start.feed([tone(2000), tone(2000)]) is None  # 240 kept + 4000 < 4800
    first = start.feed([tone(1000)])
    assert first is not None and len(first) == 240 + 5000
    later = start.feed([tone(500), tone(700)])  # after the pre-roll: one array per chunk
    assert later is not None and len(later) == 1200
    assert start.feed([]) is None
    rest = start.finish([tone(300)])
    assert rest is not None and len(rest) == 300


def test_the_pre_roll_is_held_beyond_the_sound_cards_share() -> None:
    """A starting stream takes its device buffer (the margin) at once: the pre-roll is what
    must remain beyond it to cover the wait for the next chunk."""
    start = UtteranceStart(RATE, trim=False, preroll_seconds=0.1, margin_seconds=0.05)
    assert start.feed([tone(4800)]) is None  # 0.1 s: the device would take half at once
    first = start.feed([tone(2400)])
    assert first is not None and len(first) == 7200
    unheld = UtteranceStart(RATE, trim=False, preroll_seconds=0, margin_seconds=0.05)
    assert (out := unheld.feed([tone(10)])) is not None and len(out) == 10  # 0: no cushion


def test_a_short_utterance_is_played_whole_at_its_end() -> None:
    start = UtteranceStart(RATE, trim=False, preroll_seconds=0.15)
    assert start.feed([silence(480), tone(960)]) is None
    rest = start.finish([tone(480)])
    assert rest is not None and len(rest) == 480 + 960 + 480  # untrimmed, nothing lost


def test_without_pre_roll_or_trimming_everything_passes_as_it_comes() -> None:
    start = UtteranceStart(RATE, trim=False, preroll_seconds=0)
    blocks = [silence(480), tone(960)]
    out = start.feed(blocks)
    assert out is not None
    np.testing.assert_array_equal(out, np.concatenate(blocks))
    assert start.finish([]) is None
