"""An utterance's lifecycle: new → queued → speaking → finished / cancelled / failed, and the
one function that moves it on an event. I/O-free.

It holds the promise every client relies on: an utterance ends exactly once and starts at most
once. A second ending (a cancel racing the end of the audio) is legal and changes nothing: the
first one stands. Anything else out of order (started twice, an event after the end) is a bug:
`advance` raises IllegalTransition, which EventHub logs and drops (and raises in tests).
"""

from __future__ import annotations

from enum import StrEnum

from playspeak.errors import PlayspeakError


class UtteranceState(StrEnum):
    NEW = "new"  # built, not yet admitted
    QUEUED = "queued"  # told `queued`: waiting, requested, or being fed before it is heard
    SPEAKING = "speaking"  # told `started` (also while a pause holds it back in the queue)
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        return self in _ENDED


_ENDED = frozenset({UtteranceState.FINISHED, UtteranceState.CANCELLED, UtteranceState.FAILED})
_ENDINGS = {state.value: state for state in _ENDED}
# Events that tell something about an utterance under way, and change nothing.
_NEWS = frozenset({"paused", "resumed", "mark"})
_UNDER_WAY = frozenset({UtteranceState.QUEUED, UtteranceState.SPEAKING})


class IllegalTransition(PlayspeakError):
    """An event that the utterance's state does not allow (a bug in the caller)."""


def advance(state: UtteranceState, event: str) -> UtteranceState | None:
    """The state after the event named `event` (events.py's names); None when the event is
    to be dropped (a second ending). Raises IllegalTransition for an event out of order."""
    if state.ended:
        if event in _ENDINGS:
            return None  # it ended already: exactly one ending
    elif event in _ENDINGS:
        return _ENDINGS[event]
    elif event == "queued" and state is UtteranceState.NEW:
        return UtteranceState.QUEUED
    elif event == "started" and state is UtteranceState.QUEUED:
        return UtteranceState.SPEAKING
    elif event in _NEWS and state in _UNDER_WAY:
        return state
    raise IllegalTransition(f"{event!r} for an utterance that is {state.value}")
