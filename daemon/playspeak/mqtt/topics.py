"""The MQTT bridge's core, free of I/O: topic names, payloads to control-protocol lines,
redelivery dedupe, message age, the retained state and Home Assistant's discovery configs.

Topic names are contracts (checks outside the project use them):
``<prefix>/<node>/say``, ``<prefix>/group/<group>/say``, ``<prefix>/all/say``,
``<prefix>/<node>/cmd``, ``<prefix>/<node>/event``, ``<prefix>/<node>/status`` (retained
``online``/``offline``) and ``<prefix>/<node>/state`` (retained JSON).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from playspeak.errors import BadJsonError, ConfigError, ProtocolError
from playspeak.jsonguard import NESTED, load_json

ONLINE, OFFLINE = b"online", b"offline"
RESERVED_NODES = ("group", "all")  # they name the shared topics
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # no MQTT wildcards or levels in a name
SAY_FIELDS_CMD = "speak"
CMD_VERBS = ("stop", "skip", "cancel", "pause", "resume", "volume", "status", "ping")
BUTTONS = ("stop", "skip", "pause", "resume")  # Home Assistant buttons: bare verbs to cmd
TEXT_MAX = 255  # Home Assistant's longest text entity value
# Every event the node's event topic carries: the options of Home Assistant's event entity
EVENT_TYPES = (
    *("queued", "started", "paused", "resumed", "finished", "cancelled", "failed"),
    *("error", "device", "mark"),
)
_DISCOVERY_ID = re.compile(r"^[A-Za-z0-9_-]+$")  # Home Assistant's node_id and object_id


class NodeState(StrEnum):
    """What the retained state says a node does (the options of its enum sensor)."""

    IDLE = "idle"
    SPEAKING = "speaking"
    PAUSED = "paused"


def check_name(kind: str, name: str) -> str:
    """`name` if it can be one level of a topic (letters, digits, ``_ . -``); else ConfigError."""
    if not _NAME.match(name):
        raise ConfigError(f"mqtt.{kind} {name!r}: use 1-64 letters, digits, '_', '.' or '-'")
    return name


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Broker:
        """``mqtt://host[:port]`` or ``mqtts://host[:port]``; ConfigError otherwise."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"mqtt.broker {url!r}: use mqtt://host:1883 or mqtts://host:8883")
        if parts.username or parts.password:
            raise ConfigError("mqtt.broker: give the user as mqtt.username, the password in a file")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ConfigError(f"mqtt.broker {url!r}: bad port") from None
        return cls(parts.hostname, port, tls)


def discovery_id(node: str) -> str:
    """The node's id in Home Assistant's discovery topics and unique ids, which take only
    ``[A-Za-z0-9_-]``: a node name's dots become underscores (``living.room`` →
    ``living_room``). Two nodes whose names map alike (``a.b`` and ``a_b``) would share their
    entities: name them apart."""
    uid = node.replace(".", "_")
    if not _DISCOVERY_ID.match(uid):
        raise ConfigError(f"mqtt.node {node!r} cannot be a Home Assistant discovery id")
    return uid


def check_config(broker: str, prefix: str, node: str, groups: Iterable[str]) -> None:
    """ConfigError naming the first thing wrong in a configured [mqtt] section."""
    if broker:
        Broker.parse(broker)
        topics_for(prefix, node, groups)


def topics_for(prefix: str, node: str, groups: Iterable[str]) -> Topics:
    """The topics of the node that [mqtt] configures: its prefix, its name (empty: the host's)
    and its groups."""
    return Topics(prefix, node or socket.gethostname().split(".")[0], tuple(groups))


