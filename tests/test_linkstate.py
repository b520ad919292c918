"""The link's supervisor decisions (playai/linkstate.py) with synthetic times: no sockets, no
clock. The backoff is the real one without jitter, so every wait is exact."""

from __future__ import annotations

import pytest

from playspeak.backoff import Backoff
from playspeak.playai.linkstate import (
    AfterClose,
    CloseKind,
    CloseReason,
    Failure,
    LinkState,
    Retry,
    Supervision,
    renewal_time,
)

STABLE = 5.0


def plan(*, lazy: bool = False) -> Supervision:
    return Supervision(Backoff(0.5, 4.0, jitter=0.0), lazy=lazy, stable_after=STABLE)


def closed(kind: CloseKind) -> CloseReason:
    return CloseReason(kind, kind.value)


def test_failed_attempts_back_off_doubling_up_to_the_cap() -> None:
    p = plan()
    waits = [p.failed(Failure.UNREACHABLE).wait for _ in range(6)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize(
    ("failure", "state"),
    [
        (Failure.UNREACHABLE, LinkState.RECONNECTING),
        (Failure.RATE_LIMITED, LinkState.RECONNECTING),
        (Failure.CREDENTIALS, LinkState.AUTH_FAILED),
        (Failure.AUTH, LinkState.AUTH_FAILED),
    ],
)
def test_each_failure_reports_its_state(failure: Failure, state: LinkState) -> None:
    assert plan().failed(failure) == Retry(state, 0.5)


def test_a_429_waits_at_least_its_retry_after() -> None:
    p = plan()
    assert p.failed(Failure.RATE_LIMITED, retry_after=3.0).wait == 3.0
    assert p.failed(Failure.RATE_LIMITED, retry_after=0.1).wait == 1.0  # the backoff's, longer
    assert p.failed(Failure.RATE_LIMITED, retry_after=None).wait == 2.0


def test_a_stable_connection_resets_the_backoff_a_short_one_does_not() -> None:
    p = plan()
    for _ in range(3):
        p.failed(Failure.UNREACHABLE)  # 0.5, 1, 2: the next would be 4
    assert p.closed(closed(CloseKind.BY_SERVICE), lived=1.0, quiet=True, restarted=False) is (
        AfterClose.RETRY
    )
    assert p.retry_wait() == 4.0
    p.closed(closed(CloseKind.BY_SERVICE), lived=STABLE, quiet=True, restarted=False)
    assert p.retry_wait() == 0.5


@pytest.mark.parametrize(
    ("kind", "lazy", "quiet", "restarted", "step"),
    [
        (CloseKind.BY_US, False, False, True, AfterClose.REOPEN),  # skipping an unwanted reply
        (CloseKind.STALLED, False, False, True, AfterClose.REOPEN),
        (CloseKind.IDLE, False, True, False, AfterClose.IDLE),  # our idle_close
        (CloseKind.BY_SERVICE, True, True, False, AfterClose.IDLE),  # its idle timeout, lazy
        (CloseKind.BY_SERVICE, False, True, False, AfterClose.RETRY),  # warm: kept open
        (CloseKind.BY_SERVICE, True, False, False, AfterClose.RETRY),  # replies were lost
        (CloseKind.BROKEN, True, True, False, AfterClose.IDLE),
        (CloseKind.NO_PONG, True, True, False, AfterClose.RETRY),  # a dead peer is a failure
        (CloseKind.STALLED, True, False, False, AfterClose.AFTER_STALL),
        (CloseKind.STALLED, False, False, False, AfterClose.AFTER_STALL),
    ],
)
def test_what_follows_a_close(
    kind: CloseKind, lazy: bool, quiet: bool, restarted: bool, step: AfterClose
) -> None:
    p = plan(lazy=lazy)
    assert p.closed(closed(kind), lived=1.0, quiet=quiet, restarted=restarted) is step


def test_a_decision_of_ours_is_not_replaced_by_the_close_it_causes() -> None:
    assert closed(CloseKind.STALLED).decided_by_us and closed(CloseKind.IDLE).decided_by_us
    assert not closed(CloseKind.BY_SERVICE).decided_by_us
    assert closed(CloseKind.NO_PONG).given_up and not closed(CloseKind.IDLE).given_up


@pytest.mark.parametrize(
    ("url_left", "renew_at"),
    [
        (None, 100 + 3600 - 60),  # max_age less the margin
        (600.0, 100 + 610 - 60),  # the URL expires sooner (600 s from now, 10 s after opening)
        (2.0, 100 + 30 - 7.5),  # a short expiry: at least min_lifetime, margin a quarter of it
        (-20.0, 100 + 3600 - 60),  # expired before it opened: not the connection's clock
    ],
)
def test_when_a_connection_is_renewed(url_left: float | None, renew_at: float) -> None:
    at = renewal_time(
        100.0, max_age=3600, renew_margin=60, url_left=url_left, now=110.0, min_lifetime=30
    )
    assert at == pytest.approx(renew_at)
