"""Where an utterance's audio comes from: the phrase cache, the service, or the local voice.

With the embedded local voice (`local`: no service configured) every utterance is synthesised
directly (localvoice.py): the phrase cache and the fallback are for a service. Otherwise the
speaker asks `Sources.open` for a reply and reads it the same way whatever its source. A
cache hit never touches the service. A miss goes to the service, guarded (cache/replies.py):
its complete audio is stored, and for the priorities the fallback covers, the local voice
stands in when the service fails or is silent past `fallback.after`. Owns a nursery (in the
daemon's root) for cache writes, background requests and `cache warm`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from playspeak import ssml
from playspeak.cache.replies import CACHE, AnyReply, BytesReply, GuardedReply
from playspeak.cache.store import PhraseStore, cache_key
from playspeak.engines import Synthesizer
from playspeak.errors import ConfigError, LinkError
from playspeak.fallback import FallbackVoice
from playspeak.localvoice import LocalReply
from playspeak.playai.link import LinkPool
from playspeak.playai.linkstate import UP
from playspeak.speech import Utterance
from playspeak.style import Style

log = logging.getLogger(__name__)

Waiter = Callable[[], Awaitable[None]]


class Sources:
    def __init__(
        self,
        links: LinkPool,
        *,
        model: str,
        store: PhraseStore | None,
        fallback: FallbackVoice | None,
        local: Synthesizer | None = None,
    ) -> None:
        self.links = links
        self.local = local  # the embedded local voice: it speaks everything
        self.model = model  # the configured model: part of the key of an utterance without one
        self.store = store
        self.fallback = fallback
        self._nursery: trio.Nursery | None = None
        # One warm request at a time on the link: speech asked for meanwhile waits behind at
        # most one warm reply, not behind every phrase a client asked to warm.
        self._warming = trio.Lock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the cache directory (index it, shrink it to its cap); serve until cancelled."""
        if self.store is not None:
            try:
                await trio.to_thread.run_sync(self.store.open)
            except (OSError, ConfigError) as e:  # ConfigError: the directory is not ours alone
                log.warning("phrase cache off: cannot use %s: %s", self.store.directory, e)
                self.store = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            synth = self.local or (self.fallback.synth if self.fallback else None)
            if synth is not None:
                await nursery.start(synth.run)  # espeak-ng kept ready
            task_status.started()
            await trio.sleep_forever()

    def key(self, params: dict[str, Any], model: str | None) -> str:
        return cache_key({**params, "model": model or self.model})

    async def open(
        self, u: Utterance, *, may_fall_back: bool = True, text: str | None = None
    ) -> AnyReply:
        """A reply for `u`, or for `text`, one part of it (a segment between index marks).
        Raises LinkError as the link does when the service cannot take the request and no
        fallback covers it."""
        params = {**u.params} if text is None else {**u.params, "text": text}
        if self.local is not None:
            return self._speak_locally(u, params)
        store = self.store if u.cache else None
        key = self.key(params, u.model)
        if params.pop("ssml", False):
            # A PlayAI service gets the words; the markup goes along in a field of playspeak's
            # own, which a local server (serve-local) and the fallback voice say instead
            params["ssml"] = params["text"]
            params["text"] = ssml.words(params["text"])
        if store is not None:
            data = await trio.to_thread.run_sync(store.get, key)
            if data is not None:
                return BytesReply(data, CACHE)
        fallback = self.fallback if may_fall_back else None
        if fallback is not None and not fallback.covers(u.priority):
            fallback = None
        params = dict(params)
        u.fallback_reason = ""  # asked again: the service may answer this time
        wait = fallback.after if fallback else 0.0
        if fallback is not None and fallback.active and not self._connected(u.model):
            wait = 0.0  # still down since the last fallback: no point waiting again
        reply = GuardedReply(
            deadline=trio.current_time() + wait,
            late=f"no audio within {fallback.after:g} s" if fallback else "",
            fallback=(lambda: fallback.render(params)) if fallback else None,
            on_fallback=(lambda reason: self._fell_back(u, reason)) if fallback else None,
            on_audio=self.fallback.note_service if self.fallback else None,
            store=(lambda data: self._save(store, key, data)) if store else None,
            store_limit=store.max_entry_bytes if store else 0,
        )
        if fallback is None:
            link = await self.links.get(u.model)
            reply.attach(await link.request(params))
        else:
            # In the background: a service that cannot be reached keeps a request waiting
            # (api.request_patience) far beyond the fallback's deadline.
            if not self._spawn(self._request, reply, u.model, params):
                raise LinkError("the daemon is shutting down")
        return reply

    def _speak_locally(self, u: Utterance, params: dict[str, Any]) -> LocalReply:
        """Raises LinkError when the voice cannot speak as asked (its engine has no pitch…)."""
        assert self.local is not None
        text, voice = str(params["text"]), str(params.get("voice") or "")
        style = Style.from_params(params)
        if (why := self.local.refusal(voice, style)) is not None:
            raise LinkError(why)
        said, style = self.local.steps_of(text, voice, float(params["speed"]), style)
        u.warning = self.local.warning(voice)
        reply = LocalReply()
        if not self._spawn(reply.produce, self.local, said, voice, style):
            raise LinkError("the daemon is shutting down")
        return reply

    def _fell_back(self, u: Utterance, reason: str) -> None:
        """The local voice speaks `u`: its events say why from now on (`fallback_reason`)."""
        u.fallback_reason = reason
        assert self.fallback is not None
        self.fallback.note_used(reason)

    def _connected(self, model: str | None) -> bool:
        """Whether the model's link is up now: connected, or closed by choice while idle (a
        link not yet started counts as up)."""
        model = model or self.model
        return all(link.state in UP for link in self.links.health() if link.model == model)

    async def _request(self, reply: GuardedReply, model: str | None, params: dict) -> None:
        try:
            link = await self.links.get(model)
            answer = await link.request(params)
        except LinkError as e:
            reply.fail(e)
            return
        reply.attach(answer)

    def _save(self, store: PhraseStore, key: str, data: bytes) -> None:
        if not self._spawn(self._write, store, key, data):
            log.debug("phrase cache: not stored, the daemon is shutting down")

    def _spawn(self, fn: Any, *args: Any) -> bool:
        """Start `fn` in our nursery; False once it has closed: the daemon is shutting down
        while an utterance still ends (its feeder runs until the speaker's cancel reaches it)."""
        assert self._nursery is not None
        try:
            self._nursery.start_soon(fn, *args)
        except RuntimeError:  # "Nursery is closed to new arrivals"
            return False
        return True

    async def _write(self, store: PhraseStore, key: str, data: bytes) -> None:
        if not await trio.to_thread.run_sync(store.put, key, data):
            log.warning("phrase cache: could not store an entry in %s", store.directory)

    # ---- cache warm / clear / stats ---------------------------------------------------------

    async def warm(self, u: Utterance, before: Waiter | None = None) -> str:
        """Fetch `u` from the service into the cache unless it is there: "cached" or "stored".
        One warm request at a time, each after `before()` (the speaker's wait_idle: speech
        goes first). Raises LinkError."""
        if self.store is None:
            raise LinkError("the phrase cache is off")
        if self.local is not None:
            raise LinkError("no service to warm from: the local voice speaks every utterance")
        store, key = self.store, self.key(u.params, u.model)
        if await trio.to_thread.run_sync(store.get, key) is not None:
            return "cached"
        async with self._warming:
            if before is not None:
                await before()
            parts = await self._fetch(u)
        if not parts:
            raise LinkError("the service sent no audio")
        if not await trio.to_thread.run_sync(store.put, key, b"".join(parts)):
            raise LinkError(f"could not write to {store.directory}")
        return "stored"

    async def _fetch(self, u: Utterance) -> list[bytes]:
        link = await self.links.get(u.model)
        reply = await link.request(dict(u.params))
        parts = []
        try:
            while (chunk := await reply.receive()) is not None:
                parts.append(chunk)
        finally:
            reply.discard()  # on cancel too: the link's reader must not wait on it
        return parts

    def spawn_warm(self, u: Utterance, done: Any, before: Waiter | None = None) -> None:
        """Warm in the background; `done(result, reason)` when it ended."""

        async def task() -> None:
            try:
                done(await self.warm(u, before), "")
            except LinkError as e:
                done("failed", str(e))

        if not self._spawn(task):
            done("failed", "the daemon is shutting down")

    async def clear(self) -> int:
        return 0 if self.store is None else await trio.to_thread.run_sync(self.store.clear)

    def status(self) -> dict[str, Any]:
        cache = (
            {"enabled": False} if self.store is None else {"enabled": True, **self.store.stats()}
        )
        fallback = (
            {"enabled": False}
            if self.fallback is None
            else {
                "enabled": True,
                "after": self.fallback.after,
                **self.fallback.status(),
            }
        )
        return {"cache": cache, "fallback": fallback}
