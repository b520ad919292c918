"""PlayAI websocket authentication: one HTTP call that yields per-model websocket URLs."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from playspeak.errors import AuthError, LinkError
from playspeak.log import redact

log = logging.getLogger(__name__)

AUTH_PATH = "/api/v1/tts/websocket-auth"


class RateLimited(LinkError):
    """The service answered 429: ask again no sooner than `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CredentialsRefused(AuthError):
    """The auth call answered 401 or 403: the key or the user id is wrong (retrying the same
    ones soon will not help)."""


class ModelNotOffered(AuthError):
    """The auth answer names no websocket for the model asked for."""


@dataclass(frozen=True)
class AuthResult:
    urls: dict[str, str]  # model name → websocket URL (with its secret token: never log unredacted)
    expires_at: float | None  # epoch seconds, when the service said

    def url_for(self, model: str) -> str:
        if model in self.urls:
            return self.urls[model]
        if "*" in self.urls:  # api v3: one URL for every model
            return self.urls["*"]
        raise ModelNotOffered(
            f"the service offers no websocket for model {model!r} "
            f"(it offers: {', '.join(sorted(self.urls))})"
        )


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _valid_urls(urls: dict[Any, Any]) -> dict[str, str]:
    """The entries with a model name and a websocket URL; the others are logged and skipped
    (one bad entry must not cost every model its connection)."""
    good: dict[str, str] = {}
    for model, url in urls.items():
        if isinstance(model, str) and model and isinstance(url, str) and url.startswith("ws"):
            good[model] = url
        else:
            log.warning(
                "auth answer: skipping an invalid websocket URL entry for %r (a %s)",
                redact(str(model))[:60],
                type(url).__name__,
            )
    return good


def parse_auth_answer(body: Any) -> AuthResult:
    """Accept the current camelCase answer and the older snake_case and single-URL variants.
    Any model name is taken; invalid entries are skipped with a log line."""
    if not isinstance(body, dict):
        raise AuthError("the auth answer is not a JSON object")
    expires = _parse_time(body.get("expiresAt") or body.get("expires_at"))
    urls = body.get("webSocketUrls") or body.get("websocket_urls")
    if isinstance(urls, dict) and (good := _valid_urls(urls)):
        return AuthResult(good, expires)
    single = body.get("websocket_url") or body.get("webSocketUrl")
    if isinstance(single, str) and single.startswith("ws"):
        return AuthResult({"*": single}, expires)
    raise AuthError(f"the auth answer has no websocket URLs (keys: {', '.join(sorted(body))})")


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None if absent/bad."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body.get("error") or body.get("message") or body.get("detail") or ""
    except ValueError:
        message = response.text
    return redact(str(message))[:200]


async def authenticate(
    client: httpx.AsyncClient, base_url: str, api_key: str, user_id: str
) -> AuthResult:
    """POST the auth call. Raises AuthError (refused) or LinkError (unreachable, bad answer)."""
    url = base_url.rstrip("/") + AUTH_PATH
    headers = {
        "Authorization": f"Bearer {api_key}",
        "X-User-Id": user_id,
        "Content-Type": "application/json",
    }
    try:
        response = await client.post(url, headers=headers)
    except httpx.HTTPError as e:
        raise LinkError(f"cannot reach {base_url}: {type(e).__name__}: {redact(str(e))}") from e
    if response.status_code in (401, 403):
        raise CredentialsRefused(
            f"the TTS service at {base_url} refused the credentials (HTTP {response.status_code}: "
            f"{_server_message(response)}): check PLAYAI_API_KEY and PLAYAI_USER_ID"
        )
    if response.status_code == 429:
        wait = retry_after(response)
        raise RateLimited(
            f"{base_url} rate-limits auth calls (HTTP 429: {_server_message(response)})"
            + (f"; retry after {wait:g} s" if wait is not None else ""),
            wait,
        )
    if not 200 <= response.status_code <= 299:
        raise LinkError(
            f"auth call to {base_url} failed: "
            f"HTTP {response.status_code} {_server_message(response)}"
        )
    try:
        body = response.json()
    except ValueError as e:
        raise AuthError(f"the auth answer from {base_url} is not JSON") from e
    return parse_auth_answer(body)
