"""The local PlayAI-compatible server: listener, auth endpoints and websocket sessions."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import partial
from urllib.parse import urlsplit

import trio
import trio_websocket

from playspeak.errors import leaves
from playspeak.localserver import auth
from playspeak.localserver.audio import AudioEngine
from playspeak.localserver.frontdoor import serve_connection
from playspeak.localserver.http_api import serve_http
from playspeak.localserver.models import model_for_path
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
        """``http://host:port``, the API base URL; only once ``run`` has started."""
        return f"http://{_url_host(self.settings.host)}:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started(base_url)`` once listening.
        While it runs, espeak-ng processes are started ahead of need (EspeakSpares)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._audio.synthesizer.run)
            listeners = await nursery.start(
                partial(trio.serve_tcp, self._handle, self.settings.port, host=self.settings.host)
            )
            self._port = listeners[0].socket.getsockname()[1]
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
    ) -> bytes:
        """Exactly the bytes a request with these parameters streams (same cached encoding)."""
        audio = await self._audio.render(text, voice, speed, sample_rate, output_format)
        return audio.data

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            await serve_connection(stream, self._on_http, self._on_websocket)
        except Exception as e:  # one connection's failure must not stop the server
            if _is_disconnect(e):
                log.debug("a client connection ended abruptly: %r", e)
            else:
                log.exception("a client connection failed")

    async def _on_http(self, stream: trio.abc.Stream, head: bytes) -> None:
        await serve_http(stream, head, self._answer_http)

    async def _answer_http(
        self, method: str, target: str, headers: Mapping[str, str]
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
        reply = auth.answer_auth(
            method,
            target,
            headers,
            settings=self.settings,
            faults=self.faults,
            tokens=self._tokens,
            limiter=self._limiter,
            ws_base=f"ws://{host}",
            stats=self.stats,
        )
        log.info("%s %s -> %d", method, path, reply.status)
        return reply

    async def _on_websocket(
        self, request: trio_websocket.WebSocketRequest, transport: trio.abc.Stream
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
        ws = await request.accept()
        self.stats.connections += 1
        log.info(
            "websocket connection %d accepted: app=%s fal_jwt_token=…",
            self.stats.connections,
            model.app,
        )
        self.stats.ws_open += 1
        try:
            await Session(ws, transport, model, self._shared).run()
        finally:
            self.stats.ws_open -= 1