@dataclass(frozen=True)
class Topics:
    prefix: str
    node: str
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_name("node", self.node)
        if self.node in RESERVED_NODES:
            raise ConfigError(f"mqtt.node may not be {self.node!r}: it names a shared topic")
        for group in self.groups:
            check_name("groups", group)
        if not self.prefix or any(c in self.prefix for c in "+#") or self.prefix.endswith("/"):
            raise ConfigError(f"mqtt.topic_prefix {self.prefix!r} is not a topic prefix")

    @property
    def say(self) -> str:
        return f"{self.prefix}/{self.node}/say"

    @property
    def cmd(self) -> str:
        return f"{self.prefix}/{self.node}/cmd"

    @property
    def event(self) -> str:
        return f"{self.prefix}/{self.node}/event"

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.node}/status"

    @property
    def state(self) -> str:
        return f"{self.prefix}/{self.node}/state"

    def group_say(self, group: str) -> str:
        return f"{self.prefix}/group/{group}/say"

    @property
    def all_say(self) -> str:
        return f"{self.prefix}/all/say"

    def subscriptions(self) -> list[str]:
        """Every topic this node takes commands from."""
        return [self.say, *(self.group_say(g) for g in self.groups), self.all_say, self.cmd]

    def shared(self, topic: str) -> bool:
        """A say topic other nodes take too (a group's, or all's): rooms start it together."""
        return topic == self.all_say or topic in map(self.group_say, self.groups)

    def kind_of(self, topic: str) -> str:
        """``"say"`` or ``"cmd"`` for a topic of ours; ProtocolError for any other."""
        if topic == self.cmd:
            return "cmd"
        if topic in (self.say, self.all_say) or topic in map(self.group_say, self.groups):
            return "say"
        raise ProtocolError(f"not a topic of this node: {topic}")


def to_line(kind: str, payload: bytes, speak_title: bool = True) -> str:
    """An MQTT message as the control protocol's line. A say topic takes plain text, or a JSON
    object with ``text`` and the other speak fields (``cmd`` may be left out; a ``title`` is
    spoken before the text unless `speak_title` is off); anything else starting with ``{`` is
    text too ("{braces} are fine"), except JSON too deeply nested to read. The cmd topic takes
    a JSON command or a bare verb. ProtocolError names what is wrong."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"invalid UTF-8 at byte {e.start}") from None
    text = text.strip()
    if not text:
        raise ProtocolError("empty message")
    if kind == "cmd":
        return _cmd_line(text)
    obj = _say_fields(text)
    if obj is None:
        return _text_line(text)
    cmd = obj.setdefault("cmd", SAY_FIELDS_CMD)
    if cmd != SAY_FIELDS_CMD:
        raise ProtocolError(f"a say topic takes speak messages, not {cmd!r}")
    title = obj.pop("title", None)
    if speak_title and isinstance(title, str) and title.strip() and isinstance(obj["text"], str):
        obj["text"] = f"{title.strip().rstrip('.')}. {obj['text']}"
    return _without_mqtt_fields(obj)


def scheduled(line: str, at: float) -> str:
    """A say's control line (to_line's) given a scheduled start `at` unless it has one."""
    obj = json.loads(line) if line.startswith("{") else {"cmd": SAY_FIELDS_CMD, "text": line}
    obj.setdefault("at", at)
    return json.dumps(obj, ensure_ascii=False)


def _say_fields(text: str) -> dict[str, Any] | None:
    """A say payload's JSON object, when it is one with ``text`` (or a ``cmd``, refused as a
    command sent to the wrong topic); None when it is text."""
    if not text.startswith("{"):
        return None
    try:
        obj = load_json(text)
    except BadJsonError as e:
        if str(e) == NESTED:  # JSON we cannot read, not words: refused
            raise
        return None
    return obj if isinstance(obj, dict) and ("text" in obj or "cmd" in obj) else None


def _text_line(text: str) -> str:
    if "\n" in text or "\r" in text or text.startswith("{"):
        # one message is one utterance, whatever its lines, and text is never taken for a
        # command (the socket's protocol is line-based: JSON keeps both inside the text)
        return json.dumps({"cmd": SAY_FIELDS_CMD, "text": text}, ensure_ascii=False)
    return text


def _cmd_line(text: str) -> str:
    if not text.startswith("{"):
        if text in CMD_VERBS:  # a bare verb: what a button in a dashboard sends
            return json.dumps({"cmd": text})
        raise ProtocolError(f"the cmd topic takes JSON or one of {', '.join(CMD_VERBS)}")
    obj = load_json(text)
    if not isinstance(obj, dict):
        raise ProtocolError("a JSON message must be an object")
    if obj.get("cmd") not in CMD_VERBS:
        raise ProtocolError(f"cmd must be one of {', '.join(CMD_VERBS)}")
    return _without_mqtt_fields(obj)


def _without_mqtt_fields(obj: dict[str, Any]) -> str:
    for key in ("t", "max_age"):  # MQTT's own fields, not the control protocol's
        obj.pop(key, None)
    return json.dumps(obj, ensure_ascii=False)


def too_old(payload: bytes, now: float, default_max_age: float) -> float | None:
    """How old a JSON message stamped with ``"t"`` (Unix seconds when it was published) is, if
    older than its ``"max_age"`` (else `default_max_age`); None when it may be spoken.

    A message without a stamp has no age we could know (MQTT 3 carries none); the publisher
    can bound it with MQTT 5's message expiry instead, which the broker enforces."""
    obj = _object_of(payload)
    sent = _stamp(obj)
    if obj is None or sent is None:
        return None
    limit = obj.get("max_age", default_max_age)
    if not isinstance(limit, (int, float)):
        return None
    age = now - sent
    return age if limit > 0 and age > limit else None


