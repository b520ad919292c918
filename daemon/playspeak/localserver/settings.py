"""Settings, runtime fault switches and counters of the local PlayAI-compatible server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import trio

SynthMode = Literal["auto", "espeak", "generated"]


@dataclass(frozen=True)
class LocalServerSettings:
    """How the local server listens, authenticates, paces and synthesizes; times in seconds."""

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None  # None: any non-empty key is accepted
    user_id: str | None = None  # None: any non-empty user id is accepted
    token_lifetime: float = 3600.0
    connection_lifetime: float = 3600.0
    first_byte_delay: float = 0.15
    realtime_factor: float = 3.0  # 0 disables pacing
    chunk_min: int = 500
    chunk_max: int = 4000
    seed: int = 0
    synth: SynthMode = "auto"

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_min <= self.chunk_max:
            raise ValueError("need 1 <= chunk_min <= chunk_max")
        if self.synth not in ("auto", "espeak", "generated"):
            raise ValueError(f"synth must be auto, espeak or generated, not {self.synth!r}")
        for name in ("token_lifetime", "connection_lifetime"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.first_byte_delay < 0 or self.realtime_factor < 0:
            raise ValueError("first_byte_delay and realtime_factor must not be negative")


@dataclass
class Faults:
    """Faults a test switches on at runtime.

    The counted faults (``drop_after_bytes``, ``drop_after_requests``, ``corrupt_after_bytes``,
    ``stall_after_bytes``) fire once and then reset themselves to None, so a reconnecting client
    recovers; set them again to fire again. ``reject_auth``, ``error_on_text`` and
    ``garbage_frames`` stay in force until cleared.

    A stall holds its reply (the connection stays open, nothing more is sent on it) until
    ``resume_stalls()``; then the reply goes on where it stopped, if its client is still there.
    """

    drop_after_bytes: int | None = None  # abort a connection after N audio bytes on it
    drop_after_requests: int | None = None  # abort a connection when its Nth command arrives
    reject_auth: bool = False  # auth calls answer 401
    error_on_text: str | None = None  # commands whose text contains this get an error frame
    corrupt_after_bytes: int | None = None  # one reply's audio after this offset is garbage
    garbage_frames: bool = False  # a non-JSON frame and an unknown-type frame before each start
    stall_after_bytes: int | None = None  # a reply goes silent after N of its audio bytes (0:
    # right after its start frame, before any audio) until resume_stalls()
    token_epoch: int = field(default=0, init=False, repr=False)
    _resumed: trio.Event = field(default_factory=trio.Event, init=False, repr=False)

    async def wait_resumed(self) -> None:
        """Block until the next ``resume_stalls()`` (a stalled reply calls this)."""
        await self._resumed.wait()

    def resume_stalls(self) -> None:
        """Let every stalled reply go on."""
        self._resumed.set()
        self._resumed = trio.Event()

    def expire_tokens(self) -> None:
        """Make every token minted so far invalid from now on (later ones stay valid)."""
        self.token_epoch += 1


@dataclass
class Stats:
    """Counters a test reads: accepted websockets, auth calls, commands received."""

    connections: int = 0
    auth_calls: int = 0
    requests: int = 0
    stalls: int = 0  # replies held by the stall fault so far
