"""An utterance's lifecycle (lifecycle.py): ends exactly once, starts at most once, and every
event out of order is refused in the one transition function. No I/O."""

from __future__ import annotations

import logging

import pytest

from playspeak.lifecycle import IllegalTransition, UtteranceState, advance
from playspeak.speech import EventHub, Utterance

S = UtteranceState
ENDINGS = ("finished", "cancelled", "failed")


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (S.NEW, "queued", S.QUEUED),
        (S.QUEUED, "started", S.SPEAKING),
        (S.QUEUED, "paused", S.QUEUED),  # held back before it was heard
        (S.SPEAKING, "paused", S.SPEAKING),
        (S.SPEAKING, "resumed", S.SPEAKING),
        (S.SPEAKING, "mark", S.SPEAKING),
        *[(S.NEW, end, S(end)) for end in ENDINGS],  # refused at once
        *[(S.QUEUED, end, S(end)) for end in ENDINGS],
        *[(S.SPEAKING, end, S(end)) for end in ENDINGS],
    ],
)
def test_the_legal_transitions(state: UtteranceState, event: str, after: UtteranceState) -> None:
    assert advance(state, event) is after


@pytest.mark.parametrize("ended", [S.FINISHED, S.CANCELLED, S.FAILED])
@pytest.mark.parametrize("second", ENDINGS)
def test_a_second_ending_is_dropped(ended: UtteranceState, second: str) -> None:
    assert advance(ended, second) is None


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.SPEAKING, "started"),  # starts at most once
        (S.NEW, "started"),
        (S.QUEUED, "queued"),
        (S.SPEAKING, "queued"),
        (S.NEW, "mark"),
        *[
            (end, event)
            for end in (S.FINISHED, S.CANCELLED, S.FAILED)
            for event in ("queued", "started", "paused", "resumed", "mark")
        ],
    ],
)
def test_events_out_of_order_are_refused(state: UtteranceState, event: str) -> None:
    with pytest.raises(IllegalTransition, match=event):
        advance(state, event)


def test_the_states_are_the_words_clients_see() -> None:
    assert [s.value for s in S] == ["new", "queued", "speaking", "finished", "cancelled", "failed"]
    assert [s for s in S if s.ended] == [S.FINISHED, S.CANCELLED, S.FAILED]


def test_the_hub_drops_an_event_out_of_order_and_logs_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside the tests (strict off) a bug costs one event, never a second start."""
    monkeypatch.setattr(EventHub, "strict", False)
    hub, u = EventHub(), Utterance("hi", {}, id="a1")
    hub.queued(u, 1)
    hub.finished(u, "service")
    with caplog.at_level(logging.ERROR):
        hub.started(u, "service")
    assert u.state is S.FINISHED and hub.counters["finished"] == 1
    assert "'started' for an utterance that is finished" in caplog.text


def test_in_the_tests_the_hub_raises_on_an_event_out_of_order() -> None:
    hub, u = EventHub(), Utterance("hi", {}, id="a2")
    hub.queued(u, 1)
    hub.started(u, "service")
    with pytest.raises(IllegalTransition):
        hub.started(u, "service")
