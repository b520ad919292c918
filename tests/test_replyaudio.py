"""The speaker's decode step (audio/replyaudio.py), on real raw PCM through the real decoder:
the limit, the trace of arrivals, and that the decoder is made only once audio comes."""

from __future__ import annotations

import numpy as np
import pytest

from playspeak.audio.decoder import StreamDecoder, make_decoder
from playspeak.audio.replyaudio import ReplyAudio
from playspeak.errors import ReplyTooLong

RATE = 24000


def pcm(seconds: float) -> bytes:
    return (np.ones(int(RATE * seconds), dtype="<i2") * 1000).tobytes()


def audio(limit: float) -> tuple[ReplyAudio, list[int]]:
    made: list[int] = []

    def decoder() -> StreamDecoder:
        made.append(1)
        return make_decoder("raw", out_rate=RATE, out_channels=1, in_rate=RATE)

    return ReplyAudio(decoder, RATE, limit), made


def test_the_audio_is_decoded_as_it_comes_and_traced_from_its_first_chunk() -> None:
    reply, made = audio(limit=10)
    assert reply.flush() == [] and not made  # nothing came: no decoder was made
    for i in range(4):
        blocks = reply.feed(pcm(0.1), arrived=5.0 + 0.05 * i)
        assert sum(map(len, blocks)) == RATE // 10
    assert made == [1]
    assert reply.decoded == 4 * RATE // 10
    # (seconds since the first chunk, seconds decoded after it before this chunk)
    expected = [(0, 0), (0.05, 0), (0.10, 0.1), (0.15, 0.2)]
    assert [a for pair in reply.trace.arrivals for a in pair] == pytest.approx(
        [a for pair in expected for a in pair]
    )
    assert reply.trace.elapsed(5.5) == pytest.approx(0.5)


def test_a_reply_past_its_limit_is_refused_as_too_long() -> None:
    reply, _ = audio(limit=0.25)
    reply.feed(pcm(0.2), arrived=0.0)
    with pytest.raises(ReplyTooLong, match=r"passed 0.25 s of audio"):
        reply.feed(pcm(0.1), arrived=0.1)
