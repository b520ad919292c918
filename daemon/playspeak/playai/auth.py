"""PlayAI websocket authentication: one HTTP call that yields per-model websocket URLs."""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime

import httpx

from playspeak.errors import AuthError, LinkError
from playspeak.log import redact
from playspeak.playai.wire import AUTH_PATH, AuthAnswer, parse_auth_answer

log = logging.getLogger(__name__)


class RateLimited(LinkError):
    """The service answered 429: ask again no sooner than `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CredentialsRefused(AuthError):
    """The auth call answered 401 or 403: the key or the user id is wrong (retrying the same
    ones soon will not help)."""


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
) -> AuthAnswer:
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
    answer = parse_auth_answer(body)
    if answer.skipped:
        names = ", ".join(redact(name)[:60] for name in answer.skipped)
        log.warning("auth answer: skipping invalid websocket URL entries for %s", names)
    return answer
