"""Websocket-auth: credential checks, token minting and token validity (no I/O)."""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import trio

from playspeak.localserver.models import MODELS
from playspeak.localserver.settings import AuthRate, Faults, LocalServerSettings, Stats
from playspeak.playai.wire import AUTH_PATHS, AuthAnswer


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status code, JSON body and any extra headers."""

    status: int
    body: dict[str, object]
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Token:
    expires: float  # on trio's clock
    epoch: int  # Faults.token_epoch when minted


class TokenStore:
    """Tokens minted by auth calls, valid until their trio-clock deadline or expire_tokens()."""

    def __init__(self, lifetime: float, faults: Faults) -> None:
        self._lifetime = lifetime
        self._faults = faults
        self._tokens: dict[str, _Token] = {}

    def mint(self) -> str:
        """A fresh random token; expired ones are forgotten so the store stays small."""
        now = trio.current_time()
        self._tokens = {t: v for t, v in self._tokens.items() if self._alive(v, now)}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Token(now + self._lifetime, self._faults.token_epoch)
        return token

    def check(self, token: str | None) -> int | None:
        """None when the token is valid now, else the HTTP status to refuse it with."""
        entry = self._tokens.get(token) if token else None
        if entry is None:
            return 401
        return None if self._alive(entry, trio.current_time()) else 403

    def _alive(self, entry: _Token, now: float) -> bool:
        return now < entry.expires and entry.epoch == self._faults.token_epoch


class RateLimiter:
    """A sliding window: at most ``rate.limit`` admissions in any ``rate.window`` seconds."""

    def __init__(self, rate: AuthRate | None) -> None:
        self._rate = rate
        self._admitted: deque[float] = deque()  # admission times inside the window, oldest first

    def admit(self, now: float) -> float | None:
        """None if admitted now (and counted), else the seconds until a slot frees."""
        if self._rate is None:
            return None
        self._expire(now)
        if len(self._admitted) >= self._rate.limit:
            return self._admitted[0] + self._rate.window - now
        self._admitted.append(now)
        return None

    def idle(self, now: float) -> bool:
        """No admission inside the window any more: forgetting this limiter changes nothing."""
        self._expire(now)
        return not self._admitted

    def _expire(self, now: float) -> None:
        if self._rate is not None:
            while self._admitted and self._admitted[0] <= now - self._rate.window:
                self._admitted.popleft()


def token_from_target(target: str) -> str | None:
    """The ``fal_jwt_token`` query parameter of a request target, if any."""
    values = parse_qs(urlsplit(target).query).get("fal_jwt_token")
    return values[0] if values else None


def _credentials_error(headers: Mapping[str, str], settings: LocalServerSettings) -> str | None:
    """What is wrong with the request's credentials, or None; never echoes a secret."""
    scheme, _, key = headers.get("authorization", "").strip().partition(" ")
    key = key.strip()
    user_id = headers.get("x-user-id", "").strip()
    if scheme.lower() != "bearer" or not key:
        return "missing or malformed Authorization header (expected 'Bearer <api key>')"
    if not user_id:
        return "missing X-User-Id header"
    if settings.api_key is not None and not secrets.compare_digest(key, settings.api_key):
        return "invalid API key or user id"
    if settings.user_id is not None and not secrets.compare_digest(user_id, settings.user_id):
        return "invalid API key or user id"
    return None


def answer_auth(
    method: str,
    path: str,
    headers: Mapping[str, str],
    *,
    settings: LocalServerSettings,
    faults: Faults,
    tokens: TokenStore,
    limiter: RateLimiter,
    ws_base: str,
    stats: Stats,
    admit_client: Callable[[float], float | None] = lambda now: None,
) -> Reply:
    """Answer one HTTP request (headers keyed in lower case); ws_base is ``ws://host:port``
    (or ``wss://``). Each auth path answers in its own shape (wire.AUTH_PATHS).

    `admit_client` is the calling client's own rate limit (ClientBounds.admit_auth). Only
    admitted calls count against the rate limits, whatever their credentials; a client past
    its own limit does not use up the server's."""
    shape = AUTH_PATHS.get(urlsplit(path).path)
    if shape is None:
        return Reply(404, {"error": "not found"})
    if method != "POST":
        return Reply(405, {"error": f"method {method} not allowed, use POST"}, (("Allow", "POST"),))
    stats.auth_calls += 1
    reply = _refusal(headers, settings, faults, limiter, admit_client)
    if reply is not None:
        stats.auth_refused += 1
        stats.auth_rate_limited += reply.status == 429
        return reply
    token = tokens.mint()
    # pyht wants an HTTP streaming URL per model too: named, not served (it only warms it up)
    http_base = "http" + ws_base.removeprefix("ws")
    answer = AuthAnswer(
        websocket_urls={m.name: f"{ws_base}/{m.app}/ws?fal_jwt_token={token}" for m in MODELS},
        expires_at=time.time() + settings.token_lifetime,
        http_urls={m.name: f"{http_base}/{m.app}/stream" for m in MODELS},
    )
    return Reply(settings.auth_status, answer.encode(shape))


def _too_many(wait: float, rate: AuthRate | None, whose: str) -> Reply:
    assert rate is not None  # a limiter without a rate admits everything
    message = f"too many auth requests{whose}: at most {rate.limit} in {rate.window:g} seconds"
    return Reply(429, {"error": message}, (("Retry-After", str(max(1, math.ceil(wait)))),))


def _refusal(
    headers: Mapping[str, str],
    settings: LocalServerSettings,
    faults: Faults,
    limiter: RateLimiter,
    admit_client: Callable[[float], float | None],
) -> Reply | None:
    now = trio.current_time()
    if (wait := admit_client(now)) is not None:
        return _too_many(wait, settings.client_auth_rate, " from this client")
    if (wait := limiter.admit(now)) is not None:
        return _too_many(wait, settings.auth_rate, "")
    if faults.reject_auth:
        return Reply(401, {"error": "unauthorized (injected)"})
    if settings.refuses_auth:
        return Reply(
            settings.auth_status, {"error": f"refused (--auth-status {settings.auth_status})"}
        )
    problem = _credentials_error(headers, settings)
    return None if problem is None else Reply(401, {"error": problem})
