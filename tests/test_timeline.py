"""What a cancel does to buffered audio (timeline.plan_cancel), checked against a model ring."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from playspeak.timeline import CancelPlan, Span, plan_cancel


def spans(lengths: list[int], *, feeding: bool, waiting: int, base: int = 0) -> list[Span]:
    """Jobs 0.. back to back from `base`; the last buffered one still being fed if `feeding`;
    then `waiting` jobs in flight with no audio yet."""
    out, position = [], base
    for key, length in enumerate(lengths):
        last = key == len(lengths) - 1
        end = None if feeding and last else position + length
        out.append(Span(key, position, end))
        position += length
    out += [Span(len(lengths) + i) for i in range(waiting)]
    return out


def apply(plan: CancelPlan, frames: list[int], read: int, base: int) -> list[int]:
    """The model ring: frames[i] is the key owning position base + i; returns the owners of
    what is still to be read after the plan."""
    unread = list(range(max(read, base), base + len(frames)))
    if plan.drop_all:
        unread = []
    elif plan.skip_to is not None:
        unread = [p for p in unread if p >= plan.skip_to]
    if plan.truncate_at is not None:
        unread = [p for p in unread if p < plan.truncate_at]
    return [frames[p - base] for p in unread]


def test_cancelling_the_one_behind_the_one_heard_keeps_that_one_whole() -> None:
    # the respeak bug: a message plays, a text is buffered behind it and is cancelled
    jobs = spans([100, 50], feeding=False, waiting=0)
    plan = plan_cancel(jobs, {1}, read=30)
    assert plan == CancelPlan(truncate_at=100)


def test_cancelling_the_one_heard_skips_past_it() -> None:
    jobs = spans([100, 50], feeding=False, waiting=1)
    assert plan_cancel(jobs, {0}, read=30) == CancelPlan(skip_to=100)


def test_cancelling_the_one_being_fed_and_heard_drops_everything() -> None:
    jobs = spans([100], feeding=True, waiting=1)
    assert plan_cancel(jobs, {0}, read=30) == CancelPlan(drop_all=True)


def test_a_job_behind_the_cut_and_every_later_one_in_flight_are_asked_again() -> None:
    jobs = spans([100, 50, 50, 20], feeding=True, waiting=2)
    plan = plan_cancel(jobs, {1, 4}, read=10)
    assert plan == CancelPlan(truncate_at=100, respeak=[2, 3, 5])


def test_audio_read_already_is_past_and_not_skipped_again() -> None:
    # job 0 was all read (its tail is in the device), job 1 is being heard
    jobs = spans([100, 50, 50], feeding=False, waiting=0)
    assert plan_cancel(jobs, {2}, read=120) == CancelPlan(truncate_at=150)
    assert plan_cancel(jobs, {1}, read=120) == CancelPlan(skip_to=150)


@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    feeding=st.booleans(),
    waiting=st.integers(0, 3),
    base=st.integers(0, 1000),
    data=st.data(),
)
def test_invariants(
    lengths: list[int], feeding: bool, waiting: int, base: int, data: st.DataObject
) -> None:
    jobs = spans(lengths, feeding=feeding, waiting=waiting, base=base)
    frames = [key for key, length in enumerate(lengths) for _ in range(length)]
    read = data.draw(st.integers(base, base + len(frames)), label="read")
    keys = [s.key for s in jobs]
    cancel = set(data.draw(st.lists(st.sampled_from(keys), unique=True), label="cancel"))

    plan = plan_cancel(jobs, cancel, read)
    left = apply(plan, frames, read, base)
    respeak = set(plan.respeak)

    # no frame of a cancelled job stays buffered
    assert not cancel & set(left)
    # a job spoken again is not a cancelled one, and none of its audio was read (never heard)
    assert not respeak & cancel
    for key in respeak:
        span = jobs[key]
        assert span.start is None or span.start >= read
        assert key not in left
    # every other job keeps what it had buffered, whole and in order
    before = [p for p in range(max(read, base), base + len(frames))]
    for key in set(keys) - cancel - respeak:
        assert left.count(key) == sum(1 for p in before if frames[p - base] == key)
    assert left == sorted(left)
    # the order of speech is kept: whatever plays later was requested later
    if left and respeak:
        assert max(left) < min(respeak)
