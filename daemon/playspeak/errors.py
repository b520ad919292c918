"""The small tree of playspeak's own errors; library exceptions are translated at the edges."""

from __future__ import annotations


class PlayspeakError(Exception):
    """Base of every error playspeak raises on purpose."""


class ConfigError(PlayspeakError):
    """The configuration is invalid: the message names the key, the file and the line."""


class ProtocolError(PlayspeakError):
    """A control-socket line could not be understood: the message names what was wrong."""


class BadJsonError(ProtocolError):
    """Untrusted text that is not the JSON asked for (jsonguard.load_json): `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LinkError(PlayspeakError):
    """The websocket link to the TTS service failed."""


class AuthError(LinkError):
    """The TTS service refused our credentials or answered the auth call wrongly."""


class AudioDeviceError(PlayspeakError):
    """No usable output device, or the device failed: the message names the fix."""


class DecodeError(PlayspeakError):
    """Audio bytes from the service could not be decoded."""


class ReplyTooLong(PlayspeakError):
    """A reply brought more audio than its utterance may have (speech.max_reply_seconds)."""


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside trio's (nested) exception groups, in order; [error] for a plain
    one. The one place that looks inside groups: callers pick what they expect from these."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]
