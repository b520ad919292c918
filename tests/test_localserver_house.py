"""serve-local as the house's voice server: beyond loopback only with credentials, bounds on
each client by its address, TLS. Through real sockets (a second client address is 127.0.0.2,
which Linux's loopback answers like any 127/8 address)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
import trio_websocket

from link_helpers import VOICE, collect, command, served_link
from playspeak.localserver import LocalServer, LocalServerSettings, open_local_server
from playspeak.localserver.cli import parse_args
from playspeak.localserver.clients import ClientBounds
from playspeak.localserver.settings import AuthRate

from localserver_helpers import AUTH_PATH, GOOD_HEADERS, read_reply, speak

FAST = {"first_byte_delay": 0, "realtime_factor": 0, "synth": "generated"}
KEY, USER = "house-key", "house-user"
HOUSE = {"host": "0.0.0.0", "api_key": KEY, "user_id": USER, **FAST}
CREDS = {"Authorization": f"Bearer {KEY}", "X-User-Id": USER}


def local(server: LocalServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def auth_from(server: LocalServer, source: str, path: str = AUTH_PATH) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport) as client:
        return await client.post(local(server) + path, headers=CREDS)


async def url_from(server: LocalServer, source: str = "127.0.0.1") -> str:
    response = await auth_from(server, source)
    assert response.status_code == 200, response.text
    return str(response.json()["webSocketUrls"]["Play3.0-mini"])


# ---- credentials ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env", [{}, {"PLAYAI_API_KEY": "k"}, {"PLAYAI_USER_ID": "u"}], ids=["none", "key", "user"]
)
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "box.lan", ""])
def test_beyond_loopback_needs_both_credentials(
    host: str, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--host", host], env)
    assert exited.value.code == 2
    said = capsys.readouterr().err
    assert "PLAYAI_API_KEY" in said and "PLAYAI_USER_ID" in said


def test_loopback_needs_none_and_beyond_it_credentials_suffice() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert parse_args(["--host", host], {}).host == host
    both = {"PLAYAI_API_KEY": "k", "PLAYAI_USER_ID": "u"}
    assert parse_args(["--host", "0.0.0.0"], both).api_key == "k"


def test_the_key_may_come_as_a_systemd_credential(tmp_path: Path) -> None:
    """playspeak-voice.service hands it over with LoadCredential=playai-api-key."""
    (tmp_path / "playai-api-key").write_text("from-systemd\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "PLAYAI_USER_ID": "u"}
    settings = parse_args(["--host", "0.0.0.0"], env)
    assert (settings.api_key, settings.user_id) == ("from-systemd", "u")
    assert parse_args([], {**env, "PLAYAI_API_KEY": "env-wins"}).api_key == "env-wins"


def test_serve_local_beyond_loopback_without_credentials_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYAI_")}
    done = subprocess.run(
        [sys.executable, "-m", "playspeak", "serve-local", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "PLAYAI_API_KEY" in done.stderr and "PLAYAI_USER_ID" in done.stderr


async def test_beyond_loopback_every_auth_path_checks_the_credentials() -> None:
    async with open_local_server(**HOUSE) as server, httpx.AsyncClient() as client:
        paths = ["/api/v1/tts/websocket-auth", "/api/v1/websocket-auth"]
        for path in [*paths, "/api/v4/websocket-auth", "/api/v4/sdk-auth"]:
            wrong = await client.post(local(server) + path, headers=GOOD_HEADERS)
            assert wrong.status_code == 401 and KEY not in wrong.text
            assert (await client.post(local(server) + path, headers=CREDS)).status_code == 200


# ---- bounds on each client ---------------------------------------------------------------


async def test_the_auth_rate_of_one_client_leaves_the_others_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rate = AuthRate(2, 60.0)
    async with open_local_server(**HOUSE, client_auth_rate=rate) as server:
        first = [(await auth_from(server, "127.0.0.1")).status_code for _ in range(3)]
        assert first == [200, 200, 429]
        refused = await auth_from(server, "127.0.0.1")
        assert "from this client" in refused.json()["error"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert (await auth_from(server, "127.0.0.2")).status_code == 200
        await trio.sleep(61)
        assert (await auth_from(server, "127.0.0.1")).status_code == 200
        assert server.stats.auth_rate_limited == 2


async def test_one_client_opens_at_most_its_websockets() -> None:
    async with open_local_server(**HOUSE, client_connections=2) as server:
        url = await url_from(server)
        async with (
            trio_websocket.open_websocket_url(url) as one,
            trio_websocket.open_websocket_url(url),
        ):
            with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                async with trio_websocket.open_websocket_url(url):
                    pass
            assert rejected.value.status_code == 429
            assert b"too many websockets" in (rejected.value.body or b"")
            assert (await speak(one, output_format="raw")).audio  # the open ones serve on
        async with trio_websocket.open_websocket_url(url) as again:  # closed ones count no more
            assert (await speak(again, output_format="raw")).audio
        assert len(server.clients) == 1


async def test_a_client_with_its_requests_in_flight_is_read_no_further(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Its next command waits in the socket (nothing is lost) until one is answered."""
    async with open_local_server(**HOUSE, client_requests=1) as server:
        url = await url_from(server)
        async with (
            trio_websocket.open_websocket_url(url) as first,
            trio_websocket.open_websocket_url(url) as second,
        ):
            server.faults.stall_after_bytes = 0  # the first reply holds its slot
            command = {"text": "Hello.", "voice": "Angelo", "output_format": "raw"}
            await first.send_message(json.dumps({**command, "request_id": "a"}))
            assert json.loads(await first.get_message())["type"] == "start"
            await second.send_message(json.dumps({**command, "request_id": "b"}))
            with trio.move_on_after(30) as waited:
                await second.get_message()
            assert waited.cancelled_caught and server.stats.requests == 2
            server.faults.resume_stalls()
            assert (await read_reply(first)).last["type"] == "end"
            answer = await read_reply(second)
            assert answer.messages[0]["request_id"] == "b" and answer.audio


