"""Scheduled starts (`"at"`, Unix seconds): which instants are taken, and where on the sound
card's timeline an instant falls. I/O-free: the caller passes the clocks.

Rooms start together only as far as their clocks agree: every room's daemon reads `at` on its
own wall clock, so the machines must be NTP-synchronised (docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from playspeak.errors import ProtocolError

if TYPE_CHECKING:
    from playspeak.config.sections import SpeechConfig


@dataclass(frozen=True)
class ScheduleRules:
    """What a speak's `at` may be: at most `tolerance` seconds past (then it starts at once)
    and at most `max_ahead` seconds ahead."""

    tolerance: float = 0.05
    max_ahead: float = 300.0

    @classmethod
    def from_section(cls, speech: SpeechConfig) -> ScheduleRules:
        return cls(speech.schedule_tolerance, speech.schedule_max_ahead)

    def check(self, at: float, now: float) -> None:
        """ProtocolError with the reason when `at` (Unix seconds) is refused at wall time
        `now`."""
        if at < now - self.tolerance:
            raise ProtocolError(
                f"field 'at' is {now - at:.3f} s in the past (more than "
                f"{self.tolerance:g} s): check this machine's clock (NTP)"
            )
        if at > now + self.max_ahead:
            raise ProtocolError(
                f"field 'at' is {at - now:.1f} s ahead, more than speech.schedule_max_ahead "
                f"({self.max_ahead:g} s)"
            )


def to_monotonic(at: float, wall_now: float, mono_now: float) -> float:
    """The monotonic time of Unix time `at`, given both clocks read at one moment."""
    return mono_now + (at - wall_now)


def frames_until(when: float, block_start: int, block_heard: float, rate: int, written: int) -> int:
    """Silent frames to write after position `written` so that the next frame is heard at
    monotonic time `when`, given that frame `block_start` is (or was) heard at
    `block_heard`; negative when `when` is too near (the next frame will be that late)."""
    target = block_start + round((when - block_heard) * rate)
    return target - written
