"""Client library for the control socket: `Client` for trio code, `BlockingClient` for scripts.

Both speak the line protocol: send one JSON command, read one reply, then events. Importing
this module costs less than the standard library's `socket` and `json` modules (they bring
enum, selectors and re, all imported before a script's `playspeak say` could send its line:
docs/benchmarks.md, "Client start-up"). A
command is encoded without `json`, which is imported to read the first reply; trio is imported
when a `Client` connects, so `BlockingClient` (and the `playspeak` client verbs) never load it.
"""

from __future__ import annotations

import _socket  # the socket type itself: the `socket` module wraps it in enums
import os

from playspeak.errors import PlayspeakError
from playspeak.sockdir import check_client_socket, socket_path_from_env

# not typing's: importing typing slows every client verb (docs/benchmarks.md, "Client start-up")
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import trio

ENDINGS = ("finished", "cancelled", "failed")


class ClientError(PlayspeakError):
    """The daemon answered with an error, or could not be reached."""


try:  # json.dumps's own string encoder (ensure_ascii), without the json package
    from _json import encode_basestring_ascii as _json_string
except ImportError:  # an interpreter without CPython's accelerator
    from json.encoder import encode_basestring_ascii as _json_string


def _command(cmd: str, **fields: Any) -> bytes:
    """One command line, byte for byte `json.dumps` of it (None fields left out)."""
    body = {"cmd": cmd, **{k: v for k, v in fields.items() if v is not None}}
    members = ", ".join(f"{_json_string(k)}: {_json_value(v)}" for k, v in body.items())
    return ("{" + members + "}\n").encode("utf-8")


def _json_value(value: Any) -> str:
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    import json  # lists and objects, which none of our verbs sends

    return json.dumps(value)


def _decode(line: bytes) -> dict[str, Any]:
    import json  # here, not above: a command's line has gone out by the time one is read

    return json.loads(line)


class _Lines:
    """Splits the bytes a connection received into lines."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def take(self) -> bytes | None:
        """The next complete line without its newline; None until one is complete."""
        end = self._buffer.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line


def _unreachable(path: str, e: OSError) -> ClientError:
    if isinstance(e, PermissionError):
        return ClientError(f"cannot reach the playspeak daemon at {path}: {_denied(path)}")
    return ClientError(
        f"cannot reach the playspeak daemon at {path}: {e.strerror or e}. "
        "Is it running (`playspeak run`)? Set PLAYSPEAK_SOCKET if it listens elsewhere."
    )


def _denied(path: str) -> str:
    """What to do about a socket this user may not connect to: join the group of the socket,
    or of the nearest directory on its way that this user can see but not enter."""
    import grp

    target = path
    while True:
        try:
            gid = os.stat(target).st_gid
            break
        except OSError:
            if target == (parent := os.path.dirname(target)):
                return "permission denied"
            target = parent
    try:
        group = grp.getgrgid(gid)
    except KeyError:
        return f"permission denied (group id {gid})"
    # joined already, but not in this session's groups: the same advice
    return (
        f"permission denied: {target} is for group {group.gr_name}; join it with "
        f"`sudo usermod -aG {group.gr_name} $USER`, then log in again"
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
        self._sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except OSError as e:
            self._sock.close()
            raise _unreachable(self.path, e) from None
        self._lines = _Lines()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def next_event(self) -> dict[str, Any]:
        while (line := self._lines.take()) is None:
            data = self._sock.recv(65536)
            if not data:
                raise ClientError("the daemon closed the connection")
            self._lines.feed(data)
        return _decode(line)

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
        self._lines = _Lines()

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
        while (line := self._lines.take()) is None:
            data = await self._stream.receive_some(65536)
            if not data:
                raise ClientError("the daemon closed the connection")
            self._lines.feed(data)
        return _decode(line)

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
