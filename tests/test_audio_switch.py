"""The quick→steady switch policy (audio/switch.py) on synthetic PCM and timestamps: no device."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from playspeak.audio.playout import PlayoutClock
from playspeak.audio.ring import PcmRing
from playspeak.audio.switch import Hold, KeepQuick, StartSteadyAt, SteadySwitch, SwitchAt

RATE = 48000
BLOCK = 480
PREFILL = 0.05  # what the quick stream takes at once
INSET = round(RATE * 0.02)  # the switch point lies this far into the pause


def tone(seconds: float) -> np.ndarray:
    t = np.arange(round(RATE * seconds)) / RATE
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(-1, 1)


def silence(seconds: float) -> np.ndarray:
    return np.zeros((round(RATE * seconds), 1), np.float32)


def ring_of(*parts: np.ndarray) -> PcmRing:
    ring = PcmRing(4 * RATE, 1)
    for part in parts:
        assert ring.write(part) == len(part)
    return ring


def consume(ring: PcmRing, frames: int) -> None:
    ring.read_into(np.empty((frames, 1), np.float32))


def decide(switch: SteadySwitch, ring: PcmRing, clock: PlayoutClock | None = None, **over: Any):
    settings: dict[str, Any] = {
        "rate": RATE,
        "blocksize": BLOCK,
        "quick_latency": 0.04,
        "prefill_seconds": PREFILL,
        "steady_latency": 0.15,
        "on_steady": False,
        "now": 100.0,
    }
    settings.update(over)
    return switch.decide(ring, clock or PlayoutClock(), **settings)


def test_the_switch_point_lies_inside_the_first_pause() -> None:
    ring = ring_of(tone(0.3), silence(0.2), tone(0.5))
    switch = SteadySwitch()
    assert decide(switch, ring) == SwitchAt(round(RATE * 0.3) + INSET)
    assert switch.at == round(RATE * 0.3) + INSET


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"steady_latency": 0.0}, Hold.OFF),
        ({"steady_latency": 0.059}, Hold.SHALLOW),  # under 1.5 × 40 ms
        ({"on_steady": True}, Hold.ON_STEADY),
    ],
)
def test_no_switch_is_planned_when_not_worth_it(over: dict[str, Any], why: Hold) -> None:
    ring = ring_of(tone(0.3), silence(0.2), tone(0.5))
    switch = SteadySwitch()
    assert decide(switch, ring, **over) == KeepQuick(why)
    assert switch.at is None


def test_exactly_one_and_a_half_times_deeper_is_deep_enough() -> None:
    ring = ring_of(tone(0.3), silence(0.2), tone(0.5))
    assert isinstance(decide(SteadySwitch(), ring, steady_latency=0.06), SwitchAt)


def test_a_refusal_holds_until_it_is_cleared() -> None:
    ring = ring_of(tone(0.3), silence(0.2), tone(0.5))
    switch = SteadySwitch()
    switch.refuse("Device unavailable")
    assert decide(switch, ring) == KeepQuick(Hold.REFUSED)
    switch.refused = ""  # (run() starting again)
    assert isinstance(decide(switch, ring), SwitchAt)


def test_a_scheduled_start_being_padded_holds_and_its_first_frame_is_the_floor() -> None:
    ring = ring_of(tone(0.3), silence(0.2), tone(0.3), silence(0.2), tone(0.6))
    switch = SteadySwitch()
    switch.floor = None
    assert decide(switch, ring) == KeepQuick(Hold.SCHEDULED)
    switch.floor = round(RATE * 0.55)  # after the first pause
    assert decide(switch, ring) == SwitchAt(round(RATE * 0.8) + INSET)


def test_a_pause_the_quick_stream_may_have_taken_already_is_passed_over() -> None:
    # the first pause (80 ms) begins 30 ms ahead of the read position, inside the 50 ms prefill
    # and a block: what is left of it beyond them is too short to be one
    ring = ring_of(tone(0.2), silence(0.08), tone(0.3), silence(0.2), tone(0.6))
    consume(ring, round(RATE * 0.17))
    assert decide(SteadySwitch(), ring) == SwitchAt(round(RATE * 0.58) + INSET)


def test_a_pause_begun_within_the_prefill_is_switched_in_after_it() -> None:
    ring = ring_of(tone(0.2), silence(0.2), tone(0.6))
    consume(ring, round(RATE * 0.17))
    earliest = round(RATE * (0.17 + PREFILL)) + BLOCK
    assert decide(SteadySwitch(), ring) == SwitchAt(earliest + INSET)


def test_without_enough_audio_after_the_pause_the_same_pause_is_looked_at_again() -> None:
    ring = ring_of(tone(0.3), silence(0.2), tone(0.1))
    switch = SteadySwitch()
    assert decide(switch, ring) == KeepQuick(Hold.NO_PAUSE)
    ring.write(tone(0.2))  # 0.48 s after the switch point now
    assert decide(switch, ring) == SwitchAt(round(RATE * 0.3) + INSET)


def test_a_long_ring_is_searched_half_a_second_per_look() -> None:
    ring = ring_of(tone(1.2), silence(0.2), tone(0.6))
    switch = SteadySwitch()
    looks = [decide(switch, ring) for _ in range(3)]
    assert looks == [
        KeepQuick(Hold.NO_PAUSE),
        KeepQuick(Hold.NO_PAUSE),
        SwitchAt(round(RATE * 1.2) + INSET),
    ]


def test_the_steady_stream_starts_just_before_the_switch_point_is_heard() -> None:
    ring = ring_of(tone(0.3), silence(0.2), tone(0.5))
    switch, clock = SteadySwitch(), PlayoutClock()
    at = round(RATE * 0.3) + INSET
    assert decide(switch, ring, clock) == SwitchAt(at)
    consume(ring, at - BLOCK)
    assert decide(switch, ring, clock) == KeepQuick(Hold.APPROACHING)
    consume(ring, BLOCK)  # the callback read up to the switch point, at t=10.0 with 40 ms DAC
    clock.read(at - BLOCK, BLOCK, 10.0, 1.04, 1.0, 0.04, quick=True)
    due = 10.04 + BLOCK / RATE - 0.008
    assert decide(switch, ring, clock, now=10.001) == StartSteadyAt(pytest.approx(due))
    # asked again (the owner waited for that time), the plan stands
    assert decide(switch, ring, clock, now=10.05) == StartSteadyAt(pytest.approx(due))


def test_with_no_block_read_the_steady_stream_is_due_at_once() -> None:
    ring = ring_of(tone(0.3), silence(0.2), tone(0.5))
    switch = SteadySwitch()
    at = round(RATE * 0.3) + INSET
    assert decide(switch, ring) == SwitchAt(at)
    ring.discard_until(at)  # (the read position moved without a block)
    assert decide(switch, ring, now=7.0) == StartSteadyAt(pytest.approx(7.0 - 0.008))


def test_forget_voids_the_plan_and_searches_from_the_start() -> None:
    ring = ring_of(tone(1.2), silence(0.2), tone(0.6))
    switch = SteadySwitch()
    decide(switch, ring)
    switch.forget()
    assert (switch.at, switch.due) == (None, None)
    assert decide(switch, ring) == KeepQuick(Hold.NO_PAUSE)  # the first half second again
