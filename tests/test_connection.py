"""One connection's decisions (playai/connection.py) with synthetic times: no sockets, no
clock. The reason texts are what the logs and the failed replies say."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from playspeak.playai.connection import (
    FAILED_KEPT,
    Check,
    ConnectionBook,
    ConnectionWatch,
    Due,
    Outcome,
)
from playspeak.playai.linkstate import CloseKind, CloseReason
from playspeak.playai.wire import Action, End, ErrorFrame, Start


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


# ---- the book: what each frame does to the pending replies -------------------------------


@dataclass(eq=False)
class Booked:
    request_id: str
    started: bool = False
    echoed: bool = True
    head_since: float | None = None


def book(*ids: str, now: float = 1.0) -> tuple[ConnectionBook[Booked], list[Booked]]:
    b: ConnectionBook[Booked] = ConnectionBook()
    replies = [Booked(i) for i in ids]
    for reply in replies:
        b.add(reply, now)
    return b, replies


def test_start_then_end_streams_and_completes_the_reply() -> None:
    b, (r1, r2) = book("r1", "r2")
    assert r1.head_since == 1.0 and r2.head_since is None  # the head's clock runs alone
    assert b.on_frame(Start("r1"), now=2.0) == Outcome(Action.START, r1)
    assert b.current is r1 and r1.started and r1.echoed
    assert b.on_frame(End("r1"), now=3.0) == Outcome(Action.END, r1)
    assert list(b.pending) == [r2] and b.current is None
    assert r2.head_since == 3.0  # the next head's clock starts when it becomes the head


def test_an_end_without_its_start_ends_the_reply_it_names() -> None:
    b, (r1, r2) = book("r1", "r2")
    assert b.on_frame(End("r2"), now=2.0) == Outcome(Action.END, r2)
    assert list(b.pending) == [r1] and b.current is None


def test_a_reply_whose_end_never_came_is_abandoned_when_the_next_starts() -> None:
    b, (r1, r2) = book("r1", "r2")
    b.on_frame(Start("r1"), now=2.0)
    assert b.on_frame(Start("r2"), now=3.0) == Outcome(Action.START, r2, abandoned=r1)
    assert list(b.pending) == [r2] and b.current is r2
    # its late end names no pending reply any more
    late = b.on_frame(End("r1"), now=4.0)
    assert late == Outcome(Action.IGNORE, message="end frame for no known request")


def test_a_failing_start_also_abandons_the_streaming_reply() -> None:
    b, (r1, r2) = book("r1", "r2")
    b.on_frame(Start("r1"), now=2.0)
    outcome = b.on_frame(Start("r2", status=500, message="busy"), now=3.0)
    assert outcome == Outcome(Action.FAIL, r2, abandoned=r1, message="busy")
    assert not b.pending and list(b.failed) == ["r2"]


def test_the_end_after_an_error_frame_settles_quietly_once() -> None:
    b, (r1, r2) = book("r1", "r2")
    b.on_frame(Start("r1"), now=2.0)
    assert b.on_frame(ErrorFrame("boom", "r1"), now=3.0) == Outcome(Action.FAIL, r1, message="boom")
    assert list(b.failed) == ["r1"] and list(b.pending) == [r2]
    assert b.on_frame(ErrorFrame("boom again", "r1"), now=4.0) == Outcome(Action.SETTLE)
    assert b.on_frame(End("r1"), now=5.0) == Outcome(Action.SETTLE)
    assert not b.failed  # its end came: nothing more is expected of it
    unknown = Outcome(Action.IGNORE, message="end frame for no known request")
    assert b.on_frame(End("r1"), now=6.0) == unknown  # a second end is news


def test_a_failed_end_fails_its_reply_and_expects_nothing_more() -> None:
    b, (r1,) = book("r1")
    b.on_frame(Start("r1"), now=2.0)
    outcome = b.on_frame(End("r1", status=500), now=3.0)
    assert outcome == Outcome(Action.FAIL, r1, message="the reply ended with status 500")
    assert not b.failed


@pytest.mark.parametrize(
    ("frame", "kind"),
    [(Start("zzz"), "start"), (End("zzz"), "end"), (ErrorFrame("no", "zzz"), "error")],
)
def test_a_frame_for_an_unknown_id_is_ignored(frame: Start | End | ErrorFrame, kind: str) -> None:
    b, (r1,) = book("r1")
    outcome = b.on_frame(frame, now=2.0)
    assert outcome == Outcome(Action.IGNORE, message=f"{kind} frame for no known request")
    assert list(b.pending) == [r1] and b.current is None and not r1.started


def test_null_ids_follow_the_streaming_reply_only_if_its_start_had_one() -> None:
    b, (r1, _) = book("r1", "r2")
    assert b.on_frame(Start(None), now=2.0) == Outcome(Action.START, r1)
    assert not r1.echoed
    assert b.on_frame(End(None), now=3.0) == Outcome(Action.END, r1)
    b.on_frame(Start("r2"), now=4.0)
    assert b.on_frame(End(None), now=5.0).action is Action.IGNORE  # never a guess


def test_a_retiring_connection_closes_after_its_last_reply() -> None:
    b, _ = book("r1", "r2")
    b.retiring = True
    assert not b.on_frame(End("r1"), now=2.0).retire  # r2 is still pending
    assert b.on_frame(ErrorFrame("boom", "r2"), now=3.0).retire
    assert not b.on_frame(End("r2"), now=4.0).retire  # settled: nothing to close again


def test_failed_ids_are_remembered_up_to_a_bound() -> None:
    ids = [f"r{i}" for i in range(FAILED_KEPT + 1)]
    b, _ = book(*ids)
    for i in ids:
        b.on_frame(ErrorFrame("boom", i), now=2.0)
    assert len(b.failed) == FAILED_KEPT and "r0" not in b.failed
