"""The local fallback voice: the local engine (engines/), encoded like the service's audio (the
local server's encoding), for announcements that must be heard when the service is not."""

from __future__ import annotations

import logging
from typing import Any

from playspeak.engines import Synthesizer, cpu
from playspeak.style import Style

log = logging.getLogger(__name__)


class FallbackVoice:
    """Speaks an utterance's params locally; remembers whether it is in use, so that the log
    says once when the fallback starts being used and once when the service is back."""

    def __init__(
        self, *, after: float, priorities: tuple[str, ...], synth: Synthesizer | None = None
    ) -> None:
        self.after = after
        self.priorities = priorities
        self.synth = synth or Synthesizer()
        self.active = False
        self.used = 0  # utterances spoken by it

    def covers(self, priority: str) -> bool:
        return priority in self.priorities

    async def render(self, params: dict[str, Any]) -> bytes:
        """The whole reply, in the params' output format and sample rate. Raises when the
        engine fails. Cancellable (espeak-ng is a subprocess; the encoding runs in a worker
        thread)."""
        from playspeak.localserver import encode  # lazy: PyAV's encoders

        voice = str(params.get("voice", ""))
        if self.synth.warning(voice):
            # an announcement must be understood: a murmur in its place hides the failure
            raise RuntimeError("no local voice: espeak-ng is not installed")
        # Its settings as the direct voice has them: the style, and the SSML a service is sent
        # beside the words (sources.py)
        markup = params.get("ssml")
        text = markup if isinstance(markup, str) else str(params["text"])
        speed = float(params.get("speed") or 1.0)
        pcm, rate = await self.synth.said_pcm(text, voice, speed, Style.from_params(params))
        sample_rate = int(params.get("sample_rate") or 24000)
        fmt = str(params.get("output_format") or "mp3")

        def finish() -> bytes:
            return encode.encode(encode.resample(pcm, rate, sample_rate), sample_rate, fmt).data

        return await cpu(finish)

    def note_used(self, reason: str) -> None:
        self.used += 1
        if not self.active:
            self.active = True
            log.warning(
                "the TTS service is not answering (%s): speaking %s announcements with the "
                "local voice until it is back",
                reason,
                "/".join(self.priorities),
            )

    def note_service(self) -> None:
        """A service reply brought audio: the service is back."""
        if self.active:
            self.active = False
            log.info("the TTS service answers again: the local voice is no longer used")

    def status(self) -> dict[str, Any]:
        return {"active": self.active, "used": self.used, "priorities": list(self.priorities)}
