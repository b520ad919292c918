"""SSIP's PAUSE as Speech Dispatcher means it, through the real daemon, real SSIP sockets and
the null sink: a connection's pause holds its own messages only, `704 PAUSED` comes once its
sound has stopped (after the reply, in a write of its own), `705 RESUMED` when it resumes, and
the pause ends when the connection closes. Every utterance starts once and ends once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import trio

from playspeak.config import Config
from playspeak.daemon import Daemon

from daemon_helpers import ENDINGS, LineClient
from soundcard import SOUND_THRESHOLD, PulseNullSink, Recorder
from ssip_helpers import SsipClient, ssip_config

# 3.4 s with espeak-ng, said twice (paused soon after it is heard, then again from its start)
LONG = "A weather report that goes on for a while, about the clouds."
# The capture runs behind the sink (parec's 10 ms blocks and scheduling): sound recorded up to
# this long after the 704 was read may still have been played before it.
CAPTURE_LAG = 0.06


@pytest.fixture
def daemon_config(tmp_path: Path, sound_card: PulseNullSink) -> Config:
    return ssip_config(tmp_path)


@pytest.fixture
async def watcher(daemon: Daemon) -> LineClient:
    client = await LineClient.open(daemon.socket_path)
    assert (await client.command(cmd="subscribe"))["event"] == "ok"
    return client


@pytest.fixture
def recorder(sound_card: PulseNullSink) -> AsyncIterator[Recorder]:
    with sound_card.recorder() as rec:
        yield rec


async def ssip(daemon: Daemon) -> SsipClient:
    client = await SsipClient.open(daemon.socket_path.with_name("speechd.sock"))
    assert (await client.command("SET SELF NOTIFICATION ALL on"))[-1].startswith("2")
    return client


def last_loud(recorder: Recorder, start: int) -> int | None:
    pcm = recorder.samples(start)
    hits = np.flatnonzero(np.abs(pcm.astype(np.int32)) > SOUND_THRESHOLD)
    return start + int(hits[-1]) if len(hits) else None


async def test_pause_self_holds_that_clients_messages_only(
    daemon: Daemon, watcher: LineClient, recorder: Recorder
) -> None:
    a, b = await ssip(daemon), await ssip(daemon)
    long_id = f"ssip-{await a.speak(LONG)}"
    seen = await watcher.until("started", long_id)
    assert (await a.event())[-1] == "701 BEGIN"
    loud = await trio.to_thread.run_sync(recorder.wait_loud, recorder.mark, 10.0)
    assert loud is not None, "the message was not heard"

    reads = len(a.reads)
    assert await a.command("PAUSE SELF") == ["211 OK PAUSED"]
    paused = await a.event()
    heard_704 = time.monotonic()
    assert paused == [long_id.replace("ssip-", "704-"), paused[1], "704 PAUSED"]
    assert not any(b"704" in r and b"211" in r for r in a.reads[reads:])  # a write of its own
    # its sound had stopped when the 704 was sent
    await recorder.heard()
    end = last_loud(recorder, loud)
    assert end is not None and recorder.time_of(end) < heard_704 + CAPTURE_LAG

    # another client's message speaks while the first waits
    short_id = f"ssip-{await b.speak('Meanwhile.')}"
    seen += await watcher.until("finished", short_id)
    assert not any(e.get("id") == long_id and e["event"] in ENDINGS for e in seen)

    assert await a.command("RESUME SELF") == ["212 OK RESUMED"]
    assert (await a.event())[-1] == "705 RESUMED"
    seen += await watcher.until("finished", long_id)
    assert (await a.event())[-1] == "702 END"  # said again from its start, not begun twice
    mine = [e["event"] for e in seen if e.get("id") == long_id]
    assert mine == ["queued", "started", "paused", "resumed", "finished"]
    await a.aclose()
    await b.aclose()


async def test_pause_all_holds_everyone_and_a_pause_ends_when_its_client_leaves(
    daemon: Daemon, watcher: LineClient
) -> None:
    a, b = await ssip(daemon), await ssip(daemon)
    assert await a.command("PAUSE ALL") == ["211 OK PAUSED"]
    a_id, b_id = f"ssip-{await a.speak('From a.')}", f"ssip-{await b.speak('From b.')}"
    status = (await watcher.command(cmd="status"))["status"]
    assert {a_id, b_id} <= {q["id"] for q in status["queue"]}  # both held, nothing speaks
    assert status["in_flight"] == []

    await b.aclose()  # its pause ends with it: its message is said
    seen = await watcher.until("finished", b_id)
    assert not any(e.get("id") == a_id and e["event"] in ENDINGS for e in seen)
    assert await a.command("RESUME SELF") == ["212 OK RESUMED"]
    seen += await watcher.until("finished", a_id)
    for ident in (a_id, b_id):
        assert [e["event"] for e in seen if e.get("id") == ident].count("started") == 1
    await a.aclose()
