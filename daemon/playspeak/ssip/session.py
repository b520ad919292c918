"""One SSIP connection's commands: settings, messages to the speaker, control, and 7xx events.

Everything here runs on trio's thread and never blocks; the server feeds it what its reader
parsed and writes what it sends.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from playspeak.control.protocol import check_controls
from playspeak.door.peers import Peer
from playspeak.errors import ProtocolError
from playspeak.events import Message
from playspeak.speaker import Speaker
from playspeak.speech import EventHub, QueueFull, Utterance
from playspeak.ssip import settings as s
from playspeak.ssip.protocol import (
    BYE,
    INVALID_COMMAND,
    Command,
    Item,
    Reply,
    Speak,
    SsipError,
    Target,
    event,
    invalid_parameter,
    message_queued,
    missing_parameter,
    notification,
    parse_target,
)
from playspeak.style import Style
from playspeak.utterances import SpeechRequest, TextTooLong, UtteranceBuilder, VoiceRefuses
from playspeak.voices import Voice, service_voices

log = logging.getLogger(__name__)

NOT_IN_BLOCK = SsipError(332, "ERR NOT ALLOWED INSIDE BLOCK")
HELP = (
    "SPEAK           -- say text",
    "KEY             -- say a combination of keys",
    "CHAR            -- say a character",
    "SOUND_ICON      -- say the name of a sound icon",
    "SET             -- set a parameter",
    "GET             -- get a current parameter",
    "LIST            -- list available arguments",
    "STOP, CANCEL, PAUSE, RESUME -- control the speech",
    "BLOCK           -- BEGIN or END a block of messages",
    "HISTORY         -- only GET CLIENT_ID",
    "QUIT            -- close the connection",
)


@dataclass
class Shared:
    """What every connection of one listener shares: the speaker, the utterance builder (its
    defaults are the daemon's, replaced on reload), the open connections and the id counters."""

    speaker: Speaker
    builder: UtteranceBuilder
    sessions: dict[int, SsipSession] = field(default_factory=dict)
    client_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    message_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))


class MessageEvents:
    """The owner of one SSIP message's utterance: its events become the 7xx notifications
    that the message's connection had switched on when it was sent."""

    def __init__(self, session: SsipSession, msg_id: int, notify: frozenset[str]) -> None:
        self.session = session
        self.client = session  # its messages share one per-client queue budget (OneOfMany)
        self.client_id = session.client_id
        self.msg_id = msg_id
        self.notify = notify

    def send(self, message: Message) -> None:
        line = notification(message, self.msg_id, self.client_id, self.notify)
        if line is not None:
            self.session.notify(line)


@dataclass
class Block:
    """Messages between BLOCK BEGIN and BLOCK END: one message, spoken when the block ends."""

    parts: list[str] = field(default_factory=list)
    msg_id: int | None = None
    settings: s.Settings | None = None  # as at the block's first message


