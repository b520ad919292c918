"""What a cancel does to the audio already buffered, decided without I/O.

The jobs in flight stand in request order; the ones fed so far lie back to back in the player's
ring, each as a span of absolute frame positions (the one being fed is open at its end). The
ring can drop frames only at its two ends: skip its oldest frames (`skip_to`) or cut its
newest (`truncate_at`). So cancelling jobs:

- the leading ones (from the one being heard on): skip past them; later audio plays on
  seamlessly;
- one further back: cut the ring where it starts. Every job after the cut that was not
  cancelled is asked for again (`respeak`) — none of it has been read, so nothing heard is ever
  repeated — and so is every later job in flight, so that the order of speech is kept.

The invariants (tests/test_timeline.py): no frame of a cancelled job stays buffered; every
other job keeps its buffered audio intact or, never read, is spoken again; the order of what
plays is the order of the requests.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A job in flight: its audio's first position in the ring and the position after its
    last (None: not fed yet / still being fed)."""

    key: Hashable
    start: int | None = None
    end: int | None = None

    @property
    def buffered(self) -> bool:
        return self.start is not None


@dataclass
class CancelPlan:
    skip_to: int | None = None  # drop the ring's frames before this position
    drop_all: bool = False  # drop everything buffered (the job being fed is cancelled)
    truncate_at: int | None = None  # drop the ring's frames from this position on
    respeak: list[Hashable] = field(default_factory=list)  # not cancelled: ask again


def plan_cancel(jobs: Sequence[Span], cancel: set[Hashable], read: int) -> CancelPlan:
    """How to cancel the jobs whose keys are in `cancel`, given every job in flight in request
    order and the ring's read position. Jobs whose audio was all read already are past: only
    what is still buffered is touched."""
    plan = CancelPlan()
    order = list(jobs)
    live = [s for s in order if s.buffered and (s.end is None or s.end > read)]
    leading = 0
    while leading < len(live) and live[leading].key in cancel:
        leading += 1
    if leading:
        last = live[leading - 1]
        if last.end is None:
            plan.drop_all = True
        else:
            plan.skip_to = last.end
    cut = next((s for s in live[leading:] if s.key in cancel), None)
    if cut is not None:
        plan.truncate_at = cut.start
        after = order[order.index(cut) + 1 :]
        plan.respeak = [s.key for s in after if s.key not in cancel]
    return plan
