"""The MQTT bridge: a node of many rooms. Say and cmd topics in, events and state out.

paho-mqtt does the protocol. It runs in its own network thread (``loop_start``), not driven
from trio's loop: that thread already owns reconnection with backoff, keepalive, QoS 1
retransmission and TLS, which an external-loop integration would make us re-implement (more
of our code, for the saving of one mostly idle thread). The hand-over is one-way and narrow:

- paho's thread → trio: ``on_message`` only copies an `Inbound` into a bounded trio channel
  (``trio.from_thread.run``); it never touches daemon state.
- trio → paho: ``publish``/``subscribe``/``ack`` (thread-safe in paho: they queue a packet)
  from the trio thread; ``on_connect`` (paho's thread) subscribes and publishes the retained
  status and discovery configs, whose payloads are built before the thread starts.

Keeping our word: a QoS 1 message is acknowledged (paho's manual acknowledgement) only once
it was acted on — queued to speak, or refused with an error event. The inbox holds
``mqtt.inbox`` messages, the Receive Maximum we ask the broker for (MQTT 5: it sends at most
that many unacknowledged), and some slack: Mosquitto 2.0.11 was seen sending two more. When it
is full all the same, ``on_message`` blocks paho's thread until there is room, so nothing is
dropped and the broker holds the rest; but that thread also reads the broker's
acknowledgements of what we publish (mqtt/backlog.py), so blocking it is the last resort.

Every message becomes a line of the control protocol and goes through the same
CommandHandler as the socket's clients, on a session of its own that is subscribed to every
utterance's events: those lines are published to ``<prefix>/<node>/event`` (QoS 1).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import trio

from playspeak.commands import CommandHandler
from playspeak.config import MqttConfig, read_secret_file
from playspeak.control import protocol as p
from playspeak.control.session import ClientSession
from playspeak.errors import PlayspeakError
from playspeak.events import Error, Message, Ok, UtteranceEvent
from playspeak.log import register_secret
from playspeak.mqtt.backlog import Backlog
from playspeak.mqtt.topics import (
    OFFLINE,
    ONLINE,
    Broker,
    Deduper,
    claimed_by,
    discovery_claim,
    discovery_id,
    group_start,
    retained_configs,
    scheduled,
    state_of,
    to_line,
    too_old,
    topics_for,
)

log = logging.getLogger(__name__)

STATE_EVERY = 2.0  # seconds between looks at the retained state (published only on change)
# While the broker is away paho keeps what we publish; bounded (mqtt/backlog.py), so that a
# long outage with much speech costs at most this many event lines of memory
QUEUED_WHILE_AWAY = 1024
INBOX_SLACK = 16  # room over the Receive Maximum before paho's thread must wait (see above)
SESSION_EXPIRY = 3600  # seconds the broker keeps our subscriptions and QoS 1 backlog
PACKET_ROOM = 4  # the broker discards (unseen) messages over this many payload limits
# Before connecting as playspeak-<node>, the bridge looks at the node's retained status under
# another client id: "online" means a daemon of that name is connected (connecting would throw
# it off, and it would throw us off in turn at its reconnect), or this one's previous run whose
# connection the broker has not yet timed out. It waits until the name is free, looking again
# this often; a status that has not come this long after subscribing means none is retained.
NAME_LOOK_EVERY = 2.0
RETAINED_WAIT = 0.5


class BrokerLink(StrEnum):
    """The bridge's connection to the broker, as `status` reports it."""

    CONNECTING = "connecting"
    NAME_TAKEN = "name taken"  # another node of this name is online: waiting for it to leave
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # lost it; paho retries with backoff


@dataclass(frozen=True)
class Inbound:
    """A message as paho's thread hands it over."""

    topic: str
    mid: int
    qos: int
    dup: bool
    retain: bool
    payload: bytes


class _EventPublisher(trio.abc.Stream):
    """The bridge session's "socket": each line written to it is published, not sent."""

    def __init__(self, publish: Callable[[bytes], None]) -> None:
        self._publish = publish

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        for line in bytes(data).splitlines():
            self._publish(line)
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep_forever()
        raise AssertionError  # unreachable

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@dataclass(frozen=True)
class _Look:
    """What a look at the broker before connecting saw (MqttBridge._look)."""

    online: bool  # the node's retained status: another daemon of this name is there
    claimed_by: str | None  # the status topic of the node holding our discovery id


