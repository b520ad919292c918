"""Key echo as a screen reader types, through the real daemon, its local voice, real SSIP
sockets and the null sink: each key after `CANCEL SELF` is heard, and cut by the next one.
(How soon each starts is bench.keys's to measure, beside Speech Dispatcher: not a test's.)"""

from __future__ import annotations

import itertools
from pathlib import Path

import trio

from playspeak.config import AudioConfig, Config, ControlConfig, SsipConfig
from playspeak.daemon import open_daemon

from audio_compare import RATE
from daemon_helpers import LineClient
from soundcard import PulseNullSink
from ssip_helpers import SsipClient

KEYS = "aeflmnors"


async def test_typed_keys_are_each_heard_and_cut_by_the_next(
    tmp_path: Path, sound_card: PulseNullSink
) -> None:
    config = Config(  # the shipped default voice: the local one, direct
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(samplerate=RATE),
        ssip=SsipConfig(socket=str(tmp_path / "speechd.sock")),
    )
    with sound_card.recorder() as recorder:
        async with open_daemon(config) as daemon:
            watcher = await LineClient.open(daemon.socket_path)
            assert (await watcher.command(cmd="subscribe"))["event"] == "ok"
            typist = await SsipClient.open(daemon.socket_path.with_name("speechd.sock"))
            ids, onsets, seen = [], [], []
            for key in KEYS:
                assert (await typist.command("CANCEL SELF"))[-1] == "213 OK CANCELED"
                mark = recorder.count
                reply = await typist.command(f"KEY {key}")
                assert reply[-1] == "225 OK MESSAGE QUEUED", reply
                ids.append(ident := f"ssip-{reply[0][4:]}")
                with trio.fail_after(10):
                    seen += (lines := await watcher.until("started"))
                    assert lines[-1]["id"] == ident
                # heard: its sound reached the sink (the next key comes only then)
                onsets.append(await trio.to_thread.run_sync(recorder.wait_loud, mark, 5.0))
            with trio.fail_after(10):
                seen += await watcher.events_until_end({ids[-1]})
            await typist.aclose()
    assert None not in onsets, onsets
    for earlier, later in itertools.pairwise(ids):
        # started, then cut by the next key's CANCEL before that key started
        kinds = [(e["event"], e["id"]) for e in seen if e.get("id") in (earlier, later)]
        assert kinds[:4] == [
            ("queued", earlier),
            ("started", earlier),
            ("cancelled", earlier),
            ("queued", later),
        ], kinds
    assert [e["event"] for e in seen if e.get("id") == ids[-1]] == ["queued", "started", "finished"]
