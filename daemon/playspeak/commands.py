"""What each control command does: a dispatch table from command type to a non-blocking handler."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from playspeak import ssml
from playspeak.control import protocol as p
from playspeak.errors import ProtocolError
from playspeak.events import Ok, Warmed
from playspeak.marks import joined, split_marks
from playspeak.schedule import ScheduleRules
from playspeak.sources import Sources
from playspeak.speaker import Speaker
from playspeak.speech import EventHub, Outbox, Utterance
from playspeak.style import Style
from playspeak.utterances import SpeechRequest, UtteranceBuilder

# `cache warm` requests one client may have in flight: more are refused with the reason (the
# CLI sends one at a time), so that one connection cannot line up hundreds of service requests.
MAX_WARMING_PER_CLIENT = 4


class Requester(Outbox, Protocol):
    """Who sent a command, as the handler needs it: where its replies and events go, its own
    utterances not yet ended, and whether it subscribed (control/session.ClientSession; the
    MQTT bridge's session is one too)."""

    utterances: set[Utterance]
    subscribed: bool


class Accepted(dict[str, Any]):
    """A speak command's reply fields, with the utterance to queue once the reply is sent."""

    def __init__(self, utterance: Utterance) -> None:
        super().__init__(id=utterance.id)
        self.utterance = utterance


class CommandHandler:
    """Turns parsed commands into speaker actions and one reply line each."""

    def __init__(
        self,
        speaker: Speaker,
        hub: EventHub,
        builder: UtteranceBuilder,
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self.speaker = speaker
        self.hub = hub
        self.builder = builder  # the defaults in force (the daemon replaces them on reload)
        self.stopping = False  # set at shutdown: speak is refused
        self.state_changed: Callable[[], None] = lambda: None  # a setting to save was set
        self._status = status
        self.schedule = ScheduleRules()  # what `at` may be (the daemon sets the configured)
        self._warming: dict[Requester, int] = {}  # clients with warm requests in flight
        self._table: dict[type, Callable[[Requester, Any], dict[str, Any]]] = {
            p.Speak: self._speak,
            p.Ping: lambda s, c: {},
            p.Voices: lambda s, c: {"voices": [v.to_json() for v in self.builder.voices]},
            p.Status: lambda s, c: {"status": self._status()},
            p.Subscribe: self._subscribe,
            p.Stop: lambda s, c: {"stopped": self.speaker.stop()},
            p.Skip: lambda s, c: {"stopped": self.speaker.stop()},
            p.Cancel: self._cancel,
            p.Pause: self._pause,
            p.Resume: self._resume,
            p.Volume: self._volume,
            p.Cache: self._cache,
        }

    def __call__(self, session: Requester, command: p.Command, line: int) -> dict[str, Any]:
        """Act on `command` and reply; returns the reply's fields (the server logs the id)."""
        fields = self._table[type(command)](session, command)
        # The reply goes before the utterance's first event.
        session.send(Ok(p.command_name(command), line, fields))
        if isinstance(fields, Accepted):
            self.speaker.submit(fields.utterance)
        return fields

    def forget(self, session: Requester) -> None:
        """The client is gone: no more events to it (its utterances still play)."""
        self.hub.subscribers.discard(session)
        for utterance in session.utterances:
            utterance.owner = None

    def _speak(self, session: Requester, c: p.Speak) -> dict[str, Any]:
        if self.stopping:
            raise ProtocolError("the daemon is stopping: no new speech is accepted")
        if c.ssml:
            text, segments = ssml.spoken(ssml.parse(c.text))  # SsmlError names the fault
        else:
            segments = split_marks(c.text)  # its index marks, if any
            text = joined(segments) if segments else c.text
        request = SpeechRequest(
            text=text,
            segments=segments,
            voice=c.voice,
            speed=c.speed,
            temperature=c.temperature,
            model=c.model,
            output_format=c.output_format,
            language=c.language,
            priority=c.priority,
            gain=c.volume / 100 if c.volume is not None else 1.0,
            chime=c.chime,
            cache=c.cache is not False,
            at=c.at,
            spelling=bool(c.spelling),
            style=Style(
                round(c.pitch or 0),
                c.punctuation or "none",
                c.capitals or "none",
                round(c.pitch_range or 0),
                ssml=bool(c.ssml),
            ),
        )
        self.builder.check(request)  # a text too long is refused before a full queue
        self.speaker.queue.check_room()
        if c.at is not None:
            self.schedule.check(c.at, time.time())
        if c.id is not None:
            self._check_id(c.id)
        ident = c.id if c.id is not None else self.hub.fresh_id()
        utterance = self.builder.build(request, id=ident, owner=session)
        session.utterances = {u for u in session.utterances if not u.ended} | {utterance}
        return Accepted(utterance)

    def _cache(self, session: Requester, c: p.Cache) -> dict[str, Any]:
        sources = self.speaker.sources
        if not isinstance(sources, Sources):  # (a speaker with another source of audio)
            raise ProtocolError("the phrase cache is not available in this daemon")
        if c.action == "stats":
            return sources.status()
        if c.action == "clear":
            # a few unlinks in one directory: quick enough to do in place
            return {"cleared": sources.store.clear() if sources.store is not None else 0}
        if sources.store is None:
            raise ProtocolError("the phrase cache is off (cache.enabled = false)")
        text = c.text
        assert text is not None
        if self._warming.get(session, 0) >= MAX_WARMING_PER_CLIENT:
            raise ProtocolError(
                f"{MAX_WARMING_PER_CLIENT} cache warm requests of this client are in flight: "
                "send more after their `warmed` events"
            )
        request = SpeechRequest(text, voice=c.voice, speed=c.speed, model=c.model)
        utterance = Utterance(
            text=text, params=self.builder.params(request), model=c.model, id="warm"
        )

        def done(result: str, reason: str) -> None:
            if (left := self._warming.pop(session) - 1) > 0:
                self._warming[session] = left
            session.send(Warmed(text[:80], result, reason))

        self._warming[session] = self._warming.get(session, 0) + 1
        # speech first: a warm request goes to the service only while nothing is to be said
        sources.spawn_warm(utterance, done, before=self.speaker.wait_idle)
        return {"warming": text[:80]}

    def _check_id(self, ident: str) -> None:
        """A client's id must not be one that is queued or speaking."""
        if self.hub.taken(ident):
            raise ProtocolError(
                f"id {p.echo(ident)} is taken: an utterance with it is queued or speaking"
            )

    def _subscribe(self, session: Requester, c: p.Subscribe) -> dict[str, Any]:
        session.subscribed = True
        self.hub.subscribers.add(session)
        return {}

    def _cancel(self, session: Requester, c: p.Cancel) -> dict[str, Any]:
        selectors: dict[str, Callable[[Utterance], bool]] = {
            "all": lambda u: True,
            "self": lambda u: u.owner is session,
            "id": lambda u: u.id == c.id,
        }
        cancelled = self.speaker.cancel(selectors[c.scope])
        if c.scope == "id" and not cancelled:
            raise ProtocolError(f"no utterance with id {p.echo(c.id)} is queued or speaking")
        return {"cancelled": cancelled}

    def _pause(self, session: Requester, c: p.Pause) -> dict[str, Any]:
        self.speaker.pause()
        return {}

    def _resume(self, session: Requester, c: p.Resume) -> dict[str, Any]:
        self.speaker.resume()
        return {}

    def _volume(self, session: Requester, c: p.Volume) -> dict[str, Any]:
        if c.level is not None:
            self.speaker.player.volume = c.level / 100
            self.state_changed()
        return {"level": round(self.speaker.player.volume * 100, 1)}
