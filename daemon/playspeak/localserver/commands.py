"""Parse and validate one client command frame as the PlayAI service does (no I/O)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from playspeak.limits import SPEED, TEMPERATURE
from playspeak.localserver.models import Model

OUTPUT_FORMATS = frozenset({"mp3", "wav", "raw", "mulaw", "ogg", "flac"})
DEFAULT_SAMPLE_RATE = 24000


class CommandError(Exception):
    """A command the server answers with an error frame; the message names the field."""

    def __init__(self, message: str, request_id: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


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


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _number(fields: dict[str, object], name: str, low: float, high: float) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CommandError(f"{name} must be a number between {low:g} and {high:g}")
    if not low <= value <= high:
        raise CommandError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _sample_rate(fields: dict[str, object]) -> int:
    value = fields.get("sample_rate")
    if value is None:
        return DEFAULT_SAMPLE_RATE
    if isinstance(value, bool) or not isinstance(value, int):
        raise CommandError(f"sample_rate must be an integer, got {value!r}")
    if not 8000 <= value <= 48000:
        raise CommandError(f"sample_rate must be between 8000 and 48000, got {value}")
    return value


def _text(fields: dict[str, object], model: Model) -> str:
    text = fields.get("text")
    if text is None:
        raise CommandError("text is required")
    if not isinstance(text, str):
        raise CommandError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise CommandError("text must not be empty")
    if len(text) > model.text_limit:
        raise CommandError(
            f"text is too long: {len(text)} characters, {model.name} accepts {model.text_limit}"
        )
    return text


def _voice(fields: dict[str, object]) -> str:
    voice = fields.get("voice")
    if voice is None:
        raise CommandError("voice is required")
    if not isinstance(voice, str) or not voice.strip():
        raise CommandError("voice must be a non-empty string")
    return voice


def _output_format(fields: dict[str, object]) -> str:
    value = fields.get("output_format")
    if value is None:
        return "mp3"
    if not isinstance(value, str) or value.lower() not in OUTPUT_FORMATS:
        choices = ", ".join(sorted(OUTPUT_FORMATS))
        raise CommandError(f"output_format must be one of {choices}, got {value!r}")
    return value.lower()


def parse_command(frame: str | bytes, model: Model) -> Command:
    """The command in one websocket frame; raises CommandError naming what is wrong."""
    if isinstance(frame, bytes):
        raise CommandError("binary frames are not accepted: send each command as a JSON text frame")
    try:
        fields = json.loads(frame, parse_constant=_reject_constant)
    except ValueError as e:
        raise CommandError(f"invalid JSON: {e}") from None
    if not isinstance(fields, dict):
        raise CommandError(f"a command must be a JSON object, got {type(fields).__name__}")
    request_id = fields.get("request_id")
    try:
        return Command(
            text=_text(fields, model),
            voice=_voice(fields),
            request_id=request_id,
            output_format=_output_format(fields),
            speed=_number(fields, "speed", *SPEED) or 1.0,
            temperature=_number(fields, "temperature", *TEMPERATURE),
            sample_rate=_sample_rate(fields),
        )
    except CommandError as e:
        e.request_id = request_id
        raise
