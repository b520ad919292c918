"""Service economy: what a day of speech costs a rate-limited TTS service.

    .venv/bin/python -m bench.service [--utterances 200] [--idle-timeout 3] [--interrupt both]

Runs `serve-local --realistic` in this process (auth 0.25 s, connect 0.15 s, 10 auths a
minute then 429 with Retry-After, auth answered 201, typed error frames) and the daemon
(open_daemon) against it, with the server's idle timeout shortened by `--idle-timeout` (30 s
realistic) so that a run is quick; the daemon's `link.idle_close` is then two thirds of it
(20 s of 30 s by default). Through the real control socket it speaks `--utterances` texts in
order: every second one is interrupted (`stop`) as soon as it has started, while its reply
still streams; in the middle the client says nothing for the idle timeout plus two seconds.

It prints, per interruption strategy (`speech.interrupt_reconnect` true: reopen the websocket
with the kept URL; false: drain the unwanted reply on the same one): the server's counters
(auth requests, 429s, websocket connections, idle closes), lost utterances (anything but
`finished` for a plain one or `cancelled` for an interrupted one, or not exactly one terminal
event), and the first-sound latency from text: `speak` sent → its `started` event.

Audio goes to a WAV file (`wav:` device), not the sound card: the file takes audio as fast as
it comes, so `started` is the moment the first PCM is written (no device latency) and an
utterance ends when its reply has arrived. The latencies are therefore the service path
(auth, connect, first byte, decode, pre-roll hold), which is what this bench compares.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench.report import fmt, p50, p95, table
from playspeak.config import (
    ApiConfig,
    AudioConfig,
    CacheConfig,
    Config,
    ControlConfig,
    FallbackConfig,
    LinkConfig,
    LogConfig,
    SpeechConfig,
)
from playspeak.localserver import LocalServerSettings, open_local_server

KEY, USER = "bench-key-0123456789", "bench-user"
SHORT = "The kettle has boiled."  # spoken whole
LONG = (  # interrupted: streams for a few seconds at 3x real time
    "This weather report goes on and on about the clouds over the hills, the rain that will "
    "come tonight, and the wind from the north that follows it tomorrow morning, and then "
    "about the temperatures of every valley in the county, one after the other."
)


@dataclass
class Run:
    """One strategy's figures."""

    strategy: str
    warm: list[float] = field(default_factory=list)  # seconds, speak → started
    after_interrupt: list[float] = field(default_factory=list)  # the one after each stop
    cold: list[float] = field(default_factory=list)  # first at start, first after idle
    lost: list[str] = field(default_factory=list)
    server: dict[str, int] = field(default_factory=dict)
    link: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class Speaker:
    """One control-socket client: sends commands, records every event line by utterance."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.changed = trio.Event()
        self.replies: trio.MemorySendChannel[dict[str, Any]]
        self.replies, self._replies = trio.open_memory_channel[dict[str, Any]](16)

    async def read(self) -> None:
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return
            self.buffer += data
            while (end := self.buffer.find(b"\n")) >= 0:
                line = json.loads(bytes(self.buffer[:end]))
                del self.buffer[: end + 1]
                name = line.get("event")
                if name in ("queued", "started", "finished", "cancelled", "failed", "paused"):
                    self.events.setdefault(str(line.get("id")), []).append(
                        {**line, "at": time.monotonic()}
                    )
                    self.changed.set()
                    self.changed = trio.Event()
                else:  # the reply to a command
                    await self.replies.send(line)

    async def command(self, **fields: Any) -> dict[str, Any]:
        await self.stream.send_all((json.dumps(fields) + "\n").encode())
        reply = await self._replies.receive()
        if reply.get("event") == "error":
            raise RuntimeError(f"the daemon refused {fields}: {reply}")
        return reply

    async def until(self, ident: str, names: tuple[str, ...]) -> dict[str, Any]:
        while True:
            for event in self.events.get(ident, ()):
                if event["event"] in names:
                    return event
            await self.changed.wait()


async def run_strategy(args: argparse.Namespace, reconnect: bool) -> Run:
    result = Run("reconnect (kept URL)" if reconnect else "drain")
    settings = LocalServerSettings.realistic(
        api_key=KEY, user_id=USER, idle_timeout=args.idle_timeout, synth="generated"
    )
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        async with open_local_server(settings) as server:
            config = Config(
                api=ApiConfig(url=server.base_url, api_key=KEY, user_id=USER),
                link=LinkConfig(idle_close=args.idle_timeout * 2 / 3),
                control=ControlConfig(socket=str(Path(tmp) / "playspeak.sock")),
                audio=AudioConfig(device=f"wav:{tmp}/out.wav"),
                speech=SpeechConfig(interrupt_reconnect=reconnect),
                # every utterance goes to the service: the phrase cache would answer the
                # repeated texts itself, and the fallback voice would hide a lost one
                cache=CacheConfig(enabled=False),
                fallback=FallbackConfig(enabled=False),
                log=LogConfig(level="warning"),
            )
            from playspeak.daemon import open_daemon

            began = time.monotonic()
            async with open_daemon(config) as daemon, trio.open_nursery() as nursery:
                stream = await trio.open_unix_socket(str(daemon.socket_path))
                speaker = Speaker(stream)
                nursery.start_soon(speaker.read)
                await speak_all(args, speaker, result)
                result.link = daemon.links.status()[0]
                nursery.cancel_scope.cancel()
            result.seconds = time.monotonic() - began
            result.server = server.stats.snapshot()
    return result


async def speak_all(args: argparse.Namespace, speaker: Speaker, result: Run) -> None:
    n = args.utterances
    pause_before = n // 2 + (n // 2) % 2  # an even index: a plain utterance after the gap
    interrupted_before = False
    for i in range(n):
        cold = i == 0
        if i == pause_before:
            await trio.sleep(args.idle_timeout + 2)  # the link closes, so would the service
            cold = True
        interrupt = i % 2 == 1
        sent = time.monotonic()
        ident = (await speaker.command(cmd="speak", text=LONG if interrupt else SHORT))["id"]
        first = await speaker.until(ident, ("started", "finished", "cancelled", "failed"))
        latency = first["at"] - sent
        if first["event"] == "started":
            (
                result.cold
                if cold
                else result.after_interrupt
                if interrupted_before
                else result.warm
            ).append(latency)
        if interrupt and first["event"] == "started":
            await speaker.command(cmd="stop")
        end = await speaker.until(ident, ("finished", "cancelled", "failed"))
        expected = "cancelled" if interrupt else "finished"
        await trio.sleep(0.05)  # a second terminal event would have come by now
        terminal = [
            e for e in speaker.events[ident] if e["event"] in ("finished", "cancelled", "failed")
        ]
        if end["event"] != expected or len(terminal) != 1:
            result.lost.append(f"{ident}: {[e['event'] for e in terminal]} {end.get('reason')}")
        interrupted_before = interrupt


def report(runs: list[Run], args: argparse.Namespace) -> str:
    header = ["", *(r.strategy for r in runs)]

    def row(name: str, value: Any) -> list[str]:
        return [name, *(str(value(r)) for r in runs)]

    def ms(values: list[float]) -> str:
        return f"{fmt(p50(values) * 1000, 0)} / {fmt(p95(values) * 1000, 0)} ms (n={len(values)})"

    rows = [
        row("auth requests (server)", lambda r: r.server["auth_requests"]),
        row(
            "refused auths / 429s",
            lambda r: f"{r.server['auth_refused']} / {r.server['auth_rate_limited']}",
        ),
        row("websocket connections", lambda r: r.server["ws_connections"]),
        row("closed idle by the server", lambda r: r.server["ws_idle_closed"]),
        row("TTS requests", lambda r: r.server["tts_requests"]),
        row("lost utterances", lambda r: len(r.lost)),
        row("first sound, warm p50 / p95", lambda r: ms(r.warm)),
        row("first sound after an interruption", lambda r: ms(r.after_interrupt)),
        row(
            "first sound, cold (start, after idle)",
            lambda r: " / ".join(f"{v * 1000:.0f}" for v in r.cold) + " ms",
        ),
        row("link state at the end", lambda r: r.link.get("state")),
        row("run time", lambda r: f"{r.seconds:.0f} s"),
    ]
    head = (
        f"{args.utterances} utterances, every second one stopped once started, an idle pause of "
        f"{args.idle_timeout + 2:g} s in the middle; serve-local --realistic with idle timeout "
        f"{args.idle_timeout:g} s, link.idle_close {args.idle_timeout * 2 / 3:g} s"
    )
    return head + "\n\n" + table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.service", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=3.0,
        help="the server's idle timeout in seconds (realistic: 30)",
    )
    parser.add_argument("--interrupt", choices=("both", "reconnect", "drain"), default="both")
    args = parser.parse_args(argv)
    strategies = {"both": (True, False), "reconnect": (True,), "drain": (False,)}[args.interrupt]
    runs = [trio.run(run_strategy, args, s) for s in strategies]
    print(report(runs, args))
    for r in runs:
        for line in r.lost:
            print(f"lost ({r.strategy}): {line}", file=sys.stderr)
    return 1 if any(r.lost for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
