"""One builder for an utterance's fields, whatever front end asked: the control protocol's
`speak` (and so the CLI and MQTT, which speak it) and `cache warm`, and SSIP's messages.

A front end says what its client chose (a `SpeechRequest`); the builder fills in the defaults
in force (`[api]`, `speech.default_priority`; replaced on SIGHUP), spells a text asked to be
spelled (spelling.py), keeps the limits of limits.py and makes the Utterance. I/O-free; runs
on trio's thread and never blocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from playspeak.config import ApiConfig
from playspeak.errors import ProtocolError
from playspeak.limits import SPEED, text_limit
from playspeak.marks import Segment
from playspeak.speech import Outbox, Utterance
from playspeak.spelling import spelled
from playspeak.style import Style
from playspeak.voices import Voice, for_language


@dataclass(frozen=True)
class SpeechRequest:
    """What a client asked for; None (or the default) means "as configured"."""

    text: str
    voice: str | None = None  # None or "": the configured voice
    speed: float | None = None  # the service's speed factor, within limits.SPEED
    speed_factor: float = 1.0  # times the speed (SSIP's RATE); the result kept within SPEED
    temperature: float | None = None
    model: str | None = None
    output_format: str | None = None
    language: str | None = None  # None: not sent (the service's own default)
    priority: str | None = None
    gain: float = 1.0  # this utterance's volume, 0–1
    chime: bool | None = None  # None: as configured for its priority
    cache: bool = True  # False: neither played from nor stored in the phrase cache
    at: float | None = None  # Unix seconds its first sample is heard (schedule.py)
    style: Style = field(default_factory=Style)  # pitch, punctuation, capitals (espeak-ng)
    spelling: bool = False  # said letter by letter (spelling.py), by every voice
    # The text cut at its index marks (marks.py), `text` being their words; (): no marks.
    segments: tuple[Segment, ...] = ()


class TextTooLong(ProtocolError):
    """The text is longer than its model takes (limits.text_limit)."""

    def __init__(self, length: int, model: str, limit: int) -> None:
        super().__init__(f"text is {length} characters; {model} takes at most {limit}")
        self.length, self.model, self.limit = length, model, limit


class VoiceRefuses(ProtocolError):
    """The voice cannot speak as asked (its engine has no pitch…): refused at the speak, not
    failed after it was queued."""


Refusal = Callable[[str, Style], "str | None"]  # why a voice cannot speak in a style; None: it can


class UtteranceBuilder:
    """The defaults in force and the one way an utterance's fields are filled in from them.
    Owned by the daemon; `api` and `default_priority` are replaced when a reload changes them."""

    def __init__(
        self,
        api: ApiConfig,
        default_priority: str = "message",
        voices: list[Voice] | None = None,
        refusal: Refusal | None = None,
    ) -> None:
        self.api = api
        self.default_priority = default_priority
        self.voices = voices or []  # what `voices` lists (voices.py)
        self.refusal = refusal  # the local engines' (Synthesizer.refusal); None: a service

    def check(self, request: SpeechRequest) -> None:
        """TextTooLong when the text is over its model's limit, VoiceRefuses when the voice
        cannot speak in its style (`build` checks both too; a front end may call this first
        to refuse it before other checks)."""
        request = as_said(request)
        model = request.model or self.api.model
        limit = text_limit(model)
        if len(request.text) > limit:
            raise TextTooLong(len(request.text), model, limit)
        if (why := self.refuses(request)) is not None:
            raise VoiceRefuses(why)

    def refuses(self, request: SpeechRequest) -> str | None:
        """Why the voice `request` is spoken in (its own, else one of its language, else the
        configured one) cannot speak in its style; None when it can."""
        if self.refusal is None:
            return None
        return self.refusal(str(self.params(request)["voice"]), request.style)

    def params(self, request: SpeechRequest) -> dict[str, Any]:
        """The command sent to the service (and the phrase cache's key): the defaults filled in."""
        request = as_said(request)
        api = self.api
        speed = request.speed if request.speed is not None else api.speed
        if request.speed_factor != 1.0:
            speed = min(SPEED[1], max(SPEED[0], speed * request.speed_factor))
        voice = request.voice
        if not voice and request.language:  # a voice of that language, if one is listed
            chosen = for_language(self.voices, request.language)
            voice = chosen.id if chosen else None
        params: dict[str, Any] = {
            "text": request.text,
            "voice": voice or api.voice,
            "output_format": request.output_format or api.output_format,
            "sample_rate": api.sample_rate,
            "speed": speed,
        }
        temperature = request.temperature if request.temperature is not None else api.temperature
        if temperature is not None:
            params["temperature"] = temperature
        if request.language is not None:
            params["language"] = request.language
        params.update(request.style.params())
        return params

    def build(self, request: SpeechRequest, *, id: str, owner: Outbox | None) -> Utterance:
        """The utterance for `request`, with its id and the outbox its events go to;
        TextTooLong when the text is over its model's limit."""
        request = as_said(request)
        self.check(request)
        return Utterance(
            text=request.text,
            params=self.params(request),
            id=id,
            owner=owner,
            model=request.model,
            priority=request.priority or self.default_priority,
            chime=request.chime,
            cache=request.cache,
            gain=request.gain,
            at=request.at,
            segments=request.segments,
        )


def as_said(request: SpeechRequest) -> SpeechRequest:
    """`request` with its text as the voice is to read it: spelled when it asks to be (so the
    limits, the phrase cache's key and the voice all see the spelled text)."""
    if not request.spelling:
        return request
    text, segments = spelled(request.text, request.segments, request.style.ssml)
    return dataclasses.replace(request, text=text, segments=segments, spelling=False)
