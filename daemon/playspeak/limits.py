"""Every limit a request's values must keep, defined once: the control protocol, SSIP, the
configuration and the local server check against these."""

from __future__ import annotations

SPEED = (0.5, 2.0)  # the service's speed factor
TEMPERATURE = (0.0, 1.0)
VOLUME = (0.0, 100.0)  # percent, per utterance and for the output
TEXT_LIMITS = {"Play3.0-mini": 20_000}  # characters per utterance, by model
DEFAULT_TEXT_LIMIT = 50_000  # the other models


def text_limit(model: str) -> int:
    return TEXT_LIMITS.get(model, DEFAULT_TEXT_LIMIT)


def shown(bounds: tuple[float, float]) -> str:
    """A range as messages write it: "0.5–2"."""
    return "–".join(f"{b:g}" for b in bounds)
