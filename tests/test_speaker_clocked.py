"""The speaker's ordering rules on trio's MockClock: a clocked fake sink and fake service
(playspeak.testing.clocked) stand where the sound card and the sources stand; the requester,
the feeder, the decoder (real PyAV), the pre-roll and the announcers are the real ones.

Rules these tests follow for determinism: virtual time only, starting at 0 (autojump_clock:
time moves when every task waits, so a whole conversation takes milliseconds; each test names
the clock among its own arguments, as pytest-trio uses a clock only from there); no threads;
no sleeps to wait for something to happen — a test waits for an event (`Rig.until`) or for a
virtual instant (`at`), and acts once everything due at that instant has run. Every test ends
with `check`: every utterance ends exactly once and starts at most once, `started` comes as
its first frame is heard and `finished` as its last one is, nothing of it is heard after it
ended or without `started`, no utterance is heard around another, and one starts only once
the one before it ended.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import trio
import trio.testing

from playspeak.events import Cancelled
from playspeak.speaker import Speaker
from playspeak.speech import EventHub, Utterance
from playspeak.testing.clocked import (
    ClockedSink,
    ClockedSource,
    EventLog,
    Pace,
    Said,
    clocked_speaker,
    said,
)

pytestmark = pytest.mark.timeout(20)

RATE = 24000
FRAME = 1 / RATE
ENDINGS = ("finished", "cancelled", "failed")


@dataclass
class Rig:
    sink: ClockedSink
    source: ClockedSource
    hub: EventHub
    log: EventLog
    nursery: trio.Nursery
    speaker: Speaker | None = None
    utterances: list[Utterance] = field(default_factory=list)
    respoken: set[str] = field(default_factory=set)  # cut while heard, said again whole

    async def start(self, **options: object) -> Speaker:
        self.speaker = clocked_speaker(self.sink, self.source, self.hub, **options)
        await self.nursery.start(self.speaker.run)
        return self.speaker

    def say(self, ident: str, priority: str = "message", pace: Pace | None = None) -> Utterance:
        """Submit an utterance now (its reply at `pace`, else the source's)."""
        assert self.speaker is not None
        if pace is not None:
            self.source.paces[ident] = pace
        u = Utterance(ident, self.source.params(ident), id=ident, priority=priority)
        self.utterances.append(u)
        self.speaker.submit(u)
        return u

    async def until(self, ident: str, name: str) -> float:
        """Wait for the utterance's event `name`; its trio time."""
        return await self.log.wait(ident, name)

    async def idle(self) -> None:
        """Until nothing speaks or waits; a speaker stuck for good fails the test (TooSlowError
        after an hour of virtual time: milliseconds)."""
        assert self.speaker is not None
        with trio.fail_after(3600):
            await self.speaker.wait_idle()
        await trio.testing.wait_all_tasks_blocked()  # the last announcers have run

    def said(self) -> list[Said]:
        """What was heard, utterance by utterance (silence left out)."""
        return [s for s in said(self.sink, self.source) if s.id is not None]

    def heard(self) -> list[str]:
        return [s.id for s in self.said() if s.id is not None]

    def stretch(self, ident: str) -> Said:
        (one,) = [s for s in self.said() if s.id == ident]
        return one


async def at(instant: float) -> None:
    """Until virtual time `instant`, and until all that was due then has run: a test's action
    never races the speaker's tasks for that instant (trio runs them in random order)."""
    await trio.sleep_until(instant)
    # (the autojump clock waits the same way, as the last in line: time stands still here)
    await trio.testing.wait_all_tasks_blocked()


@pytest.fixture
async def rig(autojump_clock: trio.testing.MockClock) -> AsyncIterator[Rig]:
    # (the test itself must ask for the clock too: see the module's docstring)
    assert trio.lowlevel.current_clock() is autojump_clock
    hub, log = EventHub(), EventLog()
    hub.subscribers.add(log)
    async with trio.open_nursery() as nursery:
        made = Rig(ClockedSink(RATE), ClockedSource(RATE), hub, log, nursery)
        yield made
        nursery.cancel_scope.cancel()
    check(made)


def check(rig: Rig) -> None:
    """The promises every client relies on, over all events and all that was heard. One held
    while heard (`respoken`) stays started while others speak and is heard again whole."""
    heard = rig.said()
    kept = [s for s in heard if s.id not in rig.respoken]
    runs = [s.id for i, s in enumerate(kept) if i == 0 or kept[i - 1].id != s.id]
    assert len(runs) == len(set(runs)), f"one utterance heard around another: {runs}"
    for u in rig.utterances:
        events = rig.log.of(u.id)
        names = [e.name for _, e in events]
        assert names[:1] == ["queued"], (u.id, names)
        assert sum(n in ENDINGS for n in names) == 1 and names[-1] in ENDINGS, (u.id, names)
        assert names.count("started") <= 1, (u.id, names)
        pauses = [n for n in names if n in ("paused", "resumed")]
        if pauses:  # only one told `started` is told `paused`, then `resumed`, in turn
            assert names.index("paused") > names.index("started"), (u.id, names)
        assert pauses[::2] == ["paused"] * len(pauses[::2]), (u.id, names)
        assert pauses[1::2] == ["resumed"] * len(pauses[1::2]), (u.id, names)
        ended = events[-1][0]
        mine = [s for s in heard if s.id == u.id]  # (more than one: paused between)
        if "started" in names:
            started = rig.log.when(u.id, "started")
            assert mine, f"{u.id} told started, never heard"
            # the instant its first frame is heard (wait_played of that frame: one frame on)
            assert mine[0].at <= started <= mine[0].at + 2 * FRAME, (u.id, started, mine[0])
        else:
            assert not mine, f"{u.id} heard, never told started: {mine}"
        if names[-1] == "finished":
            frames, whole = sum(s.frames for s in mine), rig.source.frames(u.id)
            # (one said again may follow its cut-off beginning at once: one stretch)
            assert frames == whole or (u.id in rig.respoken and frames >= whole), (u.id, frames)
            assert abs(ended - mine[-1].until) <= 2 * FRAME, (u.id, ended, mine[-1])
        elif mine:
            assert mine[-1].until <= ended + FRAME, f"{u.id} heard after it ended"
    # one at a time: an utterance starts only once the one before it ended
    spans = sorted(
        (rig.log.when(u.id, "started"), rig.log.of(u.id)[-1][0], u.id)
        for u in rig.utterances
        if "started" in rig.log.names(u.id) and u.id not in rig.respoken
    )
    for (_, end, before), (start, _, after) in itertools.pairwise(spans):
        assert end <= start, f"{after} started before {before} ended"


# ---- the tests ----------------------------------------------------------------------------


async def test_equal_priorities_are_said_in_arrival_order_back_to_back(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    for ident in "abc":
        rig.say(ident)
    await rig.idle()
    assert rig.log.names("c") == ["queued", "started", "finished"], reason(rig, "c")
    a, b, c = rig.said()
    assert [a.id, b.id, c.id] == ["a", "b", "c"]
    assert (a.at, b.at, c.at) == (0.0, pytest.approx(1.0), pytest.approx(2.0))
    assert rig.sink.underruns == []
    assert [rig.log.names(i) for i in "abc"] == [["queued", "started", "finished"]] * 3


def reason(rig: Rig, ident: str) -> str:
    """Why the utterance was cancelled."""
    (why,) = [e.reason for _, e in rig.log.of(ident) if isinstance(e, Cancelled)]
    return why


async def test_an_important_one_cuts_in_and_a_waiting_message_is_postponed(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    rig.say("a")
    rig.say("c")  # its audio waits in the buffer behind a's by the time b comes
    await at(0.4)
    rig.say("b", "important")
    await rig.idle()
    assert rig.log.names("c") == ["queued", "started", "finished"], reason(rig, "c")
    a, b, c = rig.said()
    assert [a.id, b.id, c.id] == ["a", "b", "c"]
    assert (a.until, b.at, b.until, c.at) == pytest.approx((0.4, 0.4, 1.4, 1.4))
    assert rig.log.names("a")[-1] == "cancelled" and reason(rig, "a") == "interrupted by b"


async def test_an_important_one_postpones_a_message_still_streaming_in_behind(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    rig.say("a")
    rig.say("c", pace=Pace(speed=1.0))  # at real time: still being fed when b comes
    await at(0.4)
    rig.say("b", "important")
    await rig.idle()
    assert rig.heard() == ["a", "b", "c"]
    assert rig.log.names("c") == ["queued", "started", "finished"]
    assert (rig.stretch("b").at, rig.stretch("c").at) == pytest.approx((0.4, 1.4))
    assert [r.id for r in rig.source.requests] == ["a", "c", "b", "c"]
    assert rig.source.replies[1][1].abandoned is False  # postponed, not cancelled


async def test_an_important_one_waits_for_the_important_one_speaking(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    rig.say("i1", "important")
    await at(0.3)
    rig.say("i2", "important")
    await rig.idle()
    i1, i2 = rig.said()
    assert (i1.id, i1.until, i2.id, i2.at) == ("i1", pytest.approx(1.0), "i2", pytest.approx(1.0))
    assert rig.log.names("i1") == rig.log.names("i2") == ["queued", "started", "finished"]


async def test_a_message_cancels_texts_speaking_and_waiting(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    rig.say("t1", "text")
    rig.say("m1")  # cancels t1 (waiting)
    rig.say("t2", "text")  # waits behind m1
    await at(0.3)  # m1 speaks, t2's audio waits behind it
    rig.say("m2")
    await rig.idle()
    assert rig.heard() == ["m1", "m2"]
    assert [reason(rig, t) for t in ("t1", "t2")] == ["interrupted by m1", "interrupted by m2"]


async def test_an_important_one_postpones_a_message_whose_audio_has_not_come_yet(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    rig.say("a")
    rig.say("c", pace=Pace(delay=0.5))  # asked for behind a; its first audio is due at 0.59
    await at(0.3)
    rig.say("b", "important")
    await rig.idle()
    assert rig.log.names("c") == ["queued", "started", "finished"]
    assert rig.heard() == ["a", "b", "c"]
    # asked for again once b's reply was in, its audio came in time to follow b's at once
    assert (rig.stretch("b").until, rig.stretch("c").at) == pytest.approx((1.3, 1.3))


async def test_a_text_interrupts_a_text_so_only_the_newest_is_heard(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    rig.say("t1", "text")
    await at(0.3)
    rig.say("t2", "text")
    rig.say("t3", "text")
    await rig.idle()
    t1, t3 = rig.said()
    assert (t1.id, t3.id) == ("t1", "t3")
    assert (t1.until, t3.at, t3.until) == pytest.approx((0.3, 0.3, 1.3))
    assert rig.log.names("t2") == ["queued", "cancelled"]
    assert reason(rig, "t1") == "interrupted by t2" and reason(rig, "t2") == "interrupted by t3"


async def test_texts_queued_together_leave_only_the_last(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    for ident in ("t1", "t2", "t3"):
        rig.say(ident, "text")
    await rig.idle()
    assert rig.heard() == ["t3"]
    assert rig.stretch("t3").at == 0.0
    assert rig.log.names("t1") == rig.log.names("t2") == ["queued", "cancelled"]


async def test_a_series_of_progress_messages_keeps_the_first_and_the_last(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    rig.say("p1", "progress")  # nothing else speaks: said at once
    for instant, ident in ((0.2, "p2"), (0.5, "p3"), (0.7, "p4")):
        await at(instant)
        rig.say(ident, "progress")
    await rig.idle()
    assert rig.heard() == ["p1", "p4"]
    p1, p4 = rig.said()
    assert (p1.at, p1.until, p4.at) == pytest.approx((0.0, 1.0, 1.0))
    assert rig.log.names("p2") == rig.log.names("p3") == ["queued", "cancelled"]


async def test_a_notification_is_dropped_while_a_message_speaks(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    rig.say("m")
    await at(0.3)
    rig.say("n", "notification")
    assert rig.log.names("n") == ["queued", "cancelled"]
    assert "notification is dropped" in reason(rig, "n")
    await rig.idle()
    assert rig.heard() == ["m"]
    assert rig.log.names("m") == ["queued", "started", "finished"]


async def test_a_notification_interrupts_a_notification(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    rig.say("n1", "notification")
    await at(0.3)
    rig.say("n2", "notification")
    await rig.idle()
    n1, n2 = rig.said()
    assert (n1.id, n1.until, n2.id, n2.at) == ("n1", pytest.approx(0.3), "n2", pytest.approx(0.3))


async def test_cancelling_waiting_ones_ends_each_once_unheard_and_the_rest_go_on(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    speaker = await rig.start()
    for ident in "abcd":
        rig.say(ident)
    await at(0.05)
    assert speaker.cancel(lambda u: u.id == "c") == ["c"]  # still in the queue
    await at(0.5)
    assert speaker.cancel(lambda u: u.id == "b") == ["b"]  # its audio waits behind a's
    assert speaker.cancel(lambda u: u.id == "b") == []  # ended already
    await rig.idle()
    a, d = rig.said()
    assert (a.id, a.at, a.until) == ("a", 0.0, pytest.approx(1.0))  # a plays on intact
    assert (d.id, d.at) == ("d", pytest.approx(1.0))
    assert rig.log.names("b") == rig.log.names("c") == ["queued", "cancelled"]
    # d's audio lay behind b's, which was cut out of the buffer: d was asked for again
    assert [r.id for r in rig.source.requests] == ["a", "b", "d", "d"]


async def test_cancelling_one_streaming_in_behind_leaves_the_one_heard_intact(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    speaker = await rig.start()
    rig.say("a")
    rig.say("b", pace=Pace(speed=1.0))  # still being fed behind a
    rig.say("c")
    await at(0.4)
    assert speaker.cancel(lambda u: u.id == "b") == ["b"]
    await rig.idle()
    a, c = rig.said()
    assert (a.id, a.at, a.until, c.id, c.at) == ("a", 0.0, pytest.approx(1.0), "c", 1.0)
    assert [d.how for d in rig.sink.drops] == ["truncate"]
    assert rig.source.replies[1][1].abandoned  # a fresh connection for what follows


async def test_stop_ends_the_one_speaking_at_once_and_the_next_follows(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    speaker = await rig.start()
    assert speaker.stop() == []
    rig.say("a")
    rig.say("b")
    await at(0.4)
    assert speaker.stop() == ["a"]
    await rig.idle()
    a, b = rig.said()
    assert (a.id, a.until, b.id, b.at, b.until) == ("a", 0.4, "b", 0.4, pytest.approx(1.4))
    assert rig.log.names("a") == ["queued", "started", "cancelled"]
    assert reason(rig, "a") == "stopped"
    assert rig.log.names("b") == ["queued", "started", "finished"]


async def test_pause_holds_the_sound_and_resume_goes_on_from_the_next_frame(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    speaker = await rig.start()
    rig.say("a")
    await at(0.3)
    speaker.pause()
    await at(0.8)
    speaker.resume()
    await rig.idle()
    first, rest = rig.said()
    assert (first.until, rest.at, rest.until) == pytest.approx((0.3, 0.8, 1.5))
    assert rig.log.names("a") == ["queued", "started", "paused", "resumed", "finished"]
    assert (rig.log.when("a", "paused"), rig.log.when("a", "resumed")) == (0.3, 0.8)


@pytest.mark.parametrize("pipeline", [True, False])
async def test_a_held_one_is_cut_the_others_go_on_and_it_is_said_again_on_release(
    rig: Rig, autojump_clock: trio.testing.MockClock, pipeline: bool
) -> None:
    """An SSIP client's PAUSE: its utterance is cut off, told `paused`, and said again from
    its start once released (told `resumed` then)."""
    speaker = await rig.start(pipeline=pipeline)
    rig.respoken.add("a")
    rig.say("a")
    rig.say("b")
    await at(0.3)
    speaker.hold("client", lambda u: u.id == "a")
    await at(0.8)
    assert speaker.release("client")
    await rig.idle()
    cut, b, again = rig.said()
    assert (cut.id, cut.until, b.id, b.at, b.until) == ("a", 0.3, "b", 0.3, pytest.approx(1.3))
    assert (again.id, again.at, again.frames) == ("a", pytest.approx(1.3), RATE)
    assert rig.log.names("a") == ["queued", "started", "paused", "resumed", "finished"]
    assert (rig.log.when("a", "paused"), rig.log.when("a", "resumed")) == (0.3, 0.8)


async def test_a_hold_before_the_first_audio_came_says_it_later(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    speaker = await rig.start()
    rig.say("a")
    rig.say("b", pace=Pace(delay=0.5))  # being fed behind a, no audio of it yet
    await at(0.3)
    speaker.hold("client", lambda u: u.id == "b")
    await at(0.8)
    speaker.release("client")
    await rig.idle()
    assert rig.log.names("b") == ["queued", "started", "finished"]  # never heard: not paused
    assert rig.heard() == ["a", "b"]
    assert rig.stretch("b").at == pytest.approx(1.3)  # asked again on release


async def test_a_pause_before_the_first_frame_is_heard_holds_it_untold(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    speaker = await rig.start()
    rig.say("a", pace=Pace(delay=0.1))
    await at(0.1)  # its first chunk is written, its first frame not heard yet
    speaker.pause()
    await at(0.5)
    speaker.resume()
    await rig.idle()
    assert rig.log.names("a") == ["queued", "started", "finished"]
    assert rig.log.when("a", "started") == pytest.approx(0.5 + FRAME)
    assert rig.stretch("a").at == pytest.approx(0.5)


async def test_a_hold_released_at_once_is_told_paused_then_resumed(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    speaker = await rig.start()
    rig.respoken.add("a")
    rig.say("a")
    await at(0.3)
    speaker.hold("client", lambda u: u.id == "a")
    speaker.release("client")  # (an SSIP PAUSE and RESUME within the device's latency)
    await rig.idle()
    assert rig.log.names("a") == ["queued", "started", "paused", "resumed", "finished"]
    assert rig.stretch("a").frames == round(0.3 * RATE) + RATE  # said again from its start


async def test_a_refused_request_fails_once_unheard_and_the_queue_goes_on(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start()
    rig.say("a", pace=Pace(refuse="no such voice"))
    rig.say("b")
    await rig.idle()
    assert rig.heard() == ["b"]
    assert rig.log.names("a") == ["queued", "failed"]


async def test_a_reply_that_breaks_off_fails_once_it_was_heard(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    """The reply's end is an error frame, after its audio came (a request the service gave up
    on): what came is heard, the utterance fails as its last frame is (not while it still
    plays), and the next goes on."""
    await rig.start()
    rig.say("a", pace=Pace(seconds=0.5, error="the service gave up"))
    rig.say("b")
    await rig.idle()
    assert rig.log.names("a") == ["queued", "started", "failed"]
    assert rig.heard() == ["a", "b"]
    assert rig.stretch("a").until == pytest.approx(rig.log.when("a", "failed"), abs=FRAME)


async def test_without_pipelining_the_next_is_asked_for_once_the_one_before_ended(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start(pipeline=False)
    rig.say("a")
    rig.say("b", pace=Pace(delay=0.2))
    await rig.idle()
    assert [(r.id, r.at) for r in rig.source.requests] == [("a", 0.0), ("b", 1.0)]
    a, b = rig.said()
    assert (a.until, b.at) == pytest.approx((1.0, 1.2))  # its first-byte delay: a gap


# ---- the start of speech ------------------------------------------------------------------

# A service at three times real time whose first chunk is small (20 ms), 150 ms after the
# request: the next (100 ms) comes 33 ms later, after the first has played out.
BURSTY = Pace(seconds=1.0, delay=0.15, speed=3.0, chunk=0.1, first_chunk=0.02)


async def test_without_a_pre_roll_a_small_first_chunk_runs_the_device_dry(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start(preroll_seconds=0.0)
    rig.say("a", pace=BURSTY)
    await rig.idle()
    assert rig.sink.underruns == [pytest.approx(0.17)]
    first, rest = rig.said()
    assert (first.at, first.until, rest.at) == pytest.approx((0.15, 0.17, 0.15 + 0.1 / 3))


async def test_the_pre_roll_holds_the_start_until_enough_is_buffered(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start(preroll_seconds=0.1)
    rig.say("a", pace=BURSTY)
    started = await rig.until("a", "started")
    # 20 ms in hand at 0.15 s, 120 ms once the second chunk came: then it starts
    assert started == pytest.approx(0.15 + 0.1 / 3 + FRAME)
    await rig.idle()
    assert rig.sink.underruns == []
    assert rig.stretch("a").at == pytest.approx(0.15 + 0.1 / 3)


async def test_a_slow_start_held_by_the_pre_roll_then_plays_through(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start(preroll_seconds=0.3)
    rig.say("a", pace=Pace(seconds=1.0, delay=0.1, speed=2.0, chunk=0.05))
    # the pre-roll beyond the start margin (300 + 10 ms) is in hand with the seventh chunk,
    # 150 ms after the first
    assert await rig.until("a", "started") == pytest.approx(0.25 + FRAME)
    await rig.idle()
    assert rig.sink.underruns == []
    assert rig.stretch("a").until == pytest.approx(1.25)


async def test_the_learned_pace_starts_speech_sooner_with_no_underrun(
    rig: Rig, autojump_clock: trio.testing.MockClock
) -> None:
    await rig.start(preroll_seconds=0.3, adaptive_preroll=True)
    delays = []
    for ident in "abcd":  # one by one, each on an idle device: the pace is learned from it
        asked = trio.current_time()
        rig.say(ident, pace=BURSTY)
        delays.append(await rig.until(ident, "started") - asked)
        await rig.idle()
    # the first holds the configured 300 ms (the fourth chunk); once the pace is known,
    # the 20 ms in hand start as soon as they last until the 100 ms chunk comes
    assert delays[0] == pytest.approx(0.15 + 3 * 0.1 / 3 + FRAME)
    assert all(d < 0.15 + 0.1 / 3 for d in delays[1:]), delays
    assert rig.sink.underruns == []


# ---- a storm of commands ------------------------------------------------------------------

PRIORITIES = ("important", "message", "text", "notification", "progress")
PACES = (Pace(), Pace(seconds=0.3, delay=0.05), BURSTY, Pace(seconds=0.6, speed=1.5, chunk=0.05))


@pytest.mark.parametrize("seed", range(24))
async def test_a_storm_of_commands_keeps_every_promise(
    rig: Rig, autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """Utterances of every priority and pace, cancels, stops, pauses and holds at random
    instants (seeded): `check` holds over all of it, and the speaker ends idle."""
    chance = random.Random(seed)
    speaker = await rig.start(
        preroll_seconds=chance.choice((0.0, 0.1)),
        adaptive_preroll=chance.random() < 0.5,
        pipeline=chance.random() < 0.8,
    )
    for n in range(30):
        await at(trio.current_time() + chance.choice((0.0, 0.01, 0.05, 0.2, 0.5)))
        action = chance.random()
        if action < 0.6:
            rig.say(f"u{n}", chance.choice(PRIORITIES), chance.choice(PACES))
        elif action < 0.75 and rig.utterances:
            victim = chance.choice(rig.utterances).id
            speaker.cancel(lambda u, victim=victim: u.id == victim)
        elif action < 0.85:
            speaker.stop()
        elif action < 0.93:
            speaker.pause()
            await at(trio.current_time() + chance.choice((0.0, 0.1, 0.3)))
            speaker.resume()
        elif speaker.release("client") is False:  # as an SSIP client's PAUSE, then RESUME
            held = {u.id for u in rig.utterances if chance.random() < 0.3}
            rig.respoken |= held
            speaker.hold("client", lambda u, held=held: u.id in held)
    speaker.release("client")
    await rig.idle()
    assert rig.utterances and all(u.ended for u in rig.utterances)


# ---- the clocked sink and source themselves -------------------------------------------------


def tone(seconds: float, value: float = 0.5) -> np.ndarray:
    return np.full((round(seconds * RATE), 1), value, np.float32)


async def test_the_sink_plays_at_its_rate_and_makes_a_writer_wait_for_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = ClockedSink(RATE, buffer_seconds=0.5)
    assert await sink.play(tone(0.2)) == round(0.2 * RATE)
    assert trio.current_time() == 0.0  # it fitted
    await trio.sleep(0.05)
    assert sink.frames_read == round(0.05 * RATE)
    # as the Player's: topped up whenever a quarter of the buffer (125 ms) is free, so the
    # last 25 ms go in at the 14th top-up
    await sink.play(tone(2.0))
    assert trio.current_time() == pytest.approx(0.05 + 14 * 0.125)
    assert await sink.wait_played(sink.frames_written)
    assert trio.current_time() == pytest.approx(2.2)
    (heard,) = sink.heard
    assert (heard.at, heard.until, heard.end) == (0.0, pytest.approx(2.2), round(2.2 * RATE))
    assert sink.underruns == []


async def test_the_sink_counts_running_dry_within_an_utterance_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = ClockedSink(RATE)
    await sink.play(tone(0.1))
    await trio.sleep(0.15)
    await sink.play(tone(0.1))  # the same utterance, 50 ms late
    await sink.wait_played(sink.frames_written)  # its end: running dry after it is no underrun
    await trio.sleep(0.2)
    await sink.play(tone(0.1))
    assert sink.underruns == [pytest.approx(0.1)]
    assert [(h.at, h.until) for h in sink.heard] == [
        (0.0, pytest.approx(0.1)),
        (pytest.approx(0.15), pytest.approx(0.25)),
    ]


async def test_the_sink_drops_as_the_player_does(autojump_clock: trio.testing.MockClock) -> None:
    sink = ClockedSink(RATE)
    a, b = tone(0.5, 0.25), tone(0.5, 0.5)
    end_a = await sink.play(a)
    end_b = await sink.play(b)
    await trio.sleep(0.1)
    assert sink.truncate(end_a) == len(b)  # b cut from behind a: its positions come again
    assert await sink.play(b) == end_b
    assert sink.skip_to(end_a) == round(0.4 * RATE)  # the rest of a: b follows at once
    with trio.move_on_after(0.2):
        await sink.wait_played(end_b)
    assert sink.cancel() == round(0.3 * RATE)
    assert await sink.wait_played(end_b)  # dropped: at once
    assert trio.current_time() == pytest.approx(0.3)
    assert [(d.how, d.start, d.end) for d in sink.drops] == [
        ("truncate", end_a, end_b),
        ("skip_to", round(0.1 * RATE), end_a),
        ("cancel", end_a + round(0.2 * RATE), end_b),
    ]
    values = [float(h.pcm[0, 0]) for h in sink.heard]
    assert values == [0.25, 0.5] and sink.underruns == []


async def test_the_sink_hears_nothing_while_paused(autojump_clock: trio.testing.MockClock) -> None:
    sink = ClockedSink(RATE)
    await sink.play(tone(0.3))
    await trio.sleep(0.1)
    sink.pause()
    await trio.sleep(0.5)
    assert sink.frames_read == round(0.1 * RATE)
    sink.resume()
    await sink.wait_played(sink.frames_written)
    assert trio.current_time() == pytest.approx(0.8)
    assert [(h.at, h.until) for h in sink.heard] == [
        (0.0, pytest.approx(0.1)),
        (pytest.approx(0.6), pytest.approx(0.8)),
    ]


def test_a_pace_sends_the_first_chunk_after_its_delay_then_each_once_made() -> None:
    arrivals = BURSTY.arrivals(RATE)
    assert arrivals[:3] == [
        (0.15, round(0.02 * RATE)),
        (pytest.approx(0.15 + 0.1 / 3), round(0.1 * RATE)),
        (pytest.approx(0.15 + 0.2 / 3), round(0.1 * RATE)),
    ]
    assert sum(size for _, size in arrivals) == RATE
