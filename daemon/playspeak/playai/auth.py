"""PlayAI websocket authentication: one HTTP call that yields per-model websocket URLs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from playspeak.errors import AuthError, LinkError
from playspeak.log import redact

log = logging.getLogger(__name__)

AUTH_PATH = "/api/v1/tts/websocket-auth"


@dataclass(frozen=True)
class AuthResult:
    urls: dict[str, str]  # model name → websocket URL (with its secret token: never log unredacted)
    expires_at: float | None  # epoch seconds, when the service said

    def url_for(self, model: str) -> str:
        if model in self.urls:
            return self.urls[model]
        if "*" in self.urls:  # api v3: one URL for every model
            return self.urls["*"]
        raise AuthError(
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


def parse_auth_answer(body: Any) -> AuthResult:
    """Accept the current camelCase answer and the older snake_case and single-URL variants."""
    if not isinstance(body, dict):
        raise AuthError("the auth answer is not a JSON object")
    urls = body.get("webSocketUrls") or body.get("websocket_urls")
    if isinstance(urls, dict) and urls and all(isinstance(u, str) for u in urls.values()):
        expires = body.get("expiresAt") or body.get("expires_at")
        return AuthResult(dict(urls), _parse_time(expires))
    single = body.get("websocket_url") or body.get("webSocketUrl")
    if isinstance(single, str):
        return AuthResult({"*": single}, _parse_time(body.get("expires_at")))
    raise AuthError(f"the auth answer has no websocket URLs (keys: {', '.join(sorted(body))})")


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
    headers = {"Authorization": f"Bearer {api_key}", "X-User-Id": user_id}
    try:
        response = await client.post(url, headers=headers)
    except httpx.HTTPError as e:
        raise LinkError(f"cannot reach {base_url}: {type(e).__name__}: {redact(str(e))}") from e
    if response.status_code in (401, 403):
        raise AuthError(
            f"{base_url} refused the credentials (HTTP {response.status_code}: "
            f"{_server_message(response)}): check PLAYAI_API_KEY and PLAYAI_USER_ID"
        )
    if response.status_code != 200:
        raise LinkError(
            f"auth call to {base_url} failed: "
            f"HTTP {response.status_code} {_server_message(response)}"
        )
    try:
        body = response.json()
    except ValueError as e:
        raise AuthError(f"the auth answer from {base_url} is not JSON") from e
    return parse_auth_answer(body)
