"""Events that tell the truth, through the daemon, the local server and the null sink: `started`
when the first sample is heard, one ending before the next start, a cancel behind the one
playing that leaves it whole, and `say --chime` with nothing configured."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import trio

from playspeak.chime import builtin_chime
from playspeak.config import DEFAULT_VOICE
from playspeak.daemon import Daemon, open_daemon

from audio_compare import RATE, align, hearing, reference_pcm
from daemon_helpers import LineClient, device_underflows, sound_card_config, speak
from soundcard import PulseNullSink, Recorder

MESSAGE = (
    "This is a message that takes a few seconds to say, about the garden, the washing "
    "machine, and the post that came this morning."
)


async def events_of(client: LineClient, ids: set[str]) -> list[dict]:
    return [e for e in await client.events_until_end(ids) if e.get("id") in ids]


async def rendered(daemon: Daemon, text: str) -> np.ndarray:
    return reference_pcm(await daemon.local_server.render(text=text, voice=DEFAULT_VOICE))


async def test_cancelling_the_text_behind_a_message_leaves_the_message_heard_once(
    daemon: Daemon, recorder: Recorder
) -> None:
    client = await LineClient.open(daemon.socket_path)
    message = await speak(client, MESSAGE, priority="message")
    first_text = await speak(client, "The first text.", priority="text")
    # 1.5 s of the message heard (counted in recorded samples), the first text buffered
    assert await recorder.wait_samples_async(recorder.count + int(1.5 * RATE), timeout=10)
    newer_text = await speak(client, "A newer text.", priority="text")
    events = await events_of(client, {message, first_text, newer_text})

    def kinds(uid: str) -> list[str]:
        return [e["event"] for e in events if e["id"] == uid]

    assert kinds(message) == ["queued", "started", "finished"]
    assert kinds(first_text)[-1] == "cancelled" and "started" not in kinds(first_text)
    assert kinds(newer_text)[-1] == "finished"
    recorded = await recorder.heard()
    speech = await rendered(daemon, MESSAGE)
    message_heard = hearing(recorded, speech, device_underflows(daemon))
    assert message_heard.whole, message_heard  # without a gap of the daemon's making
    beginning = speech[: RATE // 2]
    later = recorded[message_heard.lag + len(speech) :]
    assert len(later) < len(beginning) or align(later, beginning)[1] < 0.5  # and only once


async def test_started_comes_when_the_first_sample_is_heard_and_after_the_previous_end(
    tmp_path: Path, sound_card: PulseNullSink, recorder: Recorder
) -> None:
    # A service far faster than real time: the first write is larger than the whole buffer,
    # so play() returns only once most of it was heard (`started` used to wait for that).
    config = sound_card_config(tmp_path)
    fast = dataclasses.replace(config.local_server, realtime_factor=50.0)
    small = dataclasses.replace(config.audio, buffer_seconds=0.5)  # the text lasts ~2.5 s
    config = dataclasses.replace(config, local_server=fast, audio=small)
    async with open_daemon(config) as daemon:
        client = await LineClient.open(daemon.socket_path)
        first = await speak(client, "The first one, twice as long as the buffer.")
        second = await speak(client, "And the second one.")
        events = await events_of(client, {first, second})
        clock = time.time() - time.monotonic()  # event stamps are wall-clock times
        started = next(e["t"] for e in events if e["id"] == first and e["event"] == "started")
        onset = recorder.first_loud(recorder.mark)
        assert onset is not None
        heard_at = recorder.time_of(onset) + clock
        latency = daemon.player.stats["latency"]
        print(f"sound heard {1000 * (heard_at - started):+.1f} ms after `started`")
        # the recorder stamps a chunk when it reads it (~10-20 ms after it was played), and
        # speech begins with a few quiet ms: both make the sound look later, never earlier
        assert -latency <= heard_at - started <= latency + 0.05, (heard_at - started, latency)
        order = [(e["id"], e["event"]) for e in events if e["event"] in ("started", "finished")]
        assert order == [
            (first, "started"),
            (first, "finished"),
            (second, "started"),
            (second, "finished"),
        ]


async def test_say_chime_plays_the_built_in_chime_when_none_is_configured(
    daemon: Daemon, recorder: Recorder
) -> None:
    assert daemon.config.chime.sound == ""  # nothing configured
    client = await LineClient.open(daemon.socket_path)
    env = {**os.environ, "PLAYSPEAK_SOCKET": str(daemon.socket_path)}
    command = [sys.executable, "-m", "playspeak", "say", "--wait", "--chime", "Front door."]
    result = await trio.run_process(command, env=env, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr
    recorded = await recorder.heard()
    chime = hearing(recorded, builtin_chime(RATE).reshape(-1, 1), device_underflows(daemon))
    speech = hearing(recorded, await rendered(daemon, "Front door."), device_underflows(daemon))
    assert chime.whole and speech.whole, (str(chime), str(speech))
    assert chime.lag < speech.lag
    # ... and nothing is chimed when it is not asked for
    mark = recorder.count
    plain = await speak(client, "No chime.")
    await events_of(client, {plain})
    assert align(await recorder.heard(mark), builtin_chime(RATE).reshape(-1, 1))[1] < 0.5
