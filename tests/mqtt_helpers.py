"""A real Mosquitto broker on a free loopback port, and a paho probe client that records what
the daemons publish (both for tests/test_mqtt.py)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import trio
from paho.mqtt.enums import CallbackAPIVersion

from playspeak.testing.soundcard import terminate

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """``mosquitto`` with persistence in `directory`: stop() saves its sessions and retained
    messages, start() again takes them back, on the same port."""

    def __init__(self, directory: Path, extra: str = "") -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{extra or 'allow_anonymous true'}\n"
            "persistence true\n"
            f"persistence_location {directory}/\n"
            "user root\n"  # the tests' root: do not drop to a user that cannot write here
            f"log_dest file {directory}/mosquitto.log\n"
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # readiness: the port accepts
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not start: {self.log()}")

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process.pid)  # SIGTERM: it saves its database first
            self.process.wait()
            self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text() if path.exists() else ""


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        """The payload parsed, once (a flood's checks read every event many times)."""
        if not hasattr(self, "_parsed"):
            self._parsed = json.loads(self.payload)
        return self._parsed


class Probe:
    """A test client: subscribes to everything under the given filters and records it."""

    def __init__(
        self,
        port: int,
        filters: tuple[str, ...] = ("#",),
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.messages: list[Message] = []
        self._on_topic: dict[str, list[Message]] = {}
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"probe-{port}-{id(self)}", protocol=mqtt.MQTTv5
        )
        subscribed = threading.Event()

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            client.subscribe([(f, 1) for f in filters])

        def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
            subscribed.set()

        def on_message(client: Any, userdata: Any, message: Any) -> None:
            received = Message(message.topic, message.payload, message.retain)
            with self._cond:
                self.messages.append(received)
                self._on_topic.setdefault(received.topic, []).append(received)
                self._cond.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        if credentials:
            self.client.username_pw_set(*credentials)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the probe could not subscribe")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(
        self, topic: str, payload: str | bytes | dict[str, Any], retain: bool = False
    ) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return list(self._on_topic.get(topic, ()))

    def events(self, topic: str) -> list[dict[str, Any]]:
        return [m.json() for m in self.on(topic) if m.payload]

    async def wait(self, done: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Wait (in a worker thread) until `done()` is true; its value. AssertionError on
        timeout, with what was received."""

        def waiting() -> Any:
            # done() is checked at most every CHECK_EVERY, not once per message, and without
            # the lock that paho's thread needs to record the next one: a check reads all
            # that was received, so checking per message of a 10,000-message flood is
            # quadratic, and it held up paho's reading while it ran.
            deadline = time.monotonic() + timeout
            while True:
                seen = len(self.messages)  # before the check: what comes during it wakes us
                if (result := done()) or (left := deadline - time.monotonic()) <= 0:
                    return result
                with self._cond:
                    self._cond.wait_for(partial(self._more_than, seen), left)
                time.sleep(CHECK_EVERY)

        result = await trio.to_thread.run_sync(waiting, abandon_on_cancel=True)
        assert result, f"timed out; received: {[(m.topic, m.payload[:80]) for m in self.messages]}"
        return result

    def _more_than(self, seen: int) -> bool:
        return len(self.messages) > seen

    async def ended(self, topic: str, ident: str, timeout: float = 20.0) -> dict[str, Any]:
        """The terminal event of utterance `ident` on the event topic `topic`."""

        def ending() -> dict[str, Any] | None:
            for event in self.events(topic):
                if event.get("id") == ident and event["event"] in ENDINGS:
                    return event
            return None

        return await self.wait(ending, timeout)  # type: ignore[no-any-return]


ENDINGS = ("finished", "cancelled", "failed")
CHECK_EVERY = 0.005  # seconds between two checks of a Probe.wait


@contextlib.contextmanager
def probe(port: int) -> Iterator[Probe]:
    p = Probe(port)
    try:
        yield p
    finally:
        p.close()
