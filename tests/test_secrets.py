"""The API key, the user id and the websocket tokens never reach a log line or a client.

One daemon speaks through a local PlayAI-compatible server that accepts only our credentials,
while the server injects faults: an error frame, dropped connections, refused authentication and
expired tokens. Every log record (formatted as the daemon formats it) and every line any client
received (replies, events, status) is then searched for each secret.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import trio

from playspeak.config import ApiConfig, AudioConfig, Config, ControlConfig
from playspeak.daemon import Daemon, open_daemon
from playspeak.localserver import LocalServer, open_local_server
from playspeak.log import RedactingFormatter

from daemon_helpers import ENDINGS, LineClient

# Fresh per run and unlike anything else in a log, so that a hit is a leak and not a coincidence.
KEY = "sk-test-" + secrets.token_hex(16)
USER = "user-" + secrets.token_hex(8)
LONG = (
    "A long announcement, so that the audio spans many chunks and a connection can be dropped "
    "in the middle of it: the garden gate is open and the sprinklers start at six."
)


class LogWatch(logging.Handler):
    """Keeps every record, and lets a test wait for one (records may come from any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._token = trio.lowlevel.current_trio_token()
        self._arrived = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._token.run_sync_soon(self._wake)

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = trio.Event()

    async def wait_for(self, match: Callable[[str], bool], *, after: int = 0) -> None:
        """Until a record from index `after` on has a message that `match`es."""
        with trio.fail_after(30):
            while not any(match(r.getMessage()) for r in self.records[after:]):
                await self._arrived.wait()


@contextmanager
def watching_logs() -> Iterator[LogWatch]:
    watch, root = LogWatch(), logging.getLogger()
    level = root.level
    root.addHandler(watch)
    root.setLevel(logging.DEBUG)  # libraries' debug lines too: httpx, h11, trio-websocket
    try:
        yield watch
    finally:
        root.removeHandler(watch)
        root.setLevel(level)


def record_tokens(server: LocalServer) -> set[str]:
    """Every websocket token the server mints from now on (read from its token store)."""
    minted: set[str] = set()
    store = server._tokens
    mint = store.mint

    def recording() -> str:
        token = mint()
        minted.add(token)
        return token

    store.mint = recording  # type: ignore[method-assign]
    return minted


class Listener:
    """A subscribed client that keeps every line it receives."""

    def __init__(self, client: LineClient) -> None:
        self.client = client
        self.lines: list[dict] = []
        self._line = trio.Event()

    async def run(self) -> None:
        while True:
            self.lines.append(await self.client.event())
            self._line.set()
            self._line = trio.Event()

    async def ended(self, uid: str) -> str:
        """How utterance `uid` ended."""
        with trio.fail_after(30):
            while not (
                ends := [e for e in self.lines if e.get("id") == uid and e["event"] in ENDINGS]
            ):
                await self._line.wait()
        return ends[0]["event"]


async def say(client: LineClient, text: str, seen: list[dict], **fields: object) -> str:
    reply = await client.command(cmd="speak", text=text, **fields)
    seen.append(reply)
    assert reply["event"] == "ok", reply
    return reply["id"]


async def status(client: LineClient, seen: list[dict]) -> dict:
    reply = await client.command(cmd="status")
    seen.append(reply)
    return reply["status"]


def config_for(tmp_path: Path, server: LocalServer) -> Config:
    return Config(
        api=ApiConfig(url=server.base_url, api_key=KEY, user_id=USER, request_patience=2.0),
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(device=f"wav:{tmp_path}/out.wav"),
    )


async def run_with_faults(daemon: Daemon, server: LocalServer, logs: LogWatch) -> list[dict]:
    """Speak through every fault; returns every line the command client received."""
    seen: list[dict] = []
    client = await LineClient.open(daemon.socket_path)
    watcher = Listener(await LineClient.open(daemon.socket_path))
    seen.append(await watcher.client.command(cmd="subscribe"))
    faults = server.faults
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher.run)

        assert await watcher.ended(await say(client, "Hello.", seen)) == "finished"

        faults.error_on_text = "boom"  # an error frame from the service
        # `text`: not covered by the fallback voice, so these fail with their reasons
        uid = await say(client, "This goes boom.", seen, priority="text")
        assert await watcher.ended(uid) == "failed"
        faults.error_on_text = None

        faults.drop_after_bytes = 3000  # the connection dies mid-reply; the link reconnects
        assert await watcher.ended(await say(client, LONG, seen)) in ENDINGS
        await status(client, seen)

        faults.expire_tokens()  # the live connection's token is void: the next must re-auth
        faults.reject_auth = True
        faults.drop_after_bytes = 3000
        mark = len(logs.records)
        uid = await say(client, LONG, seen, priority="text")
        await logs.wait_for(lambda m: "refused the credentials" in m, after=mark)
        assert await watcher.ended(uid) in ENDINGS
        assert (await status(client, seen))["links"][0]["last_error"]

        faults.reject_auth = False  # the next retry of the link gets in with a new token
        faults.drop_after_bytes = None  # if the refused phase left it unused: not for this one
        mark = len(logs.records)
        await logs.wait_for(lambda m: "connected to" in m, after=mark)
        assert await watcher.ended(await say(client, "Back again.", seen)) == "finished"
        await status(client, seen)
        nursery.cancel_scope.cancel()
    return seen + watcher.lines


