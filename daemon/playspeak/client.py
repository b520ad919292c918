"""Client library for the control socket: `Client` for trio code, `BlockingClient` for scripts.

Both speak the line protocol: send one JSON command, read one reply, then events. Importing
this module costs no more than the standard library's sockets: trio is imported when a `Client`
connects, so `BlockingClient` (and the `playspeak` client verbs) never load it.
"""

from __future__ import annotations

import json
import os
import socket

from playspeak.errors import PlayspeakError
from playspeak.sockdir import check_client_socket, socket_path_from_env

TYPE_CHECKING = False  # not typing's: importing typing alone takes ~4 ms
if TYPE_CHECKING:
    from typing import Any

    import trio

ENDINGS = ("finished", "cancelled", "failed")


class ClientError(PlayspeakError):
    """The daemon answered with an error, or could not be reached."""


def _command(cmd: str, **fields: Any) -> bytes:
    body = {"cmd": cmd, **{k: v for k, v in fields.items() if v is not None}}
    return (json.dumps(body) + "\n").encode("utf-8")


def _unreachable(path: str, e: OSError) -> ClientError:
    return ClientError(
        f"cannot reach the playspeak daemon at {path}: {e.strerror or e}. "
        "Is it running (`playspeak run`)? Set PLAYSPEAK_SOCKET if it listens elsewhere."
    )


def _check(reply: dict[str, Any]) -> dict[str, Any]:
    if reply.get("event") == "error":
        raise ClientError(reply.get("error", "error"))
    return reply


class BlockingClient:
    """A plain-socket client for scripts. Not thread-safe; use one per thread."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, timeout: float | None = None
    ) -> None:
        self.path = os.fspath(path) if path else socket_path_from_env()
        check_client_socket(self.path)  # ConfigError: the fallback directory is not ours alone
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except OSError as e:
            self._sock.close()
            raise _unreachable(self.path, e) from None
        self._file = self._sock.makefile("rb")

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def next_event(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise ClientError("the daemon closed the connection")
        return json.loads(line)

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send a command; return its reply (raises ClientError on an error reply)."""
        self._sock.sendall(_command(cmd, **fields))
        return _check(self.next_event())

    def say(self, text: str, *, wait: bool = False, **fields: Any) -> dict[str, Any]:
        """Queue `text`. With wait, return its ending event (finished, cancelled or failed)."""
        reply = self.request("speak", text=text, **fields)
        if not wait:
            return reply
        return self.wait_for(reply["id"])

    def wait_for(self, utterance_id: str) -> dict[str, Any]:
        while True:
            event = self.next_event()
            if event.get("id") == utterance_id and event.get("event") in ENDINGS:
                return event


class Client:
    """A trio client. Use `async with await Client.connect(path) as c:`."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    @classmethod
    async def connect(cls, path: str | os.PathLike[str] | None = None) -> Client:
        import trio

        path = os.fspath(path) if path else socket_path_from_env()
        check_client_socket(path)  # ConfigError: the fallback directory is not ours alone
        try:
            stream = await trio.open_unix_socket(path)
        except OSError as e:
            raise _unreachable(path, e) from None
        return cls(stream)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def send_line(self, line: bytes) -> None:
        await self._stream.send_all(line)

    async def next_event(self) -> dict[str, Any]:
        while (end := self._buffer.find(b"\n")) < 0:
            data = await self._stream.receive_some(65536)
            if not data:
                raise ClientError("the daemon closed the connection")
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return json.loads(line)

    async def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        await self._stream.send_all(_command(cmd, **fields))
        return _check(await self.next_event())

    async def say(self, text: str, *, wait: bool = False, **fields: Any) -> dict[str, Any]:
        reply = await self.request("speak", text=text, **fields)
        return await self.wait_for(reply["id"]) if wait else reply

    async def wait_for(self, utterance_id: str) -> dict[str, Any]:
        while True:
            event = await self.next_event()
            if event.get("id") == utterance_id and event.get("event") in ENDINGS:
                return event
