"""Plain HTTP on the shared port: one request per connection, parsed and answered with h11."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus

import h11
import trio

from playspeak.localserver.auth import Reply

log = logging.getLogger("playspeak.localserver")

MAX_BODY = 64 * 1024  # auth calls carry no body; anything big is not for us
Handler = Callable[[str, str, Mapping[str, str]], Awaitable[Reply]]


async def serve_http(stream: trio.abc.Stream, head: bytes, handler: Handler) -> None:
    """Answer the request whose first bytes are ``head``, then close (``Connection: close``)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BODY)
    conn.receive_data(head)
    try:
        request = await _next_event(conn, stream)
        if not isinstance(request, h11.Request):
            return
        await _drain_body(conn, stream)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        reply = await handler(
            request.method.decode("ascii"), request.target.decode("latin-1"), headers
        )
    except h11.RemoteProtocolError as e:
        reply = Reply(e.error_status_hint, {"error": f"bad request: {e}"})
    await _send_reply(conn, stream, reply)


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(bytes(await stream.receive_some(16384)))


async def _drain_body(conn: h11.Connection, stream: trio.abc.Stream) -> None:
    size = 0
    while not isinstance(event := await _next_event(conn, stream), h11.EndOfMessage):
        if isinstance(event, h11.ConnectionClosed):
            raise h11.RemoteProtocolError("connection closed mid-request", error_status_hint=400)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY:
                raise h11.RemoteProtocolError("request body too large", error_status_hint=413)


async def _send_reply(conn: h11.Connection, stream: trio.abc.Stream, reply: Reply) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = json.dumps(reply.body).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *reply.headers,
    ]
    try:
        reason = HTTPStatus(reply.status).phrase.encode()
        response = h11.Response(status_code=reply.status, headers=headers, reason=reason)
        data = conn.send(response) + (conn.send(h11.Data(data=body)) or b"")
        data += conn.send(h11.EndOfMessage()) or b""
    except h11.LocalProtocolError:
        log.debug("could not answer a broken HTTP request")
        return
    await stream.send_all(data)
