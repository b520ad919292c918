"""The bridge's count of events the broker has not acknowledged (mqtt/backlog.py): unbounded
while connected (paho's own bound dropped a flood's events), bounded while the broker is away."""

from __future__ import annotations

from playspeak.mqtt.backlog import Backlog


def test_room_is_bounded_only_while_the_broker_is_away() -> None:
    backlog = Backlog(while_away=3)
    for mid in range(1, 6):
        backlog.published(mid)
    assert len(backlog) == 5
    assert backlog.has_room(connected=True)  # a flood while connected: every event goes out
    assert not backlog.has_room(connected=False)
    for mid in (1, 2, 3):
        backlog.acknowledged(mid)
    assert backlog.has_room(connected=False) and len(backlog) == 2


def test_an_acknowledgement_of_what_was_not_counted_is_harmless() -> None:
    backlog = Backlog(while_away=3)
    backlog.published(7)
    backlog.acknowledged(8)  # e.g. the retained configs paho's thread publishes on connect
    backlog.acknowledged(7)
    backlog.acknowledged(7)
    assert len(backlog) == 0
