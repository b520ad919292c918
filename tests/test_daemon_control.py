"""Announcement control end to end: priorities, interruption, stop/skip/cancel, pause/resume,
volume, chimes and many clients — checked by events and by the audio recorded at the null sink."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import trio

from playspeak.chime import builtin_chime
from playspeak.config import (
    DEFAULT_VOICE,
)
from playspeak.daemon import Daemon, open_daemon

from audio_compare import RATE, WHOLE, Hearing, align, hearing, loud, reference_pcm
from daemon_helpers import ENDINGS, LineClient, device_underflows, sound_card_config, speak
from soundcard import PulseNullSink, Recorder

MS = RATE // 1000
LONG = (
    "This is a long weather report that goes on for quite a while, about the clouds, "
    "the rain, and the wind in the north."
)


def outcome(lines: list[dict], uid: str) -> str:
    return next(e["event"] for e in lines if e.get("id") == uid and e["event"] in ENDINGS)


async def audio(daemon: Daemon, text: str) -> np.ndarray:
    return reference_pcm(await daemon.local_server.render(text=text, voice=DEFAULT_VOICE))


def quiet_runs(samples: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of every stretch of digital silence (|x| < 2 on the int16 scale)."""
    quiet = (np.abs(samples) < 2).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet, [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


async def heard(daemon: Daemon, recorded: np.ndarray, text: str) -> Hearing:
    """How the whole utterance `text` appears in the recording."""
    return hearing(recorded, await audio(daemon, text), device_underflows(daemon))


async def test_important_interrupts_and_is_heard_whole(daemon: Daemon, recorder: Recorder):
    client = await LineClient.open(daemon.socket_path)
    report = await speak(client, LONG)
    lines = await client.until("started", report)
    # Let a second of the report be heard (counted in recorded samples, not slept).
    assert await recorder.wait_samples_async(recorder.count + RATE, timeout=5)
    alarm = await speak(client, "Smoke alarm!", priority="important")
    lines += await client.events_until_end({report, alarm})
    assert outcome(lines, report) == "cancelled"
    assert outcome(lines, alarm) == "finished"
    reason = next(e["reason"] for e in lines if e["event"] == "cancelled")
    assert reason == f"interrupted by {alarm}"
    recorded = await recorder.heard()
    assert (alarm_heard := await heard(daemon, recorded, "Smoke alarm!")).whole, alarm_heard
    assert (await heard(daemon, recorded, LONG)).corr < 0.9  # only its beginning was said
    beginning = (await audio(daemon, LONG))[: RATE // 2]
    said = hearing(recorded, beginning, device_underflows(daemon))
    assert said.whole, said  # ... which was


async def test_text_interrupts_itself_only_the_newest_is_said(
    daemon: Daemon, recorder: Recorder
) -> None:
    client = await LineClient.open(daemon.socket_path)
    ids = [await speak(client, f"Menu item {n}.", priority="text") for n in (1, 2, 3)]
    lines = await client.events_until_end(set(ids))
    assert [outcome(lines, i) for i in ids] == ["cancelled", "cancelled", "finished"]
    recorded = await recorder.heard()
    assert (newest := await heard(daemon, recorded, "Menu item 3.")).whole, newest
    assert (await heard(daemon, recorded, "Menu item 1.")).corr < 0.9


async def test_ssml_reaches_the_local_server_and_its_break_is_heard(
    daemon: Daemon, recorder: Recorder
) -> None:
    """Through a service (here the embedded server on loopback) SSML goes beside its words,
    and a local server says it: the utterance plays its 1.5 s break."""
    client = await LineClient.open(daemon.socket_path)
    text = '<speak>Front door, <break time="1500ms"/> back door.</speak>'
    uid = await speak(client, text, ssml=True)
    mark = recorder.count
    lines = await client.events_until_end({uid})
    assert outcome(lines, uid) == "finished"
    recorded = await recorder.heard(mark)
    pause = int(np.diff(loud(recorded)).max())  # between the words: a comma's, or the break
    assert pause >= 1.3 * RATE, pause / RATE


async def test_notification_is_dropped_while_a_message_speaks(daemon: Daemon) -> None:
    client = await LineClient.open(daemon.socket_path)
    message = await speak(client, "The washing machine is done.")
    await client.until("started", message)
    note = await speak(client, "New mail.", priority="notification")
    lines = await client.events_until_end({message, note})
    assert outcome(lines, note) == "cancelled" and outcome(lines, message) == "finished"
    assert [e["event"] for e in lines if e.get("id") == note] == ["queued", "cancelled"]


async def test_progress_the_last_of_a_series_is_always_said(
    daemon: Daemon, recorder: Recorder
) -> None:
    client = await LineClient.open(daemon.socket_path)
    first = await speak(client, "Ten percent.", priority="progress")
    await client.until("started", first)
    later = [await speak(client, f"{n} percent.", priority="progress") for n in (20, 30, 40)]
    lines = await client.events_until_end({first, *later})
    assert [outcome(lines, i) for i in (first, *later)] == [
        "finished",
        "cancelled",
        "cancelled",
        "finished",
    ]
    recorded = await recorder.heard()
    assert (last := await heard(daemon, recorded, "40 percent.")).whole, last


async def test_stop_and_skip_end_the_one_speaking_and_cancel_ends_the_named_or_own(
    daemon: Daemon,
) -> None:
    a, b = await LineClient.open(daemon.socket_path), await LineClient.open(daemon.socket_path)
    first = await speak(a, LONG)
    second = await speak(a, LONG)
    third = await speak(a, "Third.", id="third")
    fourth = await speak(a, "Fourth.")
    theirs = await speak(b, "From the other client.")
    await a.until("started", first)
    assert (await b.command(cmd="stop"))["stopped"] == [first]
    lines = await a.until("started", second)  # the next in the queue plays
    assert (await b.command(cmd="skip"))["stopped"] == [second]
    cancel = await b.command(cmd="cancel", id="third")
    assert cancel["cancelled"] == ["third"]
    mine = await b.command(cmd="cancel", scope="self")
    assert mine["cancelled"] == [theirs]
    lines += await a.events_until_end({second, third, fourth})
    ends = {e["id"]: e for e in lines if e["event"] in ENDINGS}
    assert [ends[i]["event"] for i in (first, second, third, fourth)] == [
        "cancelled",
        "cancelled",
        "cancelled",
        "finished",
    ]
    assert ends[first]["reason"] == ends[second]["reason"] == "stopped"
    assert {e["id"] for e in lines} == {first, second, third, fourth}  # only its own events


async def test_pause_resume_continues_with_the_same_samples(
    daemon: Daemon, recorder: Recorder
) -> None:
    text = "Pause in the middle of this sentence, then go on."
    client = await LineClient.open(daemon.socket_path)
    uid = await speak(client, text)
    await client.until("started", uid)
    start = recorder.count
    assert await recorder.wait_sound_async(RATE // 4, timeout=5, start=start)
    assert (await client.command(cmd="pause"))["event"] == "ok"
    lines = await client.until("paused", uid)
    paused_at = recorder.count
    assert await recorder.wait_samples_async(paused_at + RATE // 2, timeout=5)
    assert (await client.command(cmd="resume"))["event"] == "ok"
    lines += await client.events_until_end({uid})
    assert [e["event"] for e in lines if e.get("id") == uid] == ["paused", "resumed", "finished"]

    # align() needs the whole clip, trailing silence too, inside the recording: the monitor's
    # copy of the last samples can come in a little after `finished`
    assert await recorder.wait_samples_async(recorder.count + RATE // 10, timeout=5)
    recorded = await recorder.heard()
    # the pause is the longest silence inside the speech (the recording's silent lead-in and
    # tail grow on a loaded machine, and may be longer)
    loud_at = np.flatnonzero(np.abs(recorded) >= 2)
    inside = [r for r in quiet_runs(recorded) if loud_at[0] < r[0] and r[1] <= loud_at[-1]]
    begin, end = max(inside, key=lambda r: r[1] - r[0])
    assert end - begin >= RATE // 3, "the pause is a stretch of silence"
    # The pause may begin or end next to the speech's own quiet samples (a gap between words,
    # a zero crossing), which then belong to the stretch: keep as many of them as the clip
    # has between the audio just before the pause and the audio just after it.
    expected = await audio(daemon, text)
    reference = (expected[:, 0] * 32768).astype(np.int16)
    n = RATE // 5
    before_end = align(reference, recorded[begin - n : begin, None] / 32768)[0] + n
    after_start = align(reference, recorded[end : end + n, None] / 32768)[0]
    natural = after_start - before_end
    assert 0 <= natural <= end - begin, "the audio after the pause follows the audio before"
    spliced = np.concatenate([recorded[:begin], recorded[end - natural :]])
    assert (resumed := await heard(daemon, spliced, text)).whole, resumed


async def test_volume_scales_the_samples(daemon: Daemon, recorder: Recorder) -> None:
    client = await LineClient.open(daemon.socket_path)
    uid = await speak(client, "Half as loud.", volume=50)
    await client.events_until_end({uid})
    half = await heard(daemon, await recorder.heard(), "Half as loud.")
    assert half.whole and half.gain == pytest.approx(0.5, abs=0.02), half

    assert (await client.command(cmd="volume", level=25))["level"] == 25
    mark = recorder.count
    uid = await speak(client, "Quieter still.")
    await client.events_until_end({uid})
    quarter = await heard(daemon, await recorder.heard(mark), "Quieter still.")
    assert quarter.whole and quarter.gain == pytest.approx(0.25, abs=0.02), quarter


async def test_chime_then_speech_with_no_gap(
    tmp_path: Path, sound_card: PulseNullSink, recorder: Recorder
) -> None:
    async with open_daemon(sound_card_config(tmp_path, sound="builtin")) as daemon:
        client = await LineClient.open(daemon.socket_path)
        alarm = await speak(client, "Front door.", priority="important")
        plain = await speak(client, "No chime for me.", chime=False, priority="important")
        await client.events_until_end({alarm, plain})
        recorded = await recorder.heard()
        chime = builtin_chime(RATE).reshape(-1, 1)
        chime_heard = hearing(recorded, chime, device_underflows(daemon))
        speech = await audio(daemon, "Front door.")
        speech_heard = hearing(recorded, speech, device_underflows(daemon))
        assert chime_heard.whole and speech_heard.whole, (str(chime_heard), str(speech_heard))
        gap = speech_heard.lag - (chime_heard.lag + len(chime))
        if chime_heard.corr >= WHOLE and speech_heard.corr >= WHOLE:  # no underrun in them
            assert 0 <= gap <= 20 * MS, f"{gap / MS:.1f} ms from chime to speech"
        # The second one asked for no chime: one chime in the whole recording.
        after = recorded[speech_heard.lag + len(speech) :]
        assert len(after) < len(chime) or align(after, chime)[1] < 0.5


async def test_subscribers_see_every_utterance(daemon: Daemon) -> None:
    watcher = await LineClient.open(daemon.socket_path)
    assert (await watcher.command(cmd="subscribe"))["event"] == "ok"
    speakers = [await LineClient.open(daemon.socket_path) for _ in range(3)]
    ids = [await speak(c, f"Speaker {n}.") for n, c in enumerate(speakers)]
    lines = await watcher.events_until_end(set(ids))
    for uid in ids:
        assert [e["event"] for e in lines if e["id"] == uid] == ["queued", "started", "finished"]


async def cli(*args: str, socket: Path) -> tuple[int, str]:
    result = await trio.run_process(
        [sys.executable, "-m", "playspeak", *args],
        env={**os.environ, "PLAYSPEAK_SOCKET": str(socket)},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode() + result.stderr.decode()


async def test_the_cli_verbs_end_to_end(daemon: Daemon) -> None:
    path = daemon.socket_path
    client = await LineClient.open(path)
    uid = await speak(client, LONG)
    await client.until("started", uid)
    assert (await cli("pause", socket=path))[0] == 0
    await client.until("paused", uid)
    code, out = await cli("status", socket=path)
    status = json.loads(out)["status"]
    assert code == 0 and status["paused"] is True and status["speaking"]["id"] == uid
    assert (await cli("resume", socket=path))[0] == 0
    await client.until("resumed", uid)
    code, out = await cli("volume", "80", socket=path)
    assert code == 0 and json.loads(out)["level"] == 80
    assert (await cli("skip", socket=path))[0] == 0
    await client.until("cancelled", uid)
    queued = [await speak(client, f"Queued {n}.") for n in range(2)]
    code, out = await cli("cancel", socket=path)
    assert code == 0
    lines = await client.events_until_end(set(queued))
    assert {outcome(lines, i) for i in queued} == {"cancelled"}
    code, out = await cli(
        "say", "--wait", "--priority", "important", "--no-chime", "Hi.", socket=path
    )
    assert code == 0, out
    assert (await cli("stop", socket=path))[0] == 0
    assert (await cli("ping", socket=path))[0] == 0


async def test_watch_prints_events(daemon: Daemon) -> None:
    env = {**os.environ, "PLAYSPEAK_SOCKET": str(daemon.socket_path)}
    command = [sys.executable, "-m", "playspeak", "watch"]
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            partial(trio.run_process, command, env=env, check=False, stdout=subprocess.PIPE)
        )
        lines = LineClient(process.stdout)  # the same line reading, on watch's output
        assert (await lines.event())["cmd"] == "subscribe"  # from here on, nothing is missed
        client = await LineClient.open(daemon.socket_path)
        uid = await speak(client, "Watched.")
        with trio.fail_after(20):
            events = await lines.events_until_end({uid})
        process.terminate()
    assert [e["event"] for e in events if e["id"] == uid] == ["queued", "started", "finished"]


async def test_paused_while_idle_holds_new_speech_without_resumed_events(daemon: Daemon) -> None:
    client = await LineClient.open(daemon.socket_path)
    assert (await client.command(cmd="pause"))["event"] == "ok"
    uid = await speak(client, "Held until resumed.")
    assert daemon.speaker.status()["paused"] is True
    assert (await client.command(cmd="resume"))["event"] == "ok"
    lines = await client.events_until_end({uid})
    assert [e["event"] for e in lines if e.get("id") == uid] == ["queued", "started", "finished"]
