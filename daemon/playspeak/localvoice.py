"""The embedded local voice as a direct source: engine → PCM → player, in the daemon's process.

With no API key and no URL, this is what speaks (docs/local-server.md): no server, no
websocket, no encoding to decode again, no simulated delay or pacing. An utterance's text is
synthesised one sentence at a time in the background, a little ahead of the player (bounded,
in slices; espeak-ng's output is passed on as it writes it, so that a sentence's first audio
does not wait for its last), and read by the speaker like any reply, as raw 16-bit mono PCM
at the engine's rate (`audio_format`). SSML for a voice without markup comes as parts
(ssml_plain.py): each said at its speed and gain, its pause zero samples at the engine's rate.
"""

from __future__ import annotations

import logging
import subprocess

import numpy as np
import trio

from playspeak.cache.replies import SERVICE
from playspeak.engines import Synthesizer, amplified
from playspeak.engines.steps import Step
from playspeak.errors import LinkError
from playspeak.style import Style

log = logging.getLogger(__name__)

AHEAD = 4  # slices made before the speaker reads them; then synthesis waits
# A sentence goes to the speaker in slices this long (seconds): its first is decoded (resampled
# to the device's rate) and playing long before a whole sentence would have been
# (docs/benchmarks.md, "The local voice and the embedded server").
SLICE = 0.1
PCM_FORMAT = "raw"  # what the engines make: int16 mono, little-endian (the decoder's name)


class LocalReply:
    """One utterance's audio from a Synthesizer (cache.replies.AnyReply).

    `produce` runs in a nursery of the reply's owner (sources.Sources) and is cancelled by
    `discard`; the speaker reads with `receive_stamped`. Both run on the trio thread."""

    retriable = False  # a failing engine fails again: the utterance fails with its reason

    def __init__(self) -> None:
        self.source = SERVICE  # the voice that speaks, not a stand-in for one
        self.complete = trio.Event()  # every sentence synthesised (or given up)
        self.discarded = False
        self.rate = 0  # the engine's sample rate, known with the first sentence
        self._send, self._recv = trio.open_memory_channel[tuple[bytes, int] | LinkError](AHEAD)
        self._scope = trio.CancelScope()

    @property
    def audio_format(self) -> tuple[str, int]:
        """How the speaker decodes this reply's bytes: (format, sample rate). Valid once
        `receive_stamped` returned its first chunk."""
        return PCM_FORMAT, self.rate

    async def produce(self, synth: Synthesizer, said: list[Step], voice: str, style: Style) -> None:
        """Synthesise the steps (Synthesizer.steps_of) into the reply; a failure is handed to
        the reader as a LinkError naming it."""
        try:
            with self._scope:
                async with self._send:
                    try:
                        # SSML that espeak-ng reads is one step: it streams it as it goes
                        for step in said:
                            await self._say(synth, step, voice, style)
                    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
                        log.warning("the local voice failed: %s", e)
                        await self._send.send(LinkError(f"the local voice failed: {e}"))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # discarded while it was being made: nobody reads the rest
        finally:
            self.complete.set()

    async def _say(self, synth: Synthesizer, step: Step, voice: str, style: Style) -> None:
        """One sentence at its speed and gain (engines/steps.py), or a pause."""
        if step.pause:
            await self._slices(*synth.silence(voice, step.pause))
            return

        async def louder(pcm: np.ndarray, rate: int) -> None:
            await self._slices(amplified(pcm, step.gain), rate)

        out = self._slices if step.gain == 1.0 else louder
        for piece in synth.pieces(step.words, voice):
            await synth.stream(piece, voice, step.speed, style, out)

    async def _slices(self, pcm: np.ndarray, rate: int) -> None:
        """Samples from the engine, on to the reader in slices of at most SLICE seconds."""
        data, step = pcm.astype("<i2").tobytes(), 2 * round(rate * SLICE)
        for start in range(0, len(data), step):
            await self._send.send((data[start : start + step], rate))

    async def receive_stamped(self) -> tuple[bytes, float] | None:
        """The next sentence's PCM and when it came; None at the end (or once discarded).
        Raises LinkError when the engine failed."""
        if self.discarded:
            await trio.lowlevel.checkpoint()
            return None
        try:
            item = await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None
        if isinstance(item, LinkError):
            raise item
        data, self.rate = item
        return data, trio.current_time()

    def discard(self) -> None:
        self.discarded = True
        self._scope.cancel()
        self._recv.close()
        self.complete.set()

    abandon = discard  # the engine stops at once: no connection to spare
