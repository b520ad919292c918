"""Speech Dispatcher's priority rules (speechd's doc/ssip.texi), free of I/O.

Given a newly arriving utterance and what is speaking and waiting, `admit` says what to cancel,
what to put back in the queue, and whether the newcomer is spoken at all:

- important: spoken at once; cancels whatever non-important is speaking, and the waiting
  notification and progress messages; waiting message and text are postponed. Never
  interrupted by priorities (an explicit stop or cancel still works).
- message: waits its turn; cancels text, notification and progress, speaking or waiting.
- text: like message, and interrupts itself: only the newest text is said.
- notification: dropped when anything of another priority speaks or waits; interrupts itself.
- progress: said at once when nothing else speaks or waits; otherwise only the last one of a
  series is kept, and said later with the priority message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

_RANK = {"important": 0, "message": 1, "text": 2, "progress": 3, "notification": 3}


class HasPriority(Protocol):
    priority: str
    progress: bool  # a progress message kept as the last of its series (now rank message)


def rank(u: HasPriority) -> int:
    """Queue order: lower first; equal ranks keep their arrival order."""
    return _RANK[u.priority]


@dataclass
class Decision:
    accept: bool = True
    reason: str = ""  # why the newcomer was dropped
    cancel: list[HasPriority] = field(default_factory=list)  # speaking or waiting
    postpone: list[HasPriority] = field(default_factory=list)  # requested early: back in line


def admit(
    new: HasPriority,
    speaking: list[HasPriority],
    prefetched: list[HasPriority],
    queued: list[HasPriority],
) -> Decision:
    """Decide what a new arrival does. `speaking`: the one heard now (or fed to be heard
    first); `prefetched`: requested ahead, not heard yet (its audio may wait behind the one
    heard); `queued`: not requested yet. Mutates `new.priority` only for a
    progress message kept for later (it becomes a message, as Speech Dispatcher does)."""
    waiting = prefetched + queued
    everything = speaking + waiting

    def of(group: list[HasPriority], *priorities: str) -> list[HasPriority]:
        return [u for u in group if u.priority in priorities]

    decision = Decision()
    if new.priority == "important":
        decision.cancel = [u for u in speaking if u.priority != "important"]
        decision.cancel += of(waiting, "notification", "progress")
    elif new.priority in ("message", "text"):
        decision.cancel = of(everything, "text", "notification", "progress")
    elif new.priority == "notification":
        others = [u for u in everything if u.priority != "notification"]
        if others:
            return Decision(
                accept=False, reason="a notification is dropped while other messages speak or wait"
            )
        decision.cancel = list(everything)
    elif new.priority == "progress" and everything:
        decision.cancel = [u for u in waiting if u.progress or u.priority == "progress"]
        new.priority, new.progress = "message", True  # the last of a series is said
    cancelled = {id(u) for u in decision.cancel}
    decision.postpone = [u for u in prefetched if id(u) not in cancelled and rank(u) > rank(new)]
    return decision
