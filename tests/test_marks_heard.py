"""Index marks through the real daemon, the embedded local voice and the null sink: told in
order, between `started` and `finished`, at the moment the audio after them is heard (in the
pause between the parts they separate, as recorded), and never for a cancelled utterance; on
a voice without markup too, after the silence its SSML break made."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import trio

from playspeak.config import LocalServerConfig
from playspeak.daemon import open_daemon
from playspeak.engines.generated import RATE as generated_rate
from playspeak.engines.generated import generate

from daemon_helpers import LineClient
from soundcard import RATE, SOUND_THRESHOLD, PulseNullSink
from ssip_helpers import SsipClient, ssip_config

FIRST, SECOND = "The first part of this sentence.", "Then comes the second part of it."
GAP = 0.05  # silence this long inside speech separates its parts
CAPTURE_LAG = 0.06  # the recording runs behind the sink by up to this (parec's 10 ms blocks)


def gaps(pcm: np.ndarray) -> list[tuple[int, int]]:
    """The silent runs longer than GAP between loud samples: (first silent, first loud after)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > SOUND_THRESHOLD)
    steps = np.diff(loud)
    return [(int(loud[i]) + 1, int(loud[i + 1])) for i in np.flatnonzero(steps > GAP * RATE)]


async def test_ssip_marks_are_told_in_order_when_the_audio_after_them_is_heard(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    with sound_card.recorder() as recorder:
        async with open_daemon(ssip_config(tmp_path)) as daemon:
            client = await SsipClient.open(daemon.socket_path.with_name("speechd.sock"))
            for line in ("SET SELF SSML_MODE on", "SET SELF NOTIFICATION ALL on"):
                assert (await client.command(line))[-1].startswith("2")
            watcher = await LineClient.open(daemon.socket_path)
            assert (await watcher.command(cmd="subscribe"))["event"] == "ok"
            start = recorder.count
            clock = time.time() - time.monotonic()
            text = f'<speak>{FIRST}<mark name="m1"/>{SECOND}<mark name="m2"/></speak>'
            ident = f"ssip-{await client.speak(text)}"
            with trio.fail_after(30):
                events = await watcher.events_until_end({ident})
                notified = [await client.event() for _ in range(4)]
            pcm = await recorder.heard(start)
            await client.aclose()
    mine = [e for e in events if e.get("id") == ident]
    assert [(e["event"], e.get("name")) for e in mine[1:]] == [
        ("started", None),
        ("mark", "m1"),
        ("mark", "m2"),
        ("finished", None),
    ]
    assert [n[-1] for n in notified] == ["701 BEGIN", "700 INDEX_MARK", "700 INDEX_MARK", "702 END"]
    assert [n[2] for n in notified[1:3]] == ["700-m1", "700-m2"]
    # m1 falls in the pause between the parts (the longest silence, ~370 ms here), m2 once
    # the last sound was heard. Seen idle: m1 50 ms before the second part's sound, m2 at
    # `finished`. Both sides are reckoned from clocks that lag (the card's reported latency,
    # the capture's chunks): CAPTURE_LAG either way.
    m1, m2 = (e["t"] - clock for e in mine[2:4])  # as monotonic times
    pause = max(gaps(pcm), key=lambda gap: gap[1] - gap[0])
    pause_heard = [recorder.time_of(start + index) for index in pause]
    print(f"m1 {m1:.3f}, pause heard {pause_heard[0]:.3f}-{pause_heard[1]:.3f}")
    assert pause_heard[0] - CAPTURE_LAG <= m1 <= pause_heard[1] + CAPTURE_LAG
    last_sound = recorder.time_of(start + int(np.flatnonzero(np.abs(pcm) > SOUND_THRESHOLD)[-1]))
    assert m2 >= last_sound - CAPTURE_LAG


async def test_marks_on_the_control_socket_and_none_after_a_cancel(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    async with open_daemon(ssip_config(tmp_path)) as daemon:
        client = await LineClient.open(daemon.socket_path)
        text = f"{FIRST}<mark name='a'/>Yes.<mark name='b'/>{SECOND}"
        ident = (await client.command(cmd="speak", text=text))["id"]
        with trio.fail_after(30):
            event = await client.wait_for("mark")
            assert (event["id"], event["name"]) == (ident, "a")
            assert (await client.command(cmd="cancel", id=ident))["event"] == "ok"
            events = [event] + await client.events_until_end({ident})
            # b was due half a second after a, its segment already played into the device; the
            # next utterance plays past that frame: an announcer left behind would tell b.
            after = (await client.command(cmd="speak", text=f"{SECOND} And more."))["id"]
            events += await client.events_until_end({after})
    kinds = [e["event"] for e in events if e.get("id") == ident]
    assert kinds == ["mark", "cancelled"]
    assert [e["event"] for e in events if e.get("id") == after][-1] == "finished"


async def test_the_generated_voice_says_a_break_and_tells_the_mark_after_it(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    """A voice without markup (the generated one, deterministic) says SSML's break as silence
    in its reply: heard as rendered, the mark after it told once the words after it are."""
    config = dataclasses.replace(
        ssip_config(tmp_path), local_server=LocalServerConfig(synth="generated")
    )
    text = '<speak>One, <break time="500ms"/><mark name="m"/>two</speak>'
    voice = "generated"
    rendered = np.concatenate(
        [generate("One,", voice), np.zeros(generated_rate // 2), generate("two", voice)]
    )
    with sound_card.recorder() as recorder:
        async with open_daemon(config) as daemon:
            client = await LineClient.open(daemon.socket_path)
            start = recorder.count
            ident = (await client.command(cmd="speak", text=text, voice=voice, ssml=True))["id"]
            with trio.fail_after(10):
                events = await client.events_until_end({ident})
            pcm = await recorder.heard(start)
    assert [(e["event"], e.get("name")) for e in events] == [
        ("queued", None),
        ("started", None),
        ("mark", "m"),
        ("finished", None),
    ]
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > SOUND_THRESHOLD)
    heard_s = (loud[-1] - loud[0]) / RATE
    expected = np.flatnonzero(np.abs(rendered) > SOUND_THRESHOLD)
    rendered_s = (expected[-1] - expected[0]) / generated_rate
    pause = max(gaps(pcm), key=lambda gap: gap[1] - gap[0])
    print(f"heard {heard_s:.3f} s, rendered {rendered_s:.3f} s, pause {pause}")
    assert abs(heard_s - rendered_s) < 0.03  # 0.5 s shorter without the break
    assert (pause[1] - pause[0]) / RATE > 0.5  # where it is: after the comma
