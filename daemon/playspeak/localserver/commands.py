"""What the local server accepts of a TTS command: the wire's command, checked against the
model's text limit and the ranges and formats this server supports (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from playspeak import ssml
from playspeak.limits import SPEED, TEMPERATURE
from playspeak.localserver.models import Model
from playspeak.playai import wire
from playspeak.playai.wire import CommandRejected

OUTPUT_FORMATS = frozenset({"mp3", "wav", "raw", "mulaw", "ogg", "flac"})
DEFAULT_SAMPLE_RATE = 24000
# SSML may be this many times the model's text limit: its words are held to the limit, and
# markup around them (breaks, prosody) takes room of its own
SSML_MARKUP_ALLOWANCE = 4


@dataclass(frozen=True)
class Command:
    """A valid TTS command; ``request_id`` is any JSON value, echoed exactly."""

    text: str
    voice: str
    request_id: object = None
    output_format: str = "mp3"
    speed: float = 1.0
    temperature: float | None = None
    sample_rate: int = DEFAULT_SAMPLE_RATE
    # A playspeak extension: the text as SSML (its allowed elements only, ssml.render), said
    # in its place; `text` holds its words for a service that does not know the field
    ssml: str | None = None


def _within(name: str, value: float | None, low: float, high: float) -> float | None:
    if value is not None and not low <= value <= high:
        raise CommandRejected(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return value


def _checked(command: wire.TtsCommand, model: Model) -> Command:
    if len(command.text) > model.text_limit:
        raise CommandRejected(
            f"text is too long: {len(command.text)} characters, "
            f"{model.name} accepts {model.text_limit}"
        )
    output_format = (command.output_format or "mp3").lower()
    if output_format not in OUTPUT_FORMATS:
        choices = ", ".join(sorted(OUTPUT_FORMATS))
        raise CommandRejected(
            f"output_format must be one of {choices}, got {command.output_format!r}"[:200]
        )
    sample_rate = command.sample_rate or DEFAULT_SAMPLE_RATE
    if not 8000 <= sample_rate <= 48000:
        raise CommandRejected(f"sample_rate must be between 8000 and 48000, got {sample_rate}")
    return Command(
        ssml=_ssml(command.extra.get("ssml"), model),
        text=command.text,
        voice=command.voice,
        request_id=command.request_id,
        output_format=output_format,
        speed=_within("speed", command.speed, *SPEED) or 1.0,
        temperature=_within("temperature", command.temperature, *TEMPERATURE),
        sample_rate=sample_rate,
    )


def _ssml(markup: object, model: Model) -> str | None:
    """The command's SSML as espeak-ng may read it (untrusted: checked as a speak's is)."""
    if markup is None:
        return None
    if not isinstance(markup, str):
        raise CommandRejected(f"ssml must be a string of SSML, got {type(markup).__name__}")
    if len(markup) > SSML_MARKUP_ALLOWANCE * model.text_limit:
        raise CommandRejected(f"ssml is too long: {len(markup)} characters")
    try:
        tokens = ssml.parse(markup)
        if len(ssml.words_of(tokens)) > model.text_limit:
            raise CommandRejected(f"the words of the ssml are too long for {model.name}")
        return ssml.spoken(tokens)[0]
    except ssml.SsmlError as e:
        raise CommandRejected(f"ssml: {e}") from None


def parse_command(frame: str | bytes, model: Model) -> Command:
    """The command in one websocket frame (untrusted); raises CommandRejected naming what is
    wrong, with the frame's request id when it had one."""
    command = wire.parse_command(frame)
    try:
        return _checked(command, model)
    except CommandRejected as e:
        e.request_id = command.request_id
        raise
