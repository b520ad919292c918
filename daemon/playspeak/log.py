"""Logging set-up: journald-friendly prefixes under systemd, and redaction of every secret."""

from __future__ import annotations

import logging
import os
import re
import sys

# Query-string tokens and bearer headers are redacted whatever their value.
_TOKEN_PATTERNS = [
    re.compile(r"(fal_jwt_token=)[^&\s\"']+"),
    re.compile(r"(token=)[^&\s\"']+"),
    re.compile(r"(Bearer\s+)[^\s\"']+", re.IGNORECASE),
]
_secrets: set[str] = set()

# syslog priorities for journald's `<N>` line prefixes.
_JOURNAL_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def register_secret(value: str | None) -> None:
    """Never let `value` appear in a log line (API key, user id, tokens)."""
    if value and len(value) >= 3:
        _secrets.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret and URL token replaced by `<redacted>`."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(r"\1<redacted>", text)
    return text


class RedactingFormatter(logging.Formatter):
    """Formats, then redacts: secrets in arguments and tracebacks are caught too."""

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
            prefix = f"<{_JOURNAL_PRIORITY.get(record.levelno, 6)}>"
            text = "\n".join(prefix + line for line in text.splitlines())
        return text


def setup_logging(level: str = "info") -> None:
    """Log to stderr; with `<N>` prefixes and no timestamps when stderr is the journal."""
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(journal))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries' debug chatter (httpx logs full URLs) stays out unless asked for.
    for noisy in ("httpx", "httpcore", "trio-websocket", "hpack"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
