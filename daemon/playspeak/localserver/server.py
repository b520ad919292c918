"""The local PlayAI-compatible server: listener, auth endpoints and websocket sessions."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping
from functools import partial
from urllib.parse import urlsplit

import trio
import trio_websocket

from playspeak.errors import ConfigError, leaves
from playspeak.localserver import auth
from playspeak.localserver.audio import AudioEngine, Rendering
from playspeak.localserver.clients import ClientBounds
from playspeak.localserver.frontdoor import serve_connection
from playspeak.localserver.http_api import serve_http
from playspeak.localserver.models import Model, model_for_path
from playspeak.localserver.session import Session, Shared
from playspeak.localserver.settings import Faults, LocalServerSettings, Stats

log = logging.getLogger("playspeak.localserver")

_DISCONNECTS = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio_websocket.ConnectionClosed,
    ConnectionError,
)
STATS_PATH = "/_local/stats"
_REFUSALS = {401: "unknown token", 403: "token expired", 404: "no such websocket path"}


def _is_disconnect(exc: BaseException) -> bool:
    return all(isinstance(e, _DISCONNECTS) for e in leaves(exc))


def _peer_address(stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]) -> str:
    """The client's address, by which its bounds are kept (ClientBounds)."""
    sock = stream.transport_stream.socket if isinstance(stream, trio.SSLStream) else stream.socket
    try:
        return str(sock.getpeername()[0])
    except OSError:  # it is gone already
        return "?"