class _BridgeSession(ClientSession):
    """The bridge's client session: events and errors are published as control-protocol lines;
    the "ok" replies to the messages it passes on are not. `on_end` hears every ending."""

    def __init__(self, stream: trio.abc.Stream, buffer: int, on_end: Callable[[str], None]):
        super().__init__(stream, buffer)
        self._on_end = on_end

    def send(self, message: Message) -> None:
        if isinstance(message, UtteranceEvent) and message.ends:
            self._on_end(message.id)
        if not isinstance(message, Ok):
            super().send(message)


class MqttBridge:
    def __init__(
        self,
        config: MqttConfig,
        handler: CommandHandler,
        status: Callable[[], dict[str, Any]],
        client_buffer: int,
        version: str = "",
        max_payload: int = 65536,
    ) -> None:
        self.config = config
        self.broker = Broker.parse(config.broker)
        self.topics = topics_for(config.topic_prefix, config.node, config.groups)
        self.handler = handler
        self._status = status
        self._version = version
        self.max_payload = max_payload  # bytes: the control protocol's line limit
        self._password = (
            read_secret_file(config.password_file, "mqtt.password_file")
            if config.password_file
            else ""
        )
        register_secret(self._password)
        self.dedupe = Deduper()
        self.backlog = Backlog(QUEUED_WHILE_AWAY)
        self.discovery_taken_by = ""  # the node whose discovery id ours maps to, if any
        self._overflowing = False  # an event dropped while the broker is away: warned once
        self.session = _BridgeSession(
            _EventPublisher(self._publish_line), client_buffer, self.dedupe.ended
        )
        self.connected = False  # written by paho's thread (a bool: read whole by trio)
        self.link = BrokerLink.CONNECTING  # written by trio and paho's thread, read whole
        self._last_state: bytes | None = None
        self._poke = trio.Event()  # an event went out: the state may have changed
        self._lines = 0
        self._client: Any = None

    def status(self) -> dict[str, Any]:
        return {
            "node": self.topics.node,
            "connected": self.connected,
            "state": str(self.link),
            "groups": self.topics.groups,
            "discovery_taken_by": self.discovery_taken_by,
        }

    # ---- the trio side ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect in the background and serve until cancelled; then say ``offline``."""
        import paho.mqtt.client as mqtt  # lazy: only a configured bridge pays for it

        send, recv = trio.open_memory_channel[Inbound](self.config.inbox + INBOX_SLACK)
        token = trio.lowlevel.current_trio_token()
        self._client = client = self._make_client(mqtt, send, token)
        self.handler(self.session, p.Subscribe(), 0)  # every utterance's events
        log.info(
            "MQTT: node %s, broker %s:%d%s, groups %s",
            self.topics.node,
            self.broker.host,
            self.broker.port,
            " (TLS)" if self.broker.tls else "",
            ", ".join(self.topics.groups) or "none",
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._connect_when_free, mqtt)
                nursery.start_soon(self.session.write_lines)
                nursery.start_soon(self._publish_state_changes)
                task_status.started()
                async for message in recv:
                    self.handle(message)
                    if message.qos:  # acted on: now the broker may forget it
                        client.ack(message.mid, message.qos)
        finally:
            recv.close()  # frees a paho thread blocked on a full inbox: _close joins it
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._close)

    def handle(self, message: Inbound) -> None:
        """One message from the broker: deduped, aged, parsed and acted on (or refused with an
        error event); never raises."""
        self._lines += 1
        topic, payload = message.topic, message.payload
        ident: str | None = None
        try:
            if message.retain:  # kept by the broker, sent at subscribe: not news (see subscribe)
                log.info("MQTT %s: a retained message at subscribe: ignored", topic)
                return
            if len(payload) > self.max_payload:
                self._refuse(topic, f"message of {len(payload)} bytes, over {self.max_payload}")
                return
            key = Deduper.key(topic, message.mid, payload)
            if self.dedupe.redelivered(key, message.dup):
                kind = key.split(":")[0]
                log.info("MQTT %s: a message delivered again (%s): ignored", topic, kind)
                return
            ident = key[3:] if key.startswith("id:") else None
            age = too_old(payload, time.time(), self.config.max_age)
            if age is not None:
                why = f"message is {age:.0f} s old, past its max age: not spoken"
                self._refuse(topic, why, ident)
                return
            line = to_line(self.topics.kind_of(topic), payload, self.config.speak_title)
            if self.config.group_lead and self.topics.shared(topic):
                start = group_start(payload, time.time(), self.config.group_lead)
                line = scheduled(line, start)
            command = p.parse_line(line)
            reply = self.handler(self.session, command, self._lines)
        except PlayspeakError as e:  # ProtocolError, QueueFull, ...
            self._refuse(topic, str(e), ident)
            return
        except Exception:  # a bug must cost this message, not the bridge
            log.exception("MQTT %s: internal error", topic)
            self._refuse(topic, "internal error (see the daemon's log)", ident)
            return
        log.info("MQTT %s: %s", topic, p.describe(command, reply))

    def _refuse(self, topic: str, why: str, ident: str | None = None) -> None:
        if ident is not None:  # no utterance will end it: its id is free again
            self.dedupe.ended(ident)
        log.info("MQTT %s: refused: %s", topic, why)
        self.session.send(Error(why, topic=topic))

    async def _publish_state_changes(self) -> None:
        """Publish the retained state whenever it changed: looked at after every event, and
        every STATE_EVERY seconds for what comes without one (volume set on the socket)."""
        while True:
            state = json.dumps(state_of(self._status()), sort_keys=True).encode()
            if state != self._last_state and self.connected:
                self._publish(self.topics.state, state, retain=True)
                self._last_state = state
            with trio.move_on_after(STATE_EVERY):
                await self._poke.wait()
            self._poke = trio.Event()

    def _publish_line(self, line: bytes) -> None:
        """A line of the bridge session (an event or an error: see _BridgeSession)."""
        self._publish(self.topics.event, line)
        self._poke.set()

    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Trio thread: publish at QoS 1, counted in the backlog until the broker has it."""
        if not self.backlog.has_room(self.connected):
            if not self._overflowing:
                log.warning("MQTT: %d events wait for the broker: dropping more", len(self.backlog))
            self._overflowing = True
            return
        self._overflowing = False
        self.backlog.published(self._client.publish(topic, payload, qos=1, retain=retain).mid)

    # ---- paho's thread ------------------------------------------------------------------

    async def _connect_when_free(self, mqtt: Any) -> None:
        """Connect once no other daemon of this node's name is online (NAME_LOOK_EVERY)."""
        while (
            look := await trio.to_thread.run_sync(self._look, mqtt, abandon_on_cancel=True)
        ).online:
            if self.link is not BrokerLink.NAME_TAKEN:
                self.link = BrokerLink.NAME_TAKEN
                log.error(
                    "MQTT: node %r is online at the broker already: another daemon with this "
                    "mqtt.node, or this one's previous run that the broker has not yet timed "
                    "out. Waiting until it goes offline rather than throw it off; give each "
                    "daemon its own mqtt.node",
                    self.topics.node,
                )
            await trio.sleep(NAME_LOOK_EVERY)
        if self.link is BrokerLink.NAME_TAKEN:
            log.warning("MQTT: node %r is free now: connecting", self.topics.node)
        if look.claimed_by not in (None, self.topics.status):
            # written before paho's thread starts (_connect), which only reads it
            self.discovery_taken_by = look.claimed_by.removesuffix("/status")
            log.error(
                "MQTT: Home Assistant id playspeak_%s is taken by node %s (its retained "
                "discovery config): node %r publishes no discovery configs (nor removes "
                "them), which would take over that node's entities; dots map to "
                "underscores: name the two apart",
                discovery_id(self.topics.node),
                self.discovery_taken_by,
                self.topics.node,
            )
        self._connect()

    def _client_of(self, mqtt: Any, client_id: str, **options: Any) -> Any:
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **options
        )
        if self.config.username:
            client.username_pw_set(self.config.username, self._password or None)
        if self.broker.tls:
            client.tls_set()
        return client

    def _look(self, mqtt: Any) -> _Look:
        """Worker thread: the node's retained status and the retained config holding its
        Home Assistant id, looked at under a client id of its own (bounded; a broker that
        cannot be reached: nothing seen, and the bridge's own client retries it with
        backoff)."""
        status, claim = (
            self.topics.status,
            discovery_claim(self.topics, self.config.discovery_prefix),
        )
        seen, subscribed = threading.Event(), threading.Event()
        payloads: dict[str, bytes] = {}
        look = self._client_of(mqtt, f"playspeak-{self.topics.node}-look-{os.getpid()}")

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if not reason.is_failure:
                client.subscribe([(status, 1), (claim, 1)])

        def on_subscribe(client: Any, userdata: Any, mid: Any, codes: Any, props: Any) -> None:
            subscribed.set()

        def on_message(client: Any, userdata: Any, message: Any) -> None:
            payloads[message.topic] = bytes(message.payload)
            if message.topic == status:
                seen.set()

        look.on_connect, look.on_subscribe, look.on_message = on_connect, on_subscribe, on_message
        try:
            look.connect(self.broker.host, self.broker.port, keepalive=5)
        except OSError:
            return _Look(online=False, claimed_by=None)
        look.loop_start()
        try:
            if subscribed.wait(5.0):
                seen.wait(RETAINED_WAIT)
        finally:
            look.disconnect()
            look.loop_stop()
        return _Look(payloads.get(status) == ONLINE, claimed_by(payloads.get(claim, b"")))

    def _make_client(self, mqtt: Any, send: trio.MemorySendChannel[Inbound], token: Any) -> Any:
        from paho.mqtt.subscribeoptions import SubscribeOptions

        client = self._client_of(
            mqtt,
            f"playspeak-{self.topics.node}",
            manual_ack=True,  # acknowledged once acted on: see run
        )
        client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=60)  # doubling: paho's backoff
        retained = retained_configs(
            self.topics, self.config.discovery_prefix, self._version, self.config.discovery
        )
        # A retained say would be spoken again at every subscribe (each reconnect, each
        # restart): the broker sends none; one published live is delivered once, as any other
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        subscriptions = [(t, options) for t in self.topics.subscriptions()]

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                log.warning("MQTT: the broker refused us: %s", reason)
                return
            self.connected, self.link = True, BrokerLink.CONNECTED
            log.info("MQTT: connected%s", " (session resumed)" if flags.session_present else "")
            client.subscribe(subscriptions)
            client.publish(self.topics.status, ONLINE, qos=1, retain=True)
            for topic, payload in () if self.discovery_taken_by else retained.items():
                client.publish(topic, payload, qos=1, retain=True)
            token.run_sync_soon(self._forget_state)

        def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if self.connected:
                log.warning("MQTT: lost the broker (%s); reconnecting with backoff", reason)
            self.connected, self.link = False, BrokerLink.RECONNECTING

        def on_message(client: Any, userdata: Any, message: Any) -> None:
            item = Inbound(
                message.topic,
                message.mid,
                message.qos,
                bool(message.dup),
                bool(message.retain),
                bytes(message.payload),
            )
            # blocks paho's thread while the inbox is full (an unacknowledged message that we
            # dropped would come back only at the next reconnect); the inbox closed: stopping
            with contextlib.suppress(
                trio.RunFinishedError, trio.BrokenResourceError, trio.ClosedResourceError
            ):
                trio.from_thread.run(send.send, item, trio_token=token)

        def on_publish(client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self.backlog.acknowledged, mid)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        client.on_publish = on_publish
        return client

    def _connect(self) -> None:
        """Start paho's thread, connecting (and reconnecting) in the background."""
        self._client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=max(5, round(self.config.keepalive)),
            clean_start=False,  # a persistent session: QoS 1 messages wait for us
            properties=_connect_properties(self.config.inbox, PACKET_ROOM * self.max_payload),
        )
        self._client.loop_start()

    def _forget_state(self) -> None:
        """Trio thread: (re)connected; the broker may have lost the retained state."""
        self._last_state = None
        self._poke.set()

    def _close(self) -> None:
        """Worker thread, at the end: ``offline`` (retained), then disconnect and join paho's
        thread. Bounded: with no broker there is nobody to tell."""
        client = self._client
        if client is None:
            return
        was_connected, self.connected = self.connected, False  # a goodbye, not a loss
        if was_connected:
            info = client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=1.0)
        client.disconnect()
        client.loop_stop()


def _connect_properties(receive_maximum: int, maximum_packet: int) -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY
    props.ReceiveMaximum = receive_maximum
    props.MaximumPacketSize = maximum_packet
    return props
