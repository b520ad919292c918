"""Speech Dispatcher's priority rules, as pure decisions (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from playspeak.priorities import admit, rank


@dataclass(eq=False)
class U:
    name: str
    priority: str
    progress: bool = False

    def __repr__(self) -> str:
        return self.name


def names(items: list) -> list[str]:
    return [u.name for u in items]


def test_important_cancels_what_speaks_and_postpones_message_and_text() -> None:
    speaking = U("speaking", "message")
    prefetched = U("next", "text")
    queued = [U("m", "message"), U("n", "notification"), U("p", "progress")]
    d = admit(U("alarm", "important"), [speaking], [prefetched], queued)
    assert d.accept
    assert names(d.cancel) == ["speaking", "n", "p"]
    assert names(d.postpone) == ["next"]


def test_important_never_interrupts_important() -> None:
    d = admit(U("second", "important"), [U("first", "important")], [], [])
    assert d.accept and d.cancel == [] and d.postpone == []


def test_message_waits_its_turn_and_cancels_lower_ones() -> None:
    d = admit(
        U("new", "message"),
        [U("t", "text")],
        [U("m", "message")],
        [U("n", "notification"), U("p", "progress"), U("t2", "text")],
    )
    assert names(d.cancel) == ["t", "n", "p", "t2"]
    assert d.postpone == []


def test_text_interrupts_itself() -> None:
    d = admit(U("t3", "text"), [U("t1", "text")], [], [U("t2", "text"), U("m", "message")])
    assert names(d.cancel) == ["t1", "t2"]


def test_notification_is_dropped_while_anything_else_speaks_or_waits() -> None:
    d = admit(U("n", "notification"), [U("m", "message")], [], [])
    assert not d.accept and "notification" in d.reason
    d = admit(U("n", "notification"), [], [], [U("p", "progress")])
    assert not d.accept


def test_notification_interrupts_itself() -> None:
    d = admit(U("n2", "notification"), [U("n1", "notification")], [], [U("n0", "notification")])
    assert d.accept and names(d.cancel) == ["n1", "n0"]


def test_progress_speaks_at_once_when_idle() -> None:
    new = U("p", "progress")
    d = admit(new, [], [], [])
    assert d.accept and d.cancel == [] and new.priority == "progress"


def test_progress_while_busy_keeps_only_the_last_of_the_series_as_a_message() -> None:
    older = U("p20", "message", progress=True)
    new = U("p30", "progress")
    d = admit(new, [U("p10", "progress")], [], [older])
    assert d.accept and names(d.cancel) == ["p20"]
    assert (new.priority, new.progress) == ("message", True)


def test_rank_orders_important_first() -> None:
    order = sorted(
        [U(p, p) for p in ("notification", "text", "important", "progress", "message")], key=rank
    )
    assert names(order)[:3] == ["important", "message", "text"]
