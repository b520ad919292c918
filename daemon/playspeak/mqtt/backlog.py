"""The events paho holds until the broker acknowledges them, bounded only while it is away.

paho keeps every QoS 1 message it publishes until the broker's PUBACK. Its own bound
(``max_queued_messages_set``) counts those in flight too, so while connected a flood of says,
each making an event faster than the broker acknowledged them, passed it, and paho dropped
events without a word (docs/benchmarks.md, "MQTT"). So paho's queue is unbounded, and
the bridge bounds what waits itself, only while the broker is away (memory for a long outage).

Trio thread only: paho's thread reports each acknowledgement through the trio token.
"""

from __future__ import annotations


class Backlog:
    """Message ids published and not yet acknowledged by the broker."""

    def __init__(self, while_away: int) -> None:
        self.while_away = while_away  # at most this many wait while the broker is away
        self._waiting: set[int] = set()

    def __len__(self) -> int:
        return len(self._waiting)

    def has_room(self, connected: bool) -> bool:
        return connected or len(self._waiting) < self.while_away

    def published(self, mid: int) -> None:
        self._waiting.add(mid)

    def acknowledged(self, mid: int) -> None:
        self._waiting.discard(mid)
