"""What the daemon's parts are doing, typed, for decisions made outside them (systemd.py's
READY=1, WATCHDOG=1 and STATUS=). The daemon builds one snapshot from its parts' enum states, so
that a renamed state is a type error, not a watchdog that silently stops. I/O-free."""

from __future__ import annotations

from dataclasses import dataclass

from playspeak.audio.devicestate import DeviceState
from playspeak.playai.linkstate import LinkState


@dataclass(frozen=True)
class LinkHealth:
    state: LinkState
    last_error: str = ""
    model: str = ""


@dataclass(frozen=True)
class DeviceHealth:
    state: DeviceState = DeviceState.OPEN
    running: bool = True  # the stream takes audio (a file always does)
    error: str = ""


@dataclass(frozen=True)
class Health:
    links: tuple[LinkHealth, ...] = ()  # one per model started
    device: DeviceHealth = DeviceHealth()
    speaking: str | None = None  # the id of the utterance being heard
    queued: int = 0
    paused: bool = False
