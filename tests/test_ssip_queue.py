"""SSIP queues as Speech Dispatcher's, through the real daemon and real SSIP sockets: a burst of
500 messages from one client is taken (speechd queues them all; libspeechd's spd_say loses a
message that is refused), and what bounds a client is the memory its waiting messages hold."""

from __future__ import annotations

from pathlib import Path

import trio

from playspeak.config import SpeechConfig
from playspeak.daemon import open_daemon
from playspeak.speech import UTTERANCE_BYTES

from daemon_helpers import ENDINGS, LineClient
from soundcard import PulseNullSink
from ssip_helpers import SsipClient, ssip_config

BURST = 500


async def test_a_burst_of_500_messages_is_taken_and_each_ends_once(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    async with open_daemon(ssip_config(tmp_path)) as daemon:
        watcher = await LineClient.open(daemon.socket_path)
        assert (await watcher.command(cmd="subscribe"))["event"] == "ok"
        client = await SsipClient.open(daemon.socket_path.with_name("speechd.sock"))
        ids = {f"ssip-{await client.speak(f'Key {n}.')}" for n in range(BURST)}
        assert len(ids) == BURST  # every one answered 225, none 300
        assert await client.command("CANCEL SELF") == ["213 OK CANCELED"]
        events = await watcher.events_until_end(ids)
        ends = [e["id"] for e in events if e["event"] in ENDINGS and e.get("id") in ids]
        assert sorted(ends) == sorted(ids)  # each ended exactly once
        await client.aclose()


async def test_a_client_past_its_memory_is_refused_and_another_still_speaks(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    text = "x" * 2000
    budget = 3 * (len(text) + UTTERANCE_BYTES)  # three such messages wait, not four
    config = ssip_config(tmp_path, speech=SpeechConfig(client_queue_bytes=budget))
    async with open_daemon(config) as daemon:
        watcher = await LineClient.open(daemon.socket_path)
        assert (await watcher.command(cmd="subscribe"))["event"] == "ok"
        sock = daemon.socket_path.with_name("speechd.sock")
        greedy, other = await SsipClient.open(sock), await SsipClient.open(sock)
        assert (await greedy.command("PAUSE SELF"))[-1] == "211 OK PAUSED"  # they all wait
        for _ in range(3):
            await greedy.speak(text)
        refused = await greedy.try_speak(text)
        assert refused[-1].startswith("300 ERR QUEUE FULL"), refused
        assert "this client's queue is full" in refused[-1]
        ident = f"ssip-{await other.speak('Still here.')}"
        with trio.fail_after(20):
            events = await watcher.events_until_end({ident})
        assert [e["event"] for e in events if e.get("id") == ident][-1] == "finished"
        await greedy.aclose()
        await other.aclose()
