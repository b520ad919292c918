"""Bounds on each client of the local server, by its address: auth calls in a window, open
websockets, and commands read but not yet answered (over all its websockets). No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from playspeak.localserver.auth import RateLimiter
from playspeak.localserver.settings import LocalServerSettings


@dataclass
class _Client:
    auths: RateLimiter
    requests: trio.Semaphore | None
    connections: int = 0


@dataclass
class ClientBounds:
    """The bounds of `settings` (client_auth_rate, client_connections, client_requests); a
    client's entry is kept while it has a websocket open or auth calls in its window, so
    the table stays as small as the clients active now."""

    settings: LocalServerSettings
    _clients: dict[str, _Client] = field(default_factory=dict, init=False, repr=False)

    def admit_auth(self, peer: str, now: float) -> float | None:
        """None if `peer` may authenticate now (and it is counted), else the seconds until
        it may."""
        if self.settings.client_auth_rate is None:
            return None
        self._forget_idle(now)
        return self._entry(peer).auths.admit(now)

    def open(self, peer: str) -> bool:
        """Count a websocket of `peer`; False (not counted) when it has its maximum open."""
        limit = self.settings.client_connections
        client = self._entry(peer)
        if limit and client.connections >= limit:
            return False
        client.connections += 1
        return True

    def close(self, peer: str) -> None:
        """A websocket counted by `open` is over."""
        self._clients[peer].connections -= 1

    def requests(self, peer: str) -> trio.Semaphore | None:
        """The slots for commands in flight that `peer`'s websockets share (None: no bound):
        a session takes one per command read and gives it back once answered."""
        return self._entry(peer).requests

    def __len__(self) -> int:
        return len(self._clients)

    def _entry(self, peer: str) -> _Client:
        client = self._clients.get(peer)
        if client is None:
            limit = self.settings.client_requests
            client = _Client(
                RateLimiter(self.settings.client_auth_rate),
                trio.Semaphore(limit) if limit else None,
            )
            self._clients[peer] = client
        return client

    def _forget_idle(self, now: float) -> None:
        for peer in [p for p, c in self._clients.items() if not c.connections]:
            if self._clients[peer].auths.idle(now):
                del self._clients[peer]
