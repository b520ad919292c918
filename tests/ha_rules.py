"""Home Assistant's published rules for an MQTT discovery config, as a checker for the tests
(homeassistant/components/mqtt: discovery.py's TOPIC_MATCHER, each platform's schema). Home
Assistant itself cannot run here; these are the rules its loader applies, written down."""

from __future__ import annotations

import re
from typing import Any

# discovery.py: <prefix>/<component>/[<node_id>/]<object_id>/config
TOPIC_MATCHER = re.compile(
    r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config"
)
# The keys each platform's schema requires (MQTT_RO_SCHEMA: state_topic; MQTT_RW_SCHEMA and
# notify/button: command_topic; event: event_types as well)
REQUIRED = {
    "notify": ("command_topic",),
    "text": ("command_topic",),
    "button": ("command_topic",),
    "number": ("command_topic",),
    "sensor": ("state_topic",),
    "event": ("state_topic", "event_types"),
}
MAX_LENGTH_STATE_STATE = 255  # homeassistant.const


def problems(topic: str, config: dict[str, Any], prefix: str = "homeassistant") -> list[str]:
    """What Home Assistant would refuse in the discovery message `config` on `topic`."""
    found: list[str] = []
    rest = topic.removeprefix(f"{prefix}/")
    match = TOPIC_MATCHER.fullmatch(rest) if rest != topic else None
    if match is None:
        return [f"illegal discovery topic {topic!r}"]
    component = match["component"]
    if component not in REQUIRED:
        return [f"not a component we publish: {component}"]
    found += [f"{component}: {key} missing" for key in REQUIRED[component] if key not in config]
    if config.get("qos") not in (0, 1, 2):
        found.append(f"qos {config.get('qos')!r}")
    device = config.get("device") or {}
    if not (device.get("identifiers") or device.get("connections")):
        found.append("device without identifiers or connections")
    if "origin" in config and not config["origin"].get("name"):
        found.append("origin without a name")
    if "unique_id" not in config:
        found.append("no unique_id")
    if component == "sensor" and config.get("device_class") == "enum":
        options = config.get("options")
        if not options or not all(isinstance(o, str) for o in options):
            found.append("enum sensor without options")
        if "state_class" in config or "unit_of_measurement" in config:
            found.append("enum sensor with a state class or unit")
    if component == "text":
        low, high = config.get("min", 0), config.get("max", MAX_LENGTH_STATE_STATE)
        if low > high or high > MAX_LENGTH_STATE_STATE:
            found.append(f"text length {low}..{high}")
    if component == "number" and not config.get("min", 1) < config.get("max", 100):
        found.append("number min not below max")
    if component == "event" and not all(isinstance(t, str) for t in config.get("event_types", [])):
        found.append("event_types not strings")
    return found
