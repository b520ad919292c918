"""Logging set-up: journald-friendly `<N>` prefixes under systemd, human timestamps elsewhere,
redaction of every secret, and one line per utterance."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any, TextIO

from playspeak.events import ENDINGS

# Query-string tokens and bearer headers are redacted whatever their value.
_TOKEN_PATTERNS = [
    re.compile(r"(fal_jwt_token=)[^&\s\"']+"),
    re.compile(r"(token=)[^&\s\"']+"),
    re.compile(r"(Bearer\s+)[^\s\"']+", re.IGNORECASE),
]
# Configured secrets (the API key, the user id, passwords): few, kept for the process's life.
_secrets: set[str] = set()
# Tokens from the websocket URLs of auth answers: redacted wherever they appear (a service may
# echo one in an error) while they are among the most recent URL_TOKENS_KEPT; an older one has
# expired, and a registry that only grew made every log line slower (docs/benchmarks.md,
# "Logging"). Only values of URL_TOKEN_MIN characters or more: real tokens are long (the local
# server's 43, PlayAI's JWTs hundreds), while a short value is a word (`a=utterance` must not
# hide "utterance" in every later line). The patterns above redact `token=` values of any
# length where they stand.
URL_TOKENS_KEPT = 32
URL_TOKEN_MIN = 16
_url_tokens: deque[str] = deque(maxlen=URL_TOKENS_KEPT)

# syslog priorities for journald's `<N>` line prefixes (sd-daemon(3)).
_JOURNAL_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}

utterance_log = logging.getLogger("playspeak.utterance")
# When each utterance started playing; weak keys: an utterance forgotten is dropped here too.
_started_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def register_secret(value: str | None) -> None:
    """Never let `value` appear in a log line (API key, user id, tokens)."""
    if value and len(value) >= 3:
        _secrets.add(value)


def register_url_tokens(url: str) -> None:
    """Redact the query values of a websocket URL (from an auth answer) that look like
    tokens: long enough to be secrets, and while among the most recent (see above)."""
    _, _, query = url.partition("?")
    for part in query.split("&"):
        value = part.partition("=")[2]
        if len(value) >= URL_TOKEN_MIN and value not in _url_tokens:
            _url_tokens.append(value)


def redact(text: str) -> str:
    """`text` with every registered secret and URL token replaced by `<redacted>`."""
    for secret in sorted({*_secrets, *_url_tokens}, key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(r"\1<redacted>", text)
    return text


def _priority(levelno: int) -> int:
    """The syslog priority of a logging level (custom levels round down to the next known)."""
    known = [level for level in sorted(_JOURNAL_PRIORITY) if level <= levelno]
    return _JOURNAL_PRIORITY[known[-1]] if known else 7


class RedactingFormatter(logging.Formatter):
    """Formats, then redacts: secrets in arguments and tracebacks are caught too.

    For the journal every line (tracebacks included) gets the record's `<N>` priority prefix and
    no timestamp (journald adds its own); otherwise lines start with a local timestamp.
    """

    default_msec_format = "%s.%03d"

    def __init__(self, journal: bool) -> None:
        fmt = (
            "%(name)s: %(message)s"
            if journal
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        super().__init__(fmt)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        if self.journal:
            prefix = f"<{_priority(record.levelno)}>"
            text = "\n".join(prefix + line for line in text.splitlines())
        return text


def stream_is_journal(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal: $JOURNAL_STREAM names its device and inode.

    A program started from a service inherits JOURNAL_STREAM even when its stderr goes
    elsewhere; comparing the descriptor keeps `<N>` prefixes out of such files.
    """
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, AttributeError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Log to `stream` (stderr); with `<N>` prefixes and no timestamps when it is the journal.

    `level` is debug, info, warning or error (case does not matter).
    """
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(stream_is_journal(stream)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries' debug chatter (httpx logs full URLs) stays out unless asked for.
    for noisy in ("httpx", "httpcore", "trio-websocket", "hpack"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def utterance_event(utterance: Any, event: str, fields: Mapping[str, Any]) -> None:
    """Log one event of an utterance: one info line when it ends (failed: a warning) with how
    long it waited and played, debug lines before. Cheap, never blocks; call it from the trio
    thread once per event, after the utterance's state was updated (EventHub.emit).

    `utterance` needs `id`, `text`, `priority` and `created` (a time.time() value).
    """
    now = time.time()
    ident = getattr(utterance, "id", "?")
    if event == "started":
        with contextlib.suppress(TypeError):  # not weak-referenceable: no timing for it
            _started_at[utterance] = now
    if event not in ENDINGS:
        utterance_log.debug("utterance %s %s", ident, event)
        return
    text = str(getattr(utterance, "text", ""))
    created = float(getattr(utterance, "created", now))
    started = None
    with contextlib.suppress(TypeError):
        started = _started_at.pop(utterance, None)
    if started is None:
        timing = f"after {now - created:.2f} s, never played"
    else:
        timing = f"waited {started - created:.2f} s, played {now - started:.2f} s"
    reason = fields.get("reason")
    utterance_log.log(
        logging.WARNING if event == "failed" else logging.INFO,
        "utterance %s %s%s: %d chars %r, priority %s, %s",
        ident,
        event,
        f" ({reason})" if reason else "",
        len(text),
        text if len(text) <= 60 else text[:59] + "…",
        getattr(utterance, "priority", "?"),
        timing,
    )
