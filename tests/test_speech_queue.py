"""The speech queue's bounds, free of I/O: what bounds one client is the memory its waiting
utterances hold, each client its own, freed as they are taken or removed."""

from __future__ import annotations

import pytest
import trio

from playspeak.events import Message
from playspeak.speech import UTTERANCE_BYTES, QueueFull, SpeechQueue, Utterance


class Connection:
    def send(self, message: Message) -> None:
        pass


class MessageOf:
    """An owner per message, of one connection (as SSIP's)."""

    def __init__(self, client: Connection) -> None:
        self.client = client

    def send(self, message: Message) -> None:
        pass


def of(owner: object, text: str = "x" * 100) -> Utterance:
    return Utterance(text=text, params={}, owner=owner)  # type: ignore[arg-type]


SIZE = 100 + UTTERANCE_BYTES


def test_one_client_is_bounded_by_what_its_waiting_utterances_hold() -> None:
    a, b = Connection(), Connection()
    queue = SpeechQueue(limit=1000, client_bytes=2 * SIZE)
    queue.put(of(a))
    queue.put(of(a))
    with pytest.raises(QueueFull, match="this client's queue is full"):
        queue.put(of(a))
    queue.put(of(b))  # another client has its own budget
    queue.put(of(a), again=True)  # one said again was admitted already
    assert len(queue) == 4


def test_messages_of_one_connection_share_its_budget() -> None:
    conn = Connection()
    queue = SpeechQueue(limit=1000, client_bytes=2 * SIZE)
    queue.put(of(MessageOf(conn)))
    queue.put(of(MessageOf(conn)))
    with pytest.raises(QueueFull):
        queue.put(of(MessageOf(conn)))


async def test_taken_and_removed_utterances_free_their_budget() -> None:
    a = Connection()
    queue = SpeechQueue(limit=1000, client_bytes=2 * SIZE)
    first, second = of(a), of(a)
    queue.put(first)
    queue.put(second)
    with trio.fail_after(1):
        assert await queue.get() is first
    queue.put(of(a))
    assert queue.remove(lambda u: u is second) == [second]
    queue.put(of(a))
    with pytest.raises(QueueFull):
        queue.put(of(a))


def test_the_count_limit_bounds_all_clients_together() -> None:
    queue = SpeechQueue(limit=2)
    queue.put(of(Connection()))
    queue.put(of(Connection()))
    with pytest.raises(QueueFull, match=r"queue full \(2 utterances waiting\)"):
        queue.put(of(Connection()))
