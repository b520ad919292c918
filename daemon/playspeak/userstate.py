"""What a user set that outlives a restart (the volume): one small JSON file in the state
directory, written atomically, read once at start. A missing file is a first start; a bad one
is a warning and the defaults, never a crash."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from playspeak.config.files import read_text_file
from playspeak.errors import ConfigError, ProtocolError
from playspeak.jsonguard import load_json

log = logging.getLogger(__name__)

FILE_NAME = "state.json"
MAX_STATE_BYTES = 64 << 10  # a few fields; beyond this it is not our file


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """systemd's $STATE_DIRECTORY (its first entry) if set, else $XDG_STATE_HOME/playspeak,
    else ~/.local/state/playspeak."""
    env = os.environ if env is None else env
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "playspeak"


def load_state(path: Path) -> dict[str, Any]:
    """The saved state; {} when there is none, or (with a warning) when it cannot be read.
    Blocks on the file."""
    if not path.exists():
        return {}
    try:
        return dict(
            load_json(read_text_file(path, str(path), "state", MAX_STATE_BYTES), want_object=True)
        )
    except (ConfigError, ProtocolError) as e:  # unreadable, or not a JSON object
        log.warning("state file %s not used (the defaults apply): %s", path, e)
        return {}


def save_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write `state` to `path` atomically (a temp file in the same directory, fsynced, renamed
    into place): a crash leaves the old file or the new one. Blocks; raises OSError."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(dict(state), f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


class StateKeeper:
    """Saves the state `collect()` returns whenever `changed()` was called, from a worker
    thread, one write at a time; the trio side never blocks on the disk."""

    def __init__(self, path: Path, collect: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self._collect = collect
        self._changed = trio.Event()
        self._saved: dict[str, Any] | None = None

    def changed(self) -> None:
        """Trio thread: something the state holds was set."""
        self._changed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            state = self._collect()
            if state == self._saved:
                continue
            try:
                await trio.to_thread.run_sync(save_state, self.path, state)
            except OSError as e:
                log.warning("could not save the state to %s: %s", self.path, e.strerror or e)
                continue
            self._saved = state
