"""One connection's decisions (playai/connection.py) with synthetic times: no sockets, no
clock. The reason texts are what the logs and the failed replies say."""

from __future__ import annotations

import math
from dataclasses import dataclass

from playspeak.playai.connection import Check, ConnectionWatch, Due
from playspeak.playai.linkstate import CloseKind, CloseReason


@dataclass(frozen=True)
class Settings:
    first_audio_timeout: float = 5.0
    stall_timeout: float = 4.0
    idle_close: float = 0.0
    heartbeat: float = 20.0


@dataclass
class Pending:
    bytes_received: int = 0
    head_since: float | None = None


NO_AUDIO = CloseReason(CloseKind.STALLED, "no audio from the TTS service within 5 s")
MID_REPLY = CloseReason(
    CloseKind.STALLED, "the TTS service stopped sending mid-reply (nothing for 4 s)"
)


def watch(**settings: float) -> ConnectionWatch:
    return ConnectionWatch(Settings(**settings), now=100.0)


# ---- stalls ------------------------------------------------------------------------------


def test_a_head_with_no_audio_is_due_first_audio_timeout_after_it_became_the_head() -> None:
    w, head = watch(), Pending(head_since=101.0)
    assert w.check([head], reading_since=102.0, now=103.0) == Check(106.0)
    assert w.check([head], reading_since=102.0, now=106.0) == Check(106.0, Due.STALLED, NO_AUDIO)


def test_a_head_with_no_stamp_counts_from_when_the_reader_waits() -> None:
    w = watch()
    assert w.check([Pending()], reading_since=102.0, now=103.0) == Check(107.0)


def test_a_head_whose_audio_flows_is_due_stall_timeout_after_the_last_frame() -> None:
    w, head = watch(), Pending(bytes_received=3000, head_since=101.0)
    assert w.check([head], reading_since=110.0, now=111.0) == Check(114.0)
    assert w.check([head], reading_since=110.0, now=114.5) == Check(114.0, Due.STALLED, MID_REPLY)


def test_nothing_is_overdue_while_the_reader_waits_for_our_consumer() -> None:
    w = watch(heartbeat=math.inf)
    assert w.check([Pending(head_since=101.0)], reading_since=None, now=500.0) == Check(math.inf)


def test_only_the_head_reply_counts() -> None:
    w = watch()
    later = Pending(head_since=None)  # not at the head: its own clock has not started
    head = Pending(bytes_received=10, head_since=101.0)
    assert w.check([head, later], reading_since=103.0, now=104.0) == Check(107.0)


# ---- idle close --------------------------------------------------------------------------


def test_an_idle_connection_closes_idle_close_after_the_last_progress() -> None:
    w = watch(idle_close=20.0, heartbeat=math.inf)
    assert w.check([], reading_since=100.0, now=101.0) == Check(120.0)
    w.progressed(110.0)  # e.g. a reply ended
    assert w.check([], reading_since=110.0, now=120.0) == Check(130.0)
    idle = CloseReason(CloseKind.IDLE, "idle")
    assert w.check([], reading_since=110.0, now=130.0) == Check(130.0, Due.IDLE, idle)


def test_no_idle_close_while_a_reply_is_pending_or_when_it_is_off() -> None:
    w = watch(idle_close=20.0, heartbeat=math.inf)
    assert w.check([Pending(head_since=100.0)], reading_since=None, now=200.0) == Check(math.inf)
    assert watch(heartbeat=math.inf).check([], reading_since=100.0, now=1e6) == Check(math.inf)


# ---- heartbeat ---------------------------------------------------------------------------


def test_an_idle_connection_is_pinged_every_heartbeat_after_the_last_pong() -> None:
    w = watch()
    assert w.check([], reading_since=100.0, now=101.0) == Check(120.0)
    assert w.check([], reading_since=100.0, now=120.0) == Check(120.0, Due.PING)
    w.pinged(120.0)
    w.ponged(120.5)
    assert w.check([], reading_since=100.0, now=121.0) == Check(140.5)


def test_a_missing_pong_gives_up_a_heartbeat_after_the_ping() -> None:
    w = watch()
    w.pinged(120.0)
    assert w.check([], reading_since=100.0, now=121.0) == Check(140.0)
    no_pong = CloseReason(CloseKind.NO_PONG, "no pong within 20 s")
    assert w.check([], reading_since=100.0, now=140.0) == Check(140.0, Due.NO_PONG, no_pong)
    # a request sent meanwhile does not save it: the ping was sent with nothing pending
    assert w.check([Pending(head_since=139.0)], None, now=140.0).due is Due.NO_PONG


def test_a_ping_due_while_replies_are_pending_is_skipped_for_a_heartbeat() -> None:
    w = watch(heartbeat=10.0)
    busy = [Pending(bytes_received=1, head_since=100.0)]
    assert w.check(busy, reading_since=None, now=105.0) == Check(110.0)  # looks again then
    assert w.check(busy, reading_since=None, now=110.0) == Check(120.0)  # skipped
    assert w.check([], reading_since=100.0, now=115.0) == Check(120.0)  # not pinged at once
    assert w.check([], reading_since=100.0, now=120.0) == Check(120.0, Due.PING)


def test_when_several_fall_due_together_the_close_comes_before_the_ping() -> None:
    w = watch(idle_close=20.0, heartbeat=20.0)
    assert w.check([], reading_since=100.0, now=120.0).due is Due.IDLE
