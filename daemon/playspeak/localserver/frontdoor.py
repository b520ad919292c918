"""One TCP port for both HTTP and websocket: read the request head, then route it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio_websocket

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0  # a client that never finishes its request head loses its connection

HttpHandler = Callable[[trio.abc.Stream, bytes], Awaitable[None]]
WebsocketHandler = Callable[[trio_websocket.WebSocketRequest, trio.abc.Stream], Awaitable[None]]


class ReplayStream(trio.abc.Stream):
    """A stream that first hands out bytes already read from ``inner``, then reads ``inner``."""

    def __init__(self, inner: trio.abc.Stream, replay: bytes) -> None:
        self._inner = inner
        self._replay = replay

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._replay:
            size = len(self._replay) if max_bytes is None else max_bytes
            data, self._replay = self._replay[:size], self._replay[size:]
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self._inner.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._inner.aclose()


async def read_head(stream: trio.abc.Stream) -> bytes | None:
    """Bytes up to and past the end of the request head, or None (EOF, too big, too slow)."""
    data = b""
    with trio.move_on_after(HEAD_TIMEOUT):
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_HEAD:
                return None
            chunk = await stream.receive_some(4096)
            if not chunk:
                return None
            data += chunk
        return data
    return None


def is_websocket_upgrade(head: bytes) -> bool:
    """Whether the request head asks for ``Upgrade: websocket``."""
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


async def serve_connection(
    stream: trio.abc.Stream, on_http: HttpHandler, on_websocket: WebsocketHandler
) -> None:
    """Route one accepted TCP connection; always closes the stream before returning."""
    try:
        head = await read_head(stream)
        if head is None:
            return
        if not is_websocket_upgrade(head):
            await on_http(stream, head)
            return
        replay = ReplayStream(stream, head)
        async with trio.open_nursery() as nursery:
            request = None
            with trio.move_on_after(HEAD_TIMEOUT):
                request = await trio_websocket.wrap_server_stream(nursery, replay)
            if request is not None:
                await on_websocket(request, replay)
            # Ends trio-websocket's reader task whatever state the connection is in.
            await trio.aclose_forcefully(replay)
    finally:
        await trio.aclose_forcefully(stream)