def test_the_table_of_clients_keeps_only_the_active_ones() -> None:
    bounds = ClientBounds(
        LocalServerSettings(client_auth_rate=AuthRate(1, 10.0), client_connections=1)
    )
    assert bounds.admit_auth("10.0.0.1", 0.0) is None
    assert bounds.admit_auth("10.0.0.1", 5.0) == pytest.approx(5.0)
    assert bounds.open("10.0.0.2") and not bounds.open("10.0.0.2")
    assert len(bounds) == 2
    assert bounds.admit_auth("10.0.0.3", 20.0) is None  # 10.0.0.1's window is over
    assert len(bounds) == 2  # .2 has a websocket open, .3 an auth in its window
    bounds.close("10.0.0.2")
    bounds.admit_auth("10.0.0.4", 40.0)
    assert len(bounds) == 1


# ---- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    argv = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=playspeak-test"
    argv += " -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
    made = subprocess.run(
        [*argv.split(), "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        timeout=60,
    )
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a test certificate: {made.stderr[-200:]!r}")
    return cert, key


@pytest.fixture
async def tls_server(certificate: tuple[Path, Path]) -> AsyncIterator[LocalServer]:
    cert, key = certificate
    async with open_local_server(certfile=str(cert), keyfile=str(key), **FAST) as server:
        yield server


async def test_tls_serves_https_and_names_wss_urls(
    tls_server: LocalServer, certificate: tuple[Path, Path]
) -> None:
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    assert tls_server.base_url.startswith("https://127.0.0.1:")
    async with httpx.AsyncClient(verify=trusted) as client:
        v1 = await client.post(tls_server.base_url + AUTH_PATH, headers=GOOD_HEADERS)
        sdk = await client.post(tls_server.base_url + "/api/v4/sdk-auth", headers=GOOD_HEADERS)
    urls = v1.json()["webSocketUrls"]
    assert all(url.startswith(f"wss://127.0.0.1:{tls_server.port}/") for url in urls.values())
    assert sdk.json()["PlayDialog"]["http_streaming_url"].startswith("https://")
    async with trio_websocket.open_websocket_url(urls["Play3.0-mini"], ssl_context=trusted) as ws:
        reply = await speak(ws, output_format="mp3")
    assert reply.audio == await tls_server.render(text="Hi there.", voice="Angelo")


async def test_a_client_without_tls_is_turned_away_and_the_server_goes_on(
    tls_server: LocalServer, certificate: tuple[Path, Path]
) -> None:
    plain = f"http://127.0.0.1:{tls_server.port}"
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.HTTPError):
            await client.post(plain + AUTH_PATH, headers=GOOD_HEADERS)
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    async with httpx.AsyncClient(verify=trusted) as client:
        good = await client.post(tls_server.base_url + AUTH_PATH, headers=GOOD_HEADERS)
    assert good.status_code == 200


def test_a_certificate_that_cannot_be_loaded_stops_serve_local_with_2(tmp_path: Path) -> None:
    bad = tmp_path / "nothing.pem"
    bad.write_text("not a certificate\n")
    done = subprocess.run(
        [sys.executable, "-m", "playspeak", "serve-local", "--port", "0", "--certfile", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and str(bad) in done.stderr


async def test_the_daemons_link_speaks_over_tls_with_the_house_certificate_trusted(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A room's daemon trusts a house certificate through SSL_CERT_FILE (httpx for the auth
    call, Python's default TLS context for the websocket)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    cert, key = map(str, certificate)
    settings = LocalServerSettings(certfile=cert, keyfile=key, **FAST)
    async with served_link(settings, "k", "u") as (server, link):
        assert link.settings.base_url.startswith("https://")
        reply = await link.request(command("Over TLS."))
        assert await collect(reply) == await server.render(text="Over TLS.", voice=VOICE)
