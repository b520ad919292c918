"""One reply's audio on its way to the player: the speaker's decode step.

Chunks are decoded as they arrive (the decoder is made with the first, when the reply's format
is known), bounded (a reply that passes its limit raises ReplyTooLong: a service that never
ends must not hold the speaker), and traced: when each chunk came and how much audio it brought,
from which the service's pace is learned (audio/arrivals.py). No I/O: the speaker reads the
reply and plays what this returns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from playspeak.errors import ReplyTooLong

from .arrivals import ReplyTrace
from .decoder import StreamDecoder


class ReplyAudio:
    def __init__(
        self, make_decoder: Callable[[], StreamDecoder], rate: int, limit_seconds: float
    ) -> None:
        self._make_decoder = make_decoder
        self._decoder: StreamDecoder | None = None
        self._rate = rate  # of the decoded audio (the player's)
        self._limit = limit_seconds
        self.decoded = 0  # frames so far
        self.trace = ReplyTrace()

    def feed(self, chunk: bytes, arrived: float) -> list[np.ndarray]:
        """The blocks `chunk` decodes to (maybe none yet); `arrived`: when it was read off the
        wire (trio time). Raises DecodeError, or ReplyTooLong past the limit."""
        if self._decoder is None:
            self._decoder = self._make_decoder()
        blocks = self._decoder.feed(chunk)
        before, self.decoded = self.decoded, self.decoded + sum(map(len, blocks))
        if self.decoded > self._limit * self._rate:
            raise ReplyTooLong(
                f"the reply passed {self._limit:g} s of audio (speech.max_reply_seconds): "
                "it did not end"
            )
        self.trace.add(arrived, before / self._rate, self.decoded / self._rate)
        return blocks

    def flush(self) -> list[np.ndarray]:
        """What the decoder still holds once the reply has ended."""
        return self._decoder.flush() if self._decoder is not None else []