def _server_tls(settings: LocalServerSettings) -> ssl.SSLContext:
    """The TLS context of `settings`' certificate; ConfigError naming the file if it fails."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert settings.certfile is not None
    try:
        context.load_cert_chain(settings.certfile, settings.keyfile)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            f"cannot use the TLS certificate {settings.certfile}"
            + (f" with the key {settings.keyfile}" if settings.keyfile else "")
            + f": {e}"
        ) from None
    return context


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class LocalServer:
    """A PlayAI-compatible TTS server on one TCP port, with faults and counters for tests."""

    def __init__(self, settings: LocalServerSettings | None = None) -> None:
        self.settings = settings or LocalServerSettings()
        self.faults = Faults()
        self.stats = Stats()
        self._audio = AudioEngine(self.settings.synth)
        self._tokens = auth.TokenStore(self.settings.token_lifetime, self.faults)
        self._limiter = auth.RateLimiter(self.settings.auth_rate)
        self.clients = ClientBounds(self.settings)
        # loaded here, so that a bad certificate stops `serve-local` before it listens
        self._tls = _server_tls(self.settings) if self.settings.tls else None
        self._shared = Shared(self.settings, self.faults, self.stats, self._audio)
        self._port: int | None = None

    @property
    def synth(self) -> str:
        """The synthesizer in use: "espeak" or "generated"."""
        return self._audio.synth

    @property
    def port(self) -> int:
        """The TCP port listened on; only once ``run`` has started."""
        if self._port is None:
            raise RuntimeError("the local server is not listening yet")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` (``https://`` with TLS), the API base URL; only once ``run``
        has started."""
        scheme = "https" if self.settings.tls else "http"
        return f"{scheme}://{_url_host(self.settings.host)}:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started(base_url)`` once listening.
        While it runs, espeak-ng processes are started ahead of need (EspeakSpares)."""
        async with trio.open_nursery() as nursery:
            s = self.settings
            await nursery.start(self._audio.synthesizer.run)
            if self._tls is not None:
                listeners = await nursery.start(
                    partial(
                        trio.serve_ssl_over_tcp,
                        self._handle,
                        s.port,
                        self._tls,
                        host=s.host,
                        https_compatible=True,
                    )
                )
                sock = listeners[0].transport_listener.socket
            else:
                listeners = await nursery.start(
                    partial(trio.serve_tcp, self._handle, s.port, host=s.host)
                )
                sock = listeners[0].socket
            self._port = sock.getsockname()[1]
            log.debug("local PlayAI server listening on %s (synth: %s)", self.base_url, self.synth)
            task_status.started(self.base_url)

    async def render(
        self,
        *,
        text: str,
        voice: str,
        speed: float = 1.0,
        sample_rate: int = 24000,
        output_format: str = "mp3",
        ssml: str | None = None,
    ) -> bytes:
        """Exactly the bytes a request with these parameters streams (same cached encoding);
        with `ssml` (as a command's is after its check: commands.py), that is what is said."""
        asked = Rendering(ssml or text, voice, speed, sample_rate, output_format, ssml is not None)
        audio = await self._audio.render(asked)
        return audio.data

    async def _handle(self, stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]) -> None:
        peer = _peer_address(stream)
        try:
            await serve_connection(
                stream, partial(self._on_http, peer), partial(self._on_websocket, peer)
            )
        except Exception as e:  # one connection's failure must not stop the server
            if _is_disconnect(e) or isinstance(e, ssl.SSLError):
                log.debug("a client connection ended abruptly: %r", e)
            else:
                log.exception("a client connection failed")

    async def _on_http(self, peer: str, stream: trio.abc.Stream, head: bytes) -> None:
        await serve_http(stream, head, partial(self._answer_http, peer))

    async def _answer_http(
        self, peer: str, method: str, target: str, headers: Mapping[str, str]
    ) -> auth.Reply:
        path = urlsplit(target).path
        if path == STATS_PATH:
            if method != "GET":
                return auth.Reply(405, {"error": "use GET"}, (("Allow", "GET"),))
            return auth.Reply(200, dict(self.stats.snapshot()))
        if path in auth.AUTH_PATHS and method == "POST" and self.settings.auth_delay:
            await trio.sleep(self.settings.auth_delay)
        # URLs name the host the client reached us by, as a server behind any address would.
        host = headers.get("host") or f"{_url_host(self.settings.host)}:{self.port}"
        scheme = "wss" if self.settings.tls else "ws"
        reply = auth.answer_auth(
            method,
            target,
            headers,
            settings=self.settings,
            faults=self.faults,
            tokens=self._tokens,
            limiter=self._limiter,
            ws_base=f"{scheme}://{host}",
            stats=self.stats,
            admit_client=partial(self.clients.admit_auth, peer),
        )
        log.info("%s %s -> %d", method, path, reply.status)
        return reply

    async def _on_websocket(
        self, peer: str, request: trio_websocket.WebSocketRequest, transport: trio.abc.Stream
    ) -> None:
        if self.settings.connect_delay:
            await trio.sleep(self.settings.connect_delay)
        model = model_for_path(urlsplit(request.path).path)
        status = 404 if model is None else self._tokens.check(auth.token_from_target(request.path))
        if status is not None:
            log.info("websocket handshake refused: %s (%d)", _REFUSALS[status], status)
            body = json.dumps({"error": _REFUSALS[status]}).encode()
            await request.reject(
                status, extra_headers=[(b"Content-Type", b"application/json")], body=body
            )
            return
        assert model is not None  # an unknown model was refused with 404 above
        if not self.clients.open(peer):
            limit = self.settings.client_connections
            log.info("websocket handshake refused: %d open from one client (429)", limit)
            said = {"error": f"too many websockets from this client (at most {limit})"}
            await request.reject(
                429,
                extra_headers=[(b"Content-Type", b"application/json")],
                body=json.dumps(said).encode(),
            )
            return
        try:
            await self._serve_websocket(request, transport, model, peer)
        finally:
            self.clients.close(peer)

    async def _serve_websocket(
        self,
        request: trio_websocket.WebSocketRequest,
        transport: trio.abc.Stream,
        model: Model,
        peer: str,
    ) -> None:
        ws = await request.accept()
        self.stats.connections += 1
        log.info(
            "websocket connection %d accepted: app=%s fal_jwt_token=…",
            self.stats.connections,
            model.app,
        )
        self.stats.ws_open += 1
        try:
            await Session(ws, transport, model, self._shared, self.clients.requests(peer)).run()
        finally:
            self.stats.ws_open -= 1
