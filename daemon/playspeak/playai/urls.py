"""Websocket URLs from websocket-auth, kept and reused until shortly before they expire.

One cache serves every model's link (one auth answer lists a URL per model), so reconnecting,
renewing or opening a second model's link costs no auth call while the URLs are good. Times
are kept on trio's clock (the answer's wall-clock `expiresAt` is converted once on arrival),
so tests can run it under a mock clock.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import httpx
import trio

from playspeak.log import register_url_tokens
from playspeak.playai.auth import authenticate
from playspeak.playai.wire import AuthAnswer

log = logging.getLogger(__name__)


@dataclass
class UrlCache:
    """The last auth answer and until when (trio time) its URLs are used."""

    http: httpx.AsyncClient
    base_url: str
    api_key: str = field(repr=False)
    user_id: str = field(repr=False)
    timeout: float = 10.0  # for one auth call
    lifetime: float = 3600.0  # assumed when the answer names no expiry
    margin: float = 60.0  # stop using URLs this long before they expire (<= a quarter of life)
    auths: int = 0  # auth calls made (answered or not)
    _result: AuthAnswer | None = field(default=None, init=False, repr=False)
    _until: float = field(default=float("-inf"), init=False, repr=False)
    _expires: float = field(default=float("-inf"), init=False, repr=False)
    _lock: trio.Lock = field(default_factory=trio.Lock, init=False, repr=False)

    async def url_for(self, model: str) -> str:
        """The websocket URL for `model`, authenticating only when no good one is kept.
        Raises AuthError / LinkError (auth.authenticate's) or trio.TooSlowError."""
        async with self._lock:  # two links wanting URLs at once make one auth call
            if self._result is None or trio.current_time() >= self._until:
                await self._refresh()
            assert self._result is not None
            return self._result.url_for(model)

    def expires_in(self) -> float | None:
        """Seconds (trio time) until the kept URLs expire; None when none are kept."""
        if self._result is None:
            return None
        return self._expires - trio.current_time()

    def forget(self) -> None:
        """The service refused a kept URL: the next use authenticates again."""
        self._result, self._until = None, float("-inf")

    async def _refresh(self) -> None:
        self.auths += 1
        with trio.fail_after(self.timeout):
            result = await authenticate(self.http, self.base_url, self.api_key, self.user_id)
        for url in result.websocket_urls.values():
            register_url_tokens(url)
        now = trio.current_time()
        life = self.lifetime
        if result.expires_at is not None:
            life = result.expires_at - time.time()
        self._result = result
        self._expires = now + life
        self._until = now + life - min(self.margin, max(life, 0) / 4)
        log.debug("websocket URLs kept for %.0f s", max(self._until - now, 0))
