"""The speaker learns the service's pace from real replies: the embedded local server paced at
3x real time over a real websocket, PyAV decoding, the daemon's WAV-file output (unpaced, so
the test does not depend on the machine's load for what is written), and the sound card for
a reply that comes in while another plays."""

from __future__ import annotations

import wave
from pathlib import Path

from playspeak.config import AudioConfig, Config, ControlConfig, LocalServerConfig
from playspeak.daemon import Daemon, open_daemon

from daemon_helpers import ENDINGS, LineClient

RATE = 48000
TEXT = "The washing machine has finished, and the laundry is ready to be hung up."


async def test_the_service_pace_is_learned_from_replies_that_start_on_an_idle_device(
    tmp_path: Path,
) -> None:
    config = Config(
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(device=f"wav:{tmp_path}/out.wav", samplerate=RATE),
        local_server=LocalServerConfig(
            embedded="server", first_byte_delay=0.05, realtime_factor=3.0
        ),
    )
    async with open_daemon(config) as daemon:
        arrivals = daemon.speaker.arrivals
        assert arrivals.curve is None  # nothing learned: the first utterance holds the preroll
        client = await LineClient.open(daemon.socket_path)
        for n in range(2):
            # texts of their own: a phrase said again comes from the cache, not the service
            reply = await client.command(cmd="speak", text=f"{TEXT} Number {n}.", id=f"u{n}")
            events = await client.events_until_end({reply["id"]})
            assert events[-1]["event"] == "finished", events
            curve = arrivals.curve
            assert curve is not None
            print(f"after {n + 1}: rate {curve.rate:.2f}x, burst {curve.burst * 1000:.0f} ms")
            # the server never sends ahead of 3x real time; a busy machine only slows it
            assert 1.0 <= curve.rate <= 3.05
            # its chunks (500-4000 bytes at 128 kbit/s: up to 250 ms) arrive in bursts
            assert 0.0 < curve.burst <= 1.0
            status = await client.command(cmd="status")
            pace = status["status"]["service_pace"]
            assert pace == {
                "rate": round(curve.rate, 2),
                "burst_ms": round(curve.burst * 1e3, 1),
                "replies": n + 1,
            }
    with wave.open(str(tmp_path / "out.wav"), "rb") as wav:
        assert wav.getnframes() > 2 * 3 * RATE  # both utterances were written whole


async def test_a_reply_that_arrives_while_another_plays_is_not_learned_from(
    daemon: Daemon,
) -> None:
    """On the sound card, which plays in real time: the second reply comes in while the first
    is heard, its chunks paced by the device's back-pressure rather than by the service."""
    client = await LineClient.open(daemon.socket_path)
    text = "The washing machine has finished."  # ~2 s: a reply long enough to learn from
    ids = [(await client.command(cmd="speak", text=f"{text} Number {n}."))["id"] for n in (1, 2)]
    events = await client.events_until_end(set(ids))
    assert [e["event"] for e in events if e["event"] in ENDINGS] == ["finished"] * 2
    status = await client.command(cmd="status")
    assert status["status"]["service_pace"]["replies"] == 1  # the first only
