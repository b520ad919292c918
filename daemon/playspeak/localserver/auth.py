"""Websocket-auth: credential checks, token minting and token validity (no I/O)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import trio

from playspeak.localserver.models import MODELS
from playspeak.localserver.settings import Faults, LocalServerSettings, Stats

AUTH_PATHS = frozenset({"/api/v1/tts/websocket-auth", "/api/v1/websocket-auth"})


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status code and JSON body."""

    status: int
    body: dict[str, object]


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


def _iso_utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def answer_auth(
    method: str,
    path: str,
    headers: Mapping[str, str],
    *,
    settings: LocalServerSettings,
    faults: Faults,
    tokens: TokenStore,
    ws_base: str,
    stats: Stats,
) -> Reply:
    """Answer one HTTP request (headers keyed in lower case); ws_base is ``ws://host:port``."""
    if urlsplit(path).path not in AUTH_PATHS:
        return Reply(404, {"error": "not found"})
    if method != "POST":
        return Reply(405, {"error": f"method {method} not allowed, use POST"})
    stats.auth_calls += 1
    if faults.reject_auth:
        return Reply(401, {"error": "unauthorized (injected)"})
    problem = _credentials_error(headers, settings)
    if problem is not None:
        return Reply(401, {"error": problem})
    token = tokens.mint()
    urls = {m.name: f"{ws_base}/{m.app}/ws?fal_jwt_token={token}" for m in MODELS}
    expires = datetime.now(UTC) + timedelta(seconds=settings.token_lifetime)
    return Reply(200, {"webSocketUrls": urls, "expiresAt": _iso_utc(expires)})