def group_start(payload: bytes, now: float, lead: float) -> float:
    """The scheduled start (Unix seconds) of a say for many rooms that has no ``"at"``: `lead`
    after its stamp ``"t"`` while that is fresher than the lead (every room then gets the very
    same instant), else `lead` after `now`, its arrival (a message that waited on the broker)."""
    sent = _stamp(_object_of(payload))
    base = sent if sent is not None and 0 <= now - sent < lead else now
    return base + lead


def _stamp(obj: dict[str, Any] | None) -> float | None:
    """A JSON message's ``"t"``, when it is a number."""
    sent = None if obj is None else obj.get("t")
    if not isinstance(sent, (int, float)) or isinstance(sent, bool):
        return None
    return float(sent)


def _object_of(payload: bytes) -> dict[str, Any] | None:
    """A JSON object's payload as a dict; None for anything else (to_line reports what)."""
    if not payload.lstrip().startswith(b"{"):
        return None
    try:
        return load_json(payload, want_object=True)
    except BadJsonError:
        return None


class Deduper:
    """Tells a redelivery from a new message, among the last `size` messages. The key is the
    utterance ``id`` when the message gives one, else the topic, the MQTT packet id and a digest
    of the payload.

    A redelivery is a message seen before that carries MQTT's DUP flag (the broker sends it
    again because our acknowledgement was lost), or whose id names an utterance still pending
    (queued or speaking). Once that utterance ended its id is free: a doorbell automation with
    a fixed id speaks at every ring."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._seen: OrderedDict[str, bool] = OrderedDict()  # key → its utterance is pending

    @staticmethod
    def key(topic: str, mid: int, payload: bytes) -> str:
        ident = (_object_of(payload) or {}).get("id")
        if isinstance(ident, str) and ident:
            return f"id:{ident}"
        digest = hashlib.blake2b(payload, digest_size=12).hexdigest()
        return f"mid:{topic}:{mid}:{digest}"

    def redelivered(self, key: str, dup: bool) -> bool:
        """Whether the message with `key` is one already acted on; else it is remembered (as
        pending while its utterance has not ended, for an id key)."""
        pending = self._seen.get(key)
        if pending is not None and (dup or pending):
            self._seen.move_to_end(key)
            return True
        self._seen[key] = key.startswith("id:")
        self._seen.move_to_end(key)
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return False

    def ended(self, ident: str) -> None:
        """The utterance `ident` ended (or its message was refused): the id may be used again."""
        key = f"id:{ident}"
        if key in self._seen:
            self._seen[key] = False


def state_of(status: dict[str, Any]) -> dict[str, Any]:
    """The retained state, from the daemon's `status` reply: what speaks, how many wait."""
    speaking = (status.get("speaking") or {}).get("id")
    waiting = [i for i in status.get("in_flight", []) if i != speaking]
    waiting += [u.get("id") for u in status.get("queue", [])]
    links = status.get("links") or [{}]
    return {
        "state": (
            NodeState.PAUSED
            if status.get("paused")
            else NodeState.SPEAKING
            if speaking
            else NodeState.IDLE
        ).value,
        "speaking": speaking,
        "queue": len(waiting),
        "volume": status.get("volume"),
        "link": links[0].get("state", "unknown"),
    }


