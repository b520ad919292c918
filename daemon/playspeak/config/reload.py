"""What a reload (SIGHUP, `systemctl reload`) takes from a new configuration: the settings the
schema declares `Reload.LIVE`, and no other. No I/O here; Daemon.apply hands the result to the
running parts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from playspeak.config.sections import Config, entries


@dataclass(frozen=True)
class Reloaded:
    """The configuration in force after a reload, and the changed settings it left as they
    were (dotted names, as the journal says them: secrets by name only)."""

    config: Config
    need_restart: list[str]


def live_names() -> list[str]:
    """The settings a reload applies (dotted names, in the schema's order)."""
    return [e.name for e in entries() if e.live]


def reload_config(old: Config, new: Config) -> Reloaded:
    """`old` with the LIVE settings of `new`; the file named stays `old`'s."""
    taken: dict[str, dict[str, Any]] = {}
    stale: list[str] = []
    for e in entries():
        value = getattr(getattr(new, e.section), e.key)
        if value == getattr(getattr(old, e.section), e.key):
            continue
        if e.live:
            taken.setdefault(e.section, {})[e.key] = value
        else:
            stale.append(e.name)
    sections = {s: dataclasses.replace(getattr(old, s), **keys) for s, keys in taken.items()}
    return Reloaded(dataclasses.replace(old, **sections), stale)
