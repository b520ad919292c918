"""Buffer-then-play: the PlayAI docs' approach, as a minimal client to compare against.

For each line of text on stdin: send the request, collect every audio chunk until `end`, decode
the whole MP3 with PyAV, play it with `sounddevice.play` and wait until it has played; then
print `done` on stdout. Prints `ready` once connected. Run by bench.compare as a child process:

    BENCH_TTS_URL=http://127.0.0.1:PORT PLAYAI_API_KEY=... PLAYAI_USER_ID=... \
        python -m bench.buffered_client

Exits at EOF on stdin. The connection is opened once and kept (the most favourable case).
"""

from __future__ import annotations

import io
import os
import sys

import av
import numpy as np
import sounddevice as sd
import trio

from .playai_client import Endpoint, open_tts


def decode_all(mp3: bytes) -> tuple[np.ndarray, int]:
    """The whole MP3 as float32 mono samples at its own rate."""
    blocks = []
    with av.open(io.BytesIO(mp3)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in container.decode(stream):
            blocks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        blocks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(blocks), rate


def play(samples: np.ndarray, rate: int) -> None:
    """Blocking: play on the default device and wait until done (a worker thread's job)."""
    sd.play(samples, rate)
    sd.wait()


async def main() -> None:
    endpoint = Endpoint(
        os.environ["BENCH_TTS_URL"], os.environ["PLAYAI_API_KEY"], os.environ["PLAYAI_USER_ID"]
    )
    voice = os.environ.get("BENCH_VOICE", "")
    async with open_tts(endpoint) as tts:
        print("ready", flush=True)
        while line := await trio.to_thread.run_sync(sys.stdin.readline):
            request_id = await tts.send(line.strip(), voice)
            mp3 = b"".join([chunk async for chunk in tts.audio(request_id)])
            samples, rate = decode_all(mp3)
            await trio.to_thread.run_sync(play, samples, rate)
            print("done", flush=True)


if __name__ == "__main__":
    trio.run(main)
