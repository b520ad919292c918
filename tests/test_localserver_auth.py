"""The local server's websocket-auth endpoints, HTTP edges and websocket handshake checks."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
import trio
import trio_websocket

from playspeak.localserver import LocalServer, open_local_server

from localserver_helpers import AUTH_PATH, GOOD_HEADERS, auth, speak, ws_url

KEY, USER = "key-SECRET-1234", "user-SECRET-5678"
V1_PATHS = [AUTH_PATH, "/api/v1/websocket-auth"]
PATHS = [*V1_PATHS, "/api/v4/websocket-auth", "/api/v4/sdk-auth"]  # every one checks credentials
MODELS = {"Play3.0-mini", "PlayDialog", "PlayDialogMultilingual", "PlayDialogArabic"}


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with open_local_server(
        api_key=KEY, user_id=USER, first_byte_delay=0, realtime_factor=0, synth="generated"
    ) as s:
        yield s


def creds(key: str = KEY, user: str = USER) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-User-Id": user}


@pytest.mark.parametrize("path", V1_PATHS)
async def test_auth_returns_a_url_per_model_and_an_iso_expiry(
    server: LocalServer, path: str
) -> None:
    response = await auth(server, path, creds())
    assert response.status_code == 200
    body = response.json()
    assert set(body["webSocketUrls"]) == MODELS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["expiresAt"])
    host = server.base_url.removeprefix("http://")
    apps = set()
    for url in body["webSocketUrls"].values():
        match = re.fullmatch(rf"ws://{re.escape(host)}/([\w-]+)/ws\?fal_jwt_token=([\w-]+)", url)
        assert match, url
        apps.add(match[1])
    assert len(apps) == 4
    assert server.stats.auth_calls == 1


async def test_pipecats_v4_auth_gets_snake_case_urls_that_connect(server: LocalServer) -> None:
    headers = {**creds(), "Content-Type": "application/json"}  # what Pipecat sends
    response = await auth(server, "/api/v4/websocket-auth", headers)
    body = response.json()
    assert response.status_code == 200 and set(body) == {"websocket_urls", "expires_at"}
    assert set(body["websocket_urls"]) == MODELS
    async with trio_websocket.open_websocket_url(body["websocket_urls"]["PlayDialog"]) as ws:
        assert (await speak(ws, text=["Hello", "there."], output_format="raw")).audio


async def test_pyhts_sdk_auth_gets_per_model_objects_it_accepts(server: LocalServer) -> None:
    # pyht's own headers: lower case, no Content-Type, no body
    headers = {"x-user-id": USER, "authorization": f"Bearer {KEY}"}
    body = (await auth(server, "/api/v4/sdk-auth", headers)).json()
    assert set(body) == MODELS | {"expires_at"}
    # what pyht's get_coordinates() checks, and how it parses the expiry
    assert datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    for model in MODELS:
        assert set(body[model]) == {"websocket_url", "http_streaming_url"}
        assert body[model]["http_streaming_url"].startswith(server.base_url)
    async with trio_websocket.open_websocket_url(body["Play3.0-mini"]["websocket_url"]) as ws:
        assert (await speak(ws, output_format="raw")).audio


async def test_each_auth_call_mints_a_fresh_token(server: LocalServer) -> None:
    first = (await auth(server, AUTH_PATH, creds())).json()["webSocketUrls"]["PlayDialog"]
    second = (await auth(server, AUTH_PATH, creds())).json()["webSocketUrls"]["PlayDialog"]
    assert first != second


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "headers",
    [
        creds(key="wrong-key"),
        creds(user="wrong-user"),
        {"X-User-Id": USER},
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": KEY, "X-User-Id": USER},
        {},
    ],
    ids=["wrong key", "wrong user", "no authorization", "no user id", "no bearer", "none"],
)
async def test_bad_credentials_get_401_without_echoing_secrets(
    server: LocalServer, path: str, headers: dict[str, str]
) -> None:
    response = await auth(server, path, headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error
    assert KEY not in error and USER not in error and "wrong" not in error


@pytest.mark.parametrize(
    ("key", "user", "status"), [("x", "y", 200), ("", "y", 401), ("x", "", 401)]
)
async def test_any_non_empty_credentials_when_none_are_configured(
    key: str, user: str, status: int
) -> None:
    headers = {"Authorization": f"Bearer {key}".strip(), "X-User-Id": user}
    async with open_local_server(synth="generated") as server:
        assert (await auth(server, AUTH_PATH, headers)).status_code == status


async def test_reject_auth_fault_answers_401_until_cleared(server: LocalServer) -> None:
    server.faults.reject_auth = True
    for path in PATHS:
        assert (await auth(server, path, creds())).status_code == 401
    server.faults.reject_auth = False
    assert (await auth(server, AUTH_PATH, creds())).status_code == 200


async def test_other_paths_404_and_other_methods_405(server: LocalServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        missing = await client.post("/api/v1/nothing", headers=creds())
        wrong_method = await client.get(AUTH_PATH, headers=creds())
    assert missing.status_code == 404 and "error" in missing.json()
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert wrong_method.headers["allow"] == "POST"


async def test_malformed_http_gets_400(server: LocalServer) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := await stream.receive_some():
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_the_websocket_handshake_needs_a_minted_token(server: LocalServer) -> None:
    url = (await auth(server, AUTH_PATH, creds())).json()["webSocketUrls"]["Play3.0-mini"]
    async with trio_websocket.open_websocket_url(url) as ws:
        assert (await speak(ws, output_format="raw")).last["type"] == "end"
    for bad in [url.replace("fal_jwt_token=", "fal_jwt_token=x"), url.split("?")[0]]:
        with pytest.raises(trio_websocket.ConnectionRejected) as refused:
            async with trio_websocket.open_websocket_url(bad):
                pass
        assert refused.value.status_code == 401
    with pytest.raises(trio_websocket.ConnectionRejected) as refused:
        async with trio_websocket.open_websocket_url(url.replace("/play3-mini/", "/nope/")):
            pass
    assert refused.value.status_code == 404
    assert server.stats.connections == 1


async def test_logs_never_show_a_token_key_or_user_id(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="playspeak.localserver")
    url = (await auth(server, AUTH_PATH, creds())).json()["webSocketUrls"]["PlayDialog"]
    token = url.split("fal_jwt_token=")[1]
    async with trio_websocket.open_websocket_url(url) as ws:
        await speak(ws, output_format="raw")
    await auth(server, AUTH_PATH, creds(key="wrong-key"))
    ours = [r.getMessage() for r in caplog.records if r.name == "playspeak.localserver"]
    assert any("fal_jwt_token=…" in line for line in ours)
    for secret in (token, KEY, USER, "wrong-key"):
        assert not any(secret in line for line in ours)


async def test_helpers_default_credentials_are_accepted_by_a_default_server() -> None:
    async with open_local_server(synth="generated") as server:
        assert (await auth(server, AUTH_PATH, GOOD_HEADERS)).status_code == 200
        assert (await ws_url(server, "PlayDialogArabic")).startswith("ws://")