class SsipSession:
    """One connection. `handle` answers one parsed item; `send` writes a line (never blocks)."""

    def __init__(
        self, shared: Shared, send: Callable[[bytes], None], peer: Peer | None = None
    ) -> None:
        self.shared = shared
        self.client_id = next(shared.client_ids)
        self.peer = peer or Peer()
        self.pending: set[Utterance] = set()  # its messages not yet ended
        self.settings = s.Settings(priority=shared.builder.default_priority)
        self.block: Block | None = None
        self.closed = False
        self._send = send
        self._held: list[bytes] | None = None
        self._table: dict[str, Callable[[Command], Reply]] = {
            "SET": self._set,
            "GET": lambda c: s.get(self.settings, c.words(1)[0]),
            "CHAR": lambda c: self._message(s.char_text(c.words(1)[0])),
            "KEY": lambda c: self._message(s.key_text(c.words(1)[0])),
            "SOUND_ICON": lambda c: self._message(s.icon_text(c.words(1)[0])),
            "STOP": self._stop,
            "CANCEL": self._cancel,
            "PAUSE": self._pause,
            "RESUME": self._resume,
            "LIST": self._list,
            "HISTORY": self._history,
            "BLOCK": self._block,
            "QUIT": lambda c: self._quit(),
            "BYE": lambda c: self._quit(),
            "HELP": lambda c: Reply(248, "OK HELP SENT", HELP),
        }
        self._allowed_in_block = {"SET", "CHAR", "KEY", "SOUND_ICON", "BLOCK", "QUIT", "BYE"}

    def __str__(self) -> str:
        # Who it is comes from SO_PEERCRED; its CLIENT_NAME is whatever it chose to say.
        return f"SSIP client {self.client_id} ({self.peer})"

    def busy(self) -> bool:
        """Waiting on something (notifications switched on, messages not yet ended, an open
        block): not idle."""
        self.pending = {u for u in self.pending if not u.ended}
        return bool(self.settings.notifications or self.pending or self.block is not None)

    # ---- in and out -------------------------------------------------------------------------

    def handle(self, item: Item) -> bool:
        """Answer one command, text or framing reply; False once the client said QUIT.
        Events raised meanwhile follow the reply: SSIP sends none between command and reply."""
        self._held = []
        try:
            reply = self._answer(item)
        finally:
            held, self._held = self._held, None
        self._send(reply.encode())
        for line in held:
            self._send(line)
        return reply is not BYE

    def notify(self, line: bytes) -> None:
        """A 7xx event for this connection (dropped once it is closed)."""
        if self.closed:
            return
        if self._held is not None:
            self._held.append(line)
        else:
            self._send(line)

    def close(self) -> None:
        """The client is gone: a block it left open is spoken, later events are dropped."""
        if self.block is not None and self.block.parts:
            self._end_block()
        self.closed = True
        self.shared.sessions.pop(self.client_id, None)
        self.shared.speaker.release(self)  # its pause ends with it: its messages are said

    def _answer(self, item: Item) -> Reply:
        try:
            if isinstance(item, Reply):
                return item
            if isinstance(item, Speak):
                return self._message(item.text)
            handler = self._table.get(item.name)
            if handler is None:
                return INVALID_COMMAND
            if self.block is not None and item.name not in self._allowed_in_block:
                raise NOT_IN_BLOCK
            return handler(item)
        except SsipError as e:
            return e.reply
        except Exception:  # a bug must cost this command, not the connection
            log.exception("%s: internal error on %r", self, item)
            return Reply(300, "ERR INTERNAL")

    # ---- messages ---------------------------------------------------------------------------

    def _message(self, text: str) -> Reply:
        """A SPEAK text, as sent (SSML in SSML mode): queued, or kept for its block."""
        spoken = self.settings.text_for(text)  # the snapshot below holds the same settings
        if not spoken.words.strip():
            return Reply(227, "OK MESSAGE CANCELED")  # what Speech Dispatcher says to nothing
        if spoken.problem:
            log.warning("%s: SSML read as its words, tags dropped: %s", self, spoken.problem)
        try:
            check_controls(text)  # NULs and escape sequences are refused, as on the control socket
        except ProtocolError as e:
            raise SsipError(501, f"ERR INVALID ENCODING ({str(e).upper()})") from None
        if self.block is not None:
            block = self.block
            if block.msg_id is None:
                block.msg_id = self._new_msg_id()
                self._hub.reserved.add(f"ssip-{block.msg_id}")  # kept until the block ends
                block.settings = self._snapshot()
            block.parts.append(text)
            return message_queued(block.msg_id)
        msg_id = self._new_msg_id()
        self._submit(self._utterance(spoken, self._snapshot(), msg_id))
        return message_queued(msg_id)

    @property
    def _hub(self) -> EventHub:
        return self.shared.speaker.hub

    def _new_msg_id(self) -> int:
        """The next message id whose utterance id (ssip-<n>) no live utterance has taken."""
        msg_id = next(self.shared.message_ids)
        while self._hub.taken(f"ssip-{msg_id}"):
            msg_id = next(self.shared.message_ids)
        return msg_id

    def _snapshot(self) -> s.Settings:
        # Notifications count as they were when the message was sent (ssip.texi).
        return dataclasses.replace(self.settings, notifications=set(self.settings.notifications))

    def _utterance(self, spoken: s.Spoken, settings: s.Settings, msg_id: int) -> Utterance:
        """The message's utterance from its `Settings.text_for`, built as the control
        protocol's `speak` builds one."""
        owner = MessageEvents(self, msg_id, frozenset(settings.notifications))
        try:
            return self.shared.builder.build(
                _request(spoken, settings), id=f"ssip-{msg_id}", owner=owner
            )
        except TextTooLong as e:
            raise SsipError(
                300, f"ERR MESSAGE TOO LONG ({e.length} CHARACTERS, LIMIT {e.limit})"
            ) from None
        except VoiceRefuses as e:  # nothing is queued
            raise _voice_refuses(str(e)) from None

    def _submit(self, utterance: Utterance) -> None:
        try:
            self.shared.speaker.submit(utterance)
        except QueueFull as e:
            raise SsipError(300, f"ERR QUEUE FULL ({e})") from None
        if not utterance.ended:
            self.pending = {u for u in self.pending if not u.ended} | {utterance}
        log.info("%s: %s %s %r", self, utterance.id, utterance.priority, utterance.text[:80])

    # ---- commands ---------------------------------------------------------------------------

    def _set(self, c: Command) -> Reply:
        word, name, value = c.words(3)
        target, name = parse_target(word), name.upper()
        s.check_set(name, target == "self", self.block is not None)
        if name in s.STYLE_FIELDS or name in s.VOICE_CHOOSERS:  # refused for every target,
            for settings in self._targets(target):  # or set for every one
                trial = dataclasses.replace(settings)  # the value checked, nothing kept yet
                s.apply_set(trial, name, value)
                # a style field alone; a new voice, all that is already set
                self._check_voice_takes(trial, s.STYLE_FIELDS.get(name))
        reply = INVALID_COMMAND
        for settings in self._targets(target):
            reply = s.apply_set(settings, name, value)
        return reply

    def _check_voice_takes(self, settings: s.Settings, field: str | None) -> None:
        """SsipError 417 when the voice these settings speak in cannot honour their Style's
        `field` (the builder's refusal, which a SPEAK would meet), or with no field, all of
        it: a voice chosen is refused at its SET, the old one kept, not at every SPEAK. Only
        the field asked about counts, so its default is always accepted (whatever else was
        set before the voice)."""
        request = _request(s.Spoken(""), settings)
        if field is not None:
            alone = Style(**{field: getattr(settings.style(), field)})
            request = dataclasses.replace(request, style=alone)
        if (why := self.shared.builder.refuses(request)) is not None:
            raise _voice_refuses(why)

    def _targets(self, target: Target) -> list[s.Settings]:
        return [session.settings for session in self._sessions(target)]

    def _sessions(self, target: Target) -> list[SsipSession]:
        """The connections a target names."""
        if target == "self":
            return [self]
        if target == "all":
            return list(self.shared.sessions.values())
        assert isinstance(target, int)
        session = self.shared.sessions.get(target)
        if session is None:
            raise SsipError(402, "ERR NO SUCH CLIENT")
        return [session]

    def _selector(self, c: Command) -> Callable[[Utterance], bool] | None:
        """The utterances a STOP/CANCEL target names; None for `all`."""
        target = parse_target(c.words(1)[0])
        if target == "all":
            return None
        client = self.client_id if target == "self" else target
        assert isinstance(client, int)
        return functools.partial(_from_client, client)

    def _stop(self, c: Command) -> Reply:
        select = self._selector(c)
        self.shared.speaker.stop(select)  # only the one being said now, if select picks it
        return Reply(210, "OK STOPPED")

    def _cancel(self, c: Command) -> Reply:
        select = self._selector(c) or (lambda u: True)
        self.shared.speaker.cancel(select, reason=f"cancelled by {self}")
        return Reply(213, "OK CANCELED")

    def _pause(self, c: Command) -> Reply:
        # Each connection's pause is its own (speechd's): its messages wait, the others'
        # speak; it ends with RESUME or when the connection closes.
        for session in self._sessions(parse_target(c.words(1)[0])):
            self.shared.speaker.hold(session, functools.partial(_from_client, session.client_id))
        return Reply(211, "OK PAUSED")

    def _resume(self, c: Command) -> Reply:
        released = [
            self.shared.speaker.release(session)
            for session in self._sessions(parse_target(c.words(1)[0]))
        ]
        if not any(released):
            raise SsipError(400, "ERR NOT PAUSED")  # ssip.texi: a 4xx error
        return Reply(212, "OK RESUMED")

    def _list(self, c: Command) -> Reply:
        what = c.words(1)[0].upper()
        if what == "VOICES":
            return Reply(249, "OK VOICE LIST SENT", s.VOICE_TYPES)
        if what == "OUTPUT_MODULES":
            return Reply(250, "OK MODULE LIST SENT", (s.OUTPUT_MODULE,))
        if what == "SYNTHESIS_VOICES":
            # name, language, variant: as speechd lists them (spd-say -L)
            lines = tuple(f"{v.id}\t{v.language or 'none'}\tnone" for v in self._voices())
            return Reply(249, "OK VOICE LIST SENT", lines)
        raise invalid_parameter()

    def _voices(self) -> list[Voice]:
        builder = self.shared.builder
        return builder.voices or service_voices(builder.api.voice)

    def _history(self, c: Command) -> Reply:
        words = c.args.upper().split()
        if not words:
            raise missing_parameter()
        if words[:2] == ["GET", "CLIENT_ID"]:
            return Reply(245, "OK CLIENT ID SENT", (str(self.client_id),))
        raise SsipError(380, "ERR NOT YET IMPLEMENTED")  # playspeak keeps no history

    def _block(self, c: Command) -> Reply:
        verb = c.words(1)[0].upper()
        if verb == "BEGIN":
            if self.block is not None:
                raise SsipError(330, "ERR ALREADY INSIDE BLOCK")
            self.block = Block()
            return Reply(260, "OK INSIDE BLOCK")
        if verb == "END":
            if self.block is None:
                raise SsipError(331, "ERR ALREADY OUTSIDE BLOCK")
            self._end_block()
            return Reply(261, "OK OUTSIDE BLOCK")
        raise invalid_parameter()

    def _end_block(self) -> None:
        """Speak the block's messages as one utterance (so they cannot interrupt each other)."""
        block, self.block = self.block, None
        if block is None or block.msg_id is None or block.settings is None:
            return
        self._hub.reserved.discard(f"ssip-{block.msg_id}")
        try:
            spoken = block.settings.text_for("\n".join(block.parts))
            self._submit(self._utterance(spoken, block.settings, block.msg_id))
        except SsipError as e:
            # Its messages were already answered 225: tell a listening client they are gone.
            if "cancel" in block.settings.notifications:
                self.notify(event(703, "CANCELED", block.msg_id, self.client_id))
            log.warning("%s: block %d dropped: %s", self, block.msg_id, e)

    def _quit(self) -> Reply:
        if self.block is not None:
            self._end_block()
        return BYE


def _request(spoken: s.Spoken, settings: s.Settings) -> SpeechRequest:
    """What a message asks the builder for, in a connection's settings."""
    return SpeechRequest(
        text=spoken.text,
        segments=spoken.segments,
        voice=settings.synthesis_voice,
        speed_factor=settings.speed,
        language=settings.language if settings.language_chosen else None,
        priority=settings.priority,
        gain=settings.gain,
        spelling=settings.spelling,
        style=settings.style(ssml=spoken.ssml),
    )


def _voice_refuses(why: str) -> SsipError:
    # ssip.texi: 4xx are the client's errors (invalid parameters)
    return SsipError(417, f"ERR VOICE REFUSES ({why.upper()})")


def _from_client(client_id: int, u: Utterance) -> bool:
    """Whether `u` is a message of SSIP connection `client_id`."""
    return isinstance(u.owner, MessageEvents) and u.owner.client_id == client_id
