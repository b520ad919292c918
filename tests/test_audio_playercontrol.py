"""The player's control (audio/playercontrol.py): the verbs' requests to its owner task and the
one wake-up, on virtual time (`autojump_clock`); no device, no sound."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from playspeak.audio.playercontrol import Command, PlayerControl

WATCH = 0.25  # the owner's longest sleep, as the player's


async def waited(control: PlayerControl, timeout: float = WATCH) -> float:
    """How long (virtual seconds) the owner's wait took."""
    before = trio.current_time()
    await control.wait(timeout)
    return trio.current_time() - before


async def test_a_pending_start_is_taken_once_and_the_owner_does_not_sleep_meanwhile(
    autojump_clock: trio.testing.MockClock,
) -> None:
    control = PlayerControl()
    control.ask(Command.START)
    assert control.pending(Command.START)
    assert await waited(control) == 0
    assert await waited(control) == 0  # still pending: play() waits for the outcome
    assert control.take(Command.START)
    assert not control.take(Command.START)
    assert not control.pending(Command.START)
    assert await waited(control) == WATCH  # nothing left to do: the owner's periodic look


async def test_a_request_wakes_the_waiting_owner_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    control = PlayerControl()
    woke_after: list[float] = []

    async def owner() -> None:
        woke_after.append(await waited(control, 10.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(owner)
        await trio.sleep(1.0)
        control.ask(Command.STOP_NOW)
    assert woke_after == [1.0]
    assert control.take(Command.STOP_NOW)


async def test_a_request_made_while_the_owner_works_is_seen_by_its_next_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    control = PlayerControl()
    await waited(control)
    control.wake()  # e.g. the callback reached the switch point while the owner was busy
    assert await waited(control) == 0
    assert await waited(control) == WATCH  # that wake-up was used up


async def test_a_stop_left_pending_does_not_keep_the_owner_awake(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # STOP_NOW is taken only where the owner closes a running stream; until then it must not
    # turn the owner's loop into a spin
    control = PlayerControl()
    control.ask(Command.STOP_NOW)
    assert await waited(control) == 0  # the ask itself woke it
    assert await waited(control) == WATCH
    assert control.pending(Command.STOP_NOW)


async def test_commands_are_taken_one_by_one(autojump_clock: trio.testing.MockClock) -> None:
    control = PlayerControl()
    control.ask(Command.START)
    control.ask(Command.STOP_NOW)
    control.ask(Command.START)  # asked twice before the owner looked: one start
    assert control.take(Command.START)
    assert control.pending(Command.STOP_NOW) and not control.pending(Command.START)
    assert control.take(Command.STOP_NOW)
    assert not control.take(Command.STOP_NOW)


@pytest.mark.parametrize("now", [9.0, 10.0, 11.0])
def test_a_prepared_stream_is_wanted_until_its_deadline(now: float) -> None:
    control = PlayerControl()
    assert not control.open_wanted(now)
    control.keep_open_until(10.0)
    assert control.open_wanted(now) == (now < 10.0)


async def test_prepare_and_its_undoing_wake_the_owner_only_when_something_changes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    control = PlayerControl()
    control.unprepare()  # nothing was prepared: the owner sleeps on
    assert await waited(control) == WATCH
    control.keep_open_until(trio.current_time() + 1.0)
    assert await waited(control) == 0  # the owner opens one
    control.unprepare()
    assert await waited(control) == 0  # the owner closes it
    assert not control.open_wanted(trio.current_time())


async def test_a_started_stream_ends_the_wait_for_the_prepared_speech_without_a_wake_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    control = PlayerControl()
    control.keep_open_until(trio.current_time() + 1.0)
    await waited(control)
    control.speech_came()  # the owner's own doing: nothing to wake it for
    assert not control.open_wanted(trio.current_time())
    assert await waited(control) == WATCH
    control.unprepare()  # cancel() after the start: no prepared stream to close
    assert await waited(control) == WATCH