def leaks(text: str, secrets_: dict[str, set[str]]) -> list[str]:
    return [
        f"{name}: {value[:6]}…"
        for name, values in secrets_.items()
        for value in values
        if value in text
    ]


async def test_no_secret_in_any_log_line_or_client_line(tmp_path: Path) -> None:
    with watching_logs() as logs:
        async with open_local_server(
            api_key=KEY, user_id=USER, first_byte_delay=0, realtime_factor=0, synth="generated"
        ) as server:
            tokens = record_tokens(server)
            async with httpx.AsyncClient() as http:  # a token of our own, to be sure of the shape
                answer = await http.post(
                    server.base_url + "/api/v1/tts/websocket-auth",
                    headers={"Authorization": f"Bearer {KEY}", "X-User-Id": USER},
                )
            assert answer.status_code == 200
            assert any(t in answer.json()["webSocketUrls"]["Play3.0-mini"] for t in tokens)
            async with open_daemon(config_for(tmp_path, server)) as daemon:
                lines = await run_with_faults(daemon, server, logs)

    assert len(tokens) >= 3, "the daemon authenticated again after each fault"
    searched = {"API key": {KEY}, "user id": {USER}, "token": tokens}
    formatter = RedactingFormatter(journal=False)
    formatted = [formatter.format(r) for r in logs.records]
    assert not [(line, hit) for line in formatted if (hit := leaks(line, searched))]
    assert not [(line, hit) for line in lines if (hit := leaks(repr(line), searched))]
    # The search found something to search: URLs with their tokens cut out, every fault seen.
    assert any("fal_jwt_token=<redacted>" in line for line in formatted)
    reasons = [line["reason"] for line in lines if line.get("event") == "failed"]
    assert "the service said: synthesis failed (injected)" in reasons
    assert any("refused the credentials" in reason for reason in reasons), reasons
    assert any(line.get("cmd") == "status" for line in lines)


async def test_our_own_loggers_never_hold_a_secret_even_before_formatting(tmp_path: Path) -> None:
    """A handler other than ours (a test's, a user's) sees records unformatted: playspeak's own
    messages and arguments must already be clean."""
    with watching_logs() as logs:
        async with open_local_server(
            api_key=KEY, user_id=USER, first_byte_delay=0, realtime_factor=0, synth="generated"
        ) as server:
            tokens = record_tokens(server)
            async with open_daemon(config_for(tmp_path, server)) as daemon:
                await run_with_faults(daemon, server, logs)
    searched = {"API key": {KEY}, "user id": {USER}, "token": tokens}
    ours = [r for r in logs.records if r.name.split(".")[0] == "playspeak"]
    assert ours
    raw = [f"{r.name}: {r.getMessage()}" for r in ours]
    assert not [(line, hit) for line in raw if (hit := leaks(line, searched))]
