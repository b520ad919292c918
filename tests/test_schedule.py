"""Scheduled starts (`"at"`): the rules for an instant, the silence reckoned up to it, and,
through the real daemon, the embedded local voice and the null sink, the first loud sample
recorded at `at`; refusals with their reasons."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from playspeak.config import AudioConfig
from playspeak.daemon import open_daemon
from playspeak.errors import ProtocolError
from playspeak.schedule import ScheduleRules, frames_until, to_monotonic

from daemon_helpers import LineClient, sound_card_config
from soundcard import PulseNullSink

RATE = 48000
AHEAD = 1.0  # the scheduled instant, this far after the speak (decoding ahead takes ~0.2 s)
# The first loud sample is recorded this close to `at`. Seen (this machine, idle): +1.7 to
# +3.7 ms in two runs of each case; the recorder's own stamps are good to parec's 10 ms blocks.
MARGIN = 0.025


def test_an_instant_in_the_past_or_too_far_ahead_is_refused_with_the_reason() -> None:
    rules = ScheduleRules(tolerance=0.05, max_ahead=60)
    rules.check(1000.0, 1000.04)  # within the tolerance: starts at once
    rules.check(1059.0, 1000.0)
    with pytest.raises(ProtocolError, match=r"0\.500 s in the past .*NTP"):
        rules.check(999.5, 1000.0)
    with pytest.raises(ProtocolError, match=r"61\.0 s ahead.*schedule_max_ahead"):
        rules.check(1061.0, 1000.0)


def test_the_silence_before_a_start_is_reckoned_from_a_played_block() -> None:
    # frame 4800 is heard at t=10.0; frames up to 9600 are written: 20 ms later comes
    # 10.12's frame, 4800 + 0.12 * 48000 = 10560, so 960 silent frames are due
    assert frames_until(10.12, 4800, 10.0, RATE, 9600) == 960
    assert frames_until(10.05, 4800, 10.0, RATE, 9600) == -2400  # 50 ms late
    assert to_monotonic(1_700_000_001.5, 1_700_000_000.0, 50.0) == 51.5


@pytest.mark.parametrize("steady", [0.0, 0.15], ids=["one-stream", "steady-switch"])
async def test_the_first_sound_is_heard_at_at(
    tmp_path: Path, sound_card: PulseNullSink, steady: float
) -> None:
    config = sound_card_config(tmp_path)
    config = replace(config, audio=replace(config.audio, steady_latency=steady))
    with sound_card.recorder() as recorder:
        async with open_daemon(config) as daemon:
            client = await LineClient.open(daemon.socket_path)
            errors = []
            for _ in range(2):  # on an idle device, then right after an utterance
                mark = recorder.count
                at = time.time() + AHEAD
                reply = await client.command(cmd="speak", text="Dinner is ready.", at=at)
                with trio.fail_after(30):
                    events = await client.events_until_end({reply["id"]})
                assert [e["event"] for e in events] == ["queued", "started", "finished"]
                first = recorder.first_loud(mark)
                assert first is not None
                heard = recorder.time_of(first)
                errors.append(heard - to_monotonic(at, time.time(), time.monotonic()))
    print("first sound against at (ms):", [round(e * 1000, 1) for e in errors])
    assert all(abs(e) <= MARGIN for e in errors), errors


async def test_a_past_or_far_instant_is_refused_and_the_daemon_serves_on(
    tmp_path: Path,
) -> None:
    config = replace(
        sound_card_config(tmp_path), audio=AudioConfig(device=f"wav:{tmp_path}/out.wav")
    )
    async with open_daemon(config) as daemon:
        client = await LineClient.open(daemon.socket_path)
        past = await client.command(cmd="speak", text="Too late.", at=time.time() - 5)
        assert past["event"] == "error"
        assert "in the past" in past["error"] and "NTP" in past["error"]
        far = await client.command(cmd="speak", text="Too soon.", at=time.time() + 3600)
        assert far["event"] == "error" and "schedule_max_ahead" in far["error"]
        bad = await client.command(cmd="speak", text="Not a time.", at="noon")
        assert bad["event"] == "error" and "'at'" in bad["error"]
        reply = await client.command(cmd="speak", text="Still here.", at=time.time() + 0.2)
        events = await client.events_until_end({reply["id"]})
        assert events[-1]["event"] == "finished"


async def test_a_waiting_scheduled_start_keeps_the_order_and_cancels_cleanly(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    async with open_daemon(sound_card_config(tmp_path)) as daemon:
        client = await LineClient.open(daemon.socket_path)
        watcher = await LineClient.open(daemon.socket_path)
        assert (await watcher.command(cmd="subscribe"))["event"] == "ok"
        # one queued after a scheduled one waits for it: the order of speech is kept
        first = await client.command(cmd="speak", text="Dinner.", at=time.time() + AHEAD)
        second = await client.command(cmd="speak", text="Then dessert.")
        with trio.fail_after(30):
            events = await watcher.events_until_end({first["id"], second["id"]})
        order = [(e["event"], e["id"]) for e in events if e["event"] != "queued"]
        assert order == [
            ("started", first["id"]),
            ("finished", first["id"]),
            ("started", second["id"]),
            ("finished", second["id"]),
        ]
        # cancelled while it waits: it ends once, is never heard, and the silence before
        # it goes with it (the next one is not held behind that)
        waiting = await client.command(cmd="speak", text="Never.", at=time.time() + AHEAD)
        # its stream opens SCHEDULE_LEAD_SECONDS (0.3) before `at` on silence: cancelled
        # while that silence is still in the ring (the device takes ~0.11 s at once)
        await trio.sleep(AHEAD - 0.25)
        assert (await client.command(cmd="cancel", id=waiting["id"]))["event"] == "ok"
        status = (await client.command(cmd="status"))["status"]
        after = await client.command(cmd="speak", text="Dessert is ready.")
        with trio.fail_after(30):
            events = await watcher.events_until_end({waiting["id"], after["id"]})
        mine = [e["event"] for e in events if e["id"] == waiting["id"]]
        assert mine == ["queued", "cancelled"]
        print("buffered after the cancel:", status["device"]["buffered"])
        assert status["device"]["buffered"] == 0