def discovery(topics: Topics, discovery_prefix: str, version: str) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery configs (retained) by topic, for a device per node: a
    ``notify`` and a ``text`` entity that publish to the node's say topic, buttons for stop,
    skip, pause and resume and a volume ``number`` that publish to its cmd topic, a state
    ``sensor`` (an enum) and an ``event`` entity fed by its event topic. Every one at QoS 1,
    so that what Home Assistant sends while a node is away waits for it on the broker."""
    uid = f"playspeak_{discovery_id(topics.node)}"
    common = {
        "device": {
            "identifiers": [uid],
            "name": f"playspeak {topics.node}",
            "manufacturer": "playspeak",
            "model": "speech daemon",
            "sw_version": version,
        },
        "origin": {"name": "playspeak", "sw_version": version},
        "availability_topic": topics.status,
        "payload_available": ONLINE.decode(),
        "payload_not_available": OFFLINE.decode(),
        "qos": 1,
    }

    def entity(component: str, object_id: str, name: str, **fields: Any) -> tuple[str, dict]:
        topic = f"{discovery_prefix}/{component}/{uid}/{object_id}/config"
        return topic, {**common, "name": name, "unique_id": f"{uid}_{object_id}", **fields}

    entities = [
        entity("notify", "say", "Say", command_topic=topics.say),
        entity(
            "text", "speak", "Speak", command_topic=topics.say, mode="text", max=TEXT_MAX, min=1
        ),
        entity(
            "sensor",
            "state",
            "State",
            state_topic=topics.state,
            value_template="{{ value_json.state }}",
            json_attributes_topic=topics.state,
            device_class="enum",
            options=[s.value for s in NodeState],
            icon="mdi:account-voice",
        ),
        entity(
            "number",
            "volume",
            "Volume",
            command_topic=topics.cmd,
            command_template='{"cmd": "volume", "level": {{ value }}}',
            state_topic=topics.state,
            value_template="{{ value_json.volume }}",
            min=0,
            max=100,
            step=1,
            unit_of_measurement="%",
            mode="slider",
        ),
        entity(
            "event",
            "events",
            "Speech",
            state_topic=topics.event,
            # our events name themselves "event"; Home Assistant wants "event_type"
            value_template="{{ dict(value_json, event_type=value_json.event) | to_json }}",
            event_types=list(EVENT_TYPES),
        ),
        *(
            entity("button", verb, verb.capitalize(), command_topic=topics.cmd, payload_press=verb)
            for verb in BUTTONS
        ),
    ]
    return dict(entities)


def discovery_claim(topics: Topics, discovery_prefix: str) -> str:
    """The retained config that tells which node holds this node's Home Assistant id: its
    state sensor's (every node publishes one while discovery is on)."""
    return f"{discovery_prefix}/sensor/playspeak_{discovery_id(topics.node)}/state/config"


def claimed_by(payload: bytes) -> str | None:
    """The availability (status) topic of the node a retained discovery config belongs to;
    None for an empty (removed) or unreadable one. No I/O."""
    if not payload:
        return None
    try:
        config = load_json(payload, want_object=True)
    except BadJsonError:
        return None
    topic = config.get("availability_topic")
    return topic if isinstance(topic, str) else None


def retained_configs(
    topics: Topics, discovery_prefix: str, version: str, enabled: bool
) -> dict[str, bytes]:
    """What to publish (retained) under the discovery prefix at each connect: the configs, or
    with discovery off, empty payloads, which make Home Assistant remove the entities."""
    configs = discovery(topics, discovery_prefix, version)
    if not enabled:
        return dict.fromkeys(configs, b"")
    return {topic: json.dumps(config).encode() for topic, config in configs.items()}
