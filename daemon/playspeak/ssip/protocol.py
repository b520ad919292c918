"""SSIP on the wire, free of I/O: line framing, SPEAK data, typed commands, replies and events.

Speech Dispatcher's doc/ssip.texi is the reference; reply codes follow its server's msg.h
(clients check only the first digit of 1xx–5xx codes, but 7xx events are exact).
"""

from __future__ import annotations

from dataclasses import dataclass

from playspeak.errors import ProtocolError
from playspeak.events import (
    Cancelled,
    Failed,
    Finished,
    Mark,
    Message,
    Paused,
    Resumed,
    Started,
    UtteranceEvent,
)

CRLF = b"\r\n"


@dataclass(frozen=True)
class Reply:
    """One SSIP reply: `data` lines as `ccc-line`, then the final `ccc text`."""

    code: int
    text: str
    data: tuple[str, ...] = ()

    def encode(self) -> bytes:
        lines = [f"{self.code}-{d}" for d in self.data] + [f"{self.code} {self.text}"]
        return "".join(f"{line}\r\n" for line in lines).encode("utf-8")

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


class SsipError(ProtocolError):
    """A command that gets an error reply; the connection stays open."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.reply = Reply(code, text)


# Replies used in more than one place (codes from Speech Dispatcher's msg.h).
RECEIVING_DATA = Reply(230, "OK RECEIVING DATA")
BYE = Reply(231, "HAPPY HACKING")
INVALID_COMMAND = Reply(500, "ERR INVALID COMMAND")
INVALID_ENCODING = Reply(501, "ERR INVALID ENCODING")
LINE_TOO_LONG = Reply(500, "ERR LINE TOO LONG")


def missing_parameter() -> SsipError:
    return SsipError(510, "ERR MISSING PARAMETER")


def invalid_parameter() -> SsipError:
    return SsipError(514, "ERR PARAMETER INVALID")


def message_queued(msg_id: int) -> Reply:
    return Reply(225, "OK MESSAGE QUEUED", (str(msg_id),))


# playspeak's utterance events and the SSIP notifications they become: (code, text, type).
# Queued has none: SSIP's 225 reply already said so.
EVENTS: dict[type[UtteranceEvent], tuple[int, str, str]] = {
    Started: (701, "BEGIN", "begin"),
    Finished: (702, "END", "end"),
    Cancelled: (703, "CANCELED", "cancel"),
    Failed: (703, "CANCELED", "cancel"),  # SSIP has no "failed": the message was not said
    Paused: (704, "PAUSED", "pause"),
    Resumed: (705, "RESUMED", "resume"),
    Mark: (700, "INDEX_MARK", "index_marks"),  # its name is a third line (event())
}
NOTIFICATION_TYPES = ("begin", "end", "cancel", "pause", "resume", "index_marks")


def event(code: int, text: str, msg_id: int, client_id: int, *more: str) -> bytes:
    """An asynchronous 7xx notification: `701-<msg id>`, `701-<client id>`, `701 BEGIN`;
    `more` lines before the last (an index mark's name)."""
    return Reply(code, text, (str(msg_id), str(client_id), *more)).encode()


def notification(
    message: Message, msg_id: int, client_id: int, wanted: frozenset[str] | set[str]
) -> bytes | None:
    """The 7xx line an utterance event becomes for an SSIP message, if its kind (begin, end,
    cancel, pause, resume, index_marks) is among those `wanted`; None for anything else."""
    if not isinstance(message, UtteranceEvent):
        return None
    mapped = EVENTS.get(type(message))
    if mapped is None or mapped[2] not in wanted:
        return None
    code, text, _ = mapped
    more = (message.mark,) if isinstance(message, Mark) else ()
    return event(code, text, msg_id, client_id, *more)


# ---- commands -------------------------------------------------------------------------------

Target = str | int  # "self", "all", or a connection id


@dataclass(frozen=True)
class Command:
    """A command line: its upper-cased name and the rest of the line (arguments)."""

    name: str
    args: str = ""

    def words(self, count: int) -> list[str]:
        """The first `count` arguments, the last one taking the rest of the line."""
        words = self.args.split(None, count - 1) if self.args else []
        if len(words) < count:
            raise missing_parameter()
        return words


@dataclass(frozen=True)
class Speak:
    """The text of a SPEAK command, dot-stuffing undone, lines joined with LF."""

    text: str


def parse_target(word: str) -> Target:
    """`self`, `all` (any case) or a positive connection id."""
    lowered = word.lower()
    if lowered in ("self", "all"):
        return lowered
    if word.isascii() and word.isdigit() and int(word) > 0:
        return int(word)
    raise invalid_parameter()


# ---- framing --------------------------------------------------------------------------------

Item = Command | Speak | Reply  # a Reply is one the framer gives itself (230, or an error)


class SsipReader:
    """Turns received bytes into commands, SPEAK texts and framing replies.

    Lines end in CRLF (bare LF is accepted too). After a `SPEAK` line the reader answers 230
    itself and collects data lines up to a line holding a single dot; a line beginning with
    two dots had one added by the client. Command lines over `max_line_bytes` and texts over
    `max_text_bytes` get an error reply and the connection goes on.
    """

    def __init__(self, max_line_bytes: int = 65536, max_text_bytes: int = 262144) -> None:
        self.max_line_bytes = max_line_bytes
        self.max_text_bytes = max_text_bytes
        self._buffer = bytearray()
        self._discarding = False  # inside an overlong line, until its end
        self._body: bytearray | None = None  # the SPEAK text being received, lines + LF
        self._body_size = 0
        self._body_overflow = False

    @property
    def receiving_data(self) -> bool:
        return self._body is not None

    @property
    def unfinished(self) -> bool:
        """Inside a command line or a SPEAK text (its dot line not yet come)."""
        return bool(self._buffer) or self._discarding or self._body is not None

    @property
    def buffered(self) -> int:
        """Bytes held for input not yet complete (a partial line, a SPEAK text's lines)."""
        return len(self._buffer) + len(self._body or b"")

    def feed(self, data: bytes) -> list[Item]:
        """Everything complete in the bytes received so far, in order."""
        self._buffer += data
        items: list[Item] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            raw = bytes(self._buffer[start:end])
            start = end + 1
            if self._discarding:
                self._discarding = False
                continue
            items += self._line(raw[:-1] if raw.endswith(b"\r") else raw)
        if start:
            # A fresh buffer for the rest: a bytearray keeps the size it once had.
            self._buffer = bytearray(self._buffer[start:])
        if len(self._buffer) > self._limit:
            items += self._overflow()
        return items

    @property
    def _limit(self) -> int:
        return self.max_text_bytes if self._body is not None else self.max_line_bytes

    def _overflow(self) -> list[Item]:
        self._buffer = bytearray()
        if self._discarding:
            return []  # the same line again: refused once
        self._discarding = True
        if self._body is not None:
            self._too_long()  # said after the closing dot, as ssip.texi asks
            return []
        return [LINE_TOO_LONG]

    def _line(self, raw: bytes) -> list[Item]:
        if self._body is not None:
            return self._data_line(raw)
        if len(raw) > self.max_line_bytes:
            return [LINE_TOO_LONG]
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            return [INVALID_ENCODING]
        name, _, args = line.partition(" ")
        if not name:
            return [INVALID_COMMAND]
        command = Command(name.upper(), args.strip())
        if command.name == "SPEAK":
            self._body, self._body_size, self._body_overflow = bytearray(), 0, False
            return [RECEIVING_DATA]
        return [command]

    def _data_line(self, raw: bytes) -> list[Item]:
        assert self._body is not None
        if raw == b".":
            return [self._finish_text()]
        if raw.startswith(b".."):
            raw = raw[1:]
        self._body_size += len(raw) + 1
        if self._body_size > self.max_text_bytes:
            self._too_long()
        elif not self._body_overflow:
            self._body += raw + b"\n"
        return []

    def _too_long(self) -> None:
        """The text is over its limit: what came of it is dropped, the rest will be."""
        self._body_overflow, self._body = True, bytearray()

    def _finish_text(self) -> Item:
        body, overflow = self._body or bytearray(), self._body_overflow
        self._body = None
        if overflow:
            return Reply(300, f"ERR MESSAGE TOO LONG (limit {self.max_text_bytes} bytes)")
        try:
            return Speak(body[:-1].decode("utf-8"))
        except UnicodeDecodeError:
            return INVALID_ENCODING
