"""Settings, runtime fault switches and counters of the local PlayAI-compatible server."""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import trio

from playspeak.config.sections import SYNTH_MODES, LocalServerConfig

SynthMode = Literal["auto", "espeak", "generated", "piper"]


@dataclass(frozen=True)
class AuthRate:
    """At most ``limit`` auth requests in any ``window`` seconds; written ``N/SECONDS``."""

    limit: int
    window: float

    def __post_init__(self) -> None:
        if self.limit < 1 or not (math.isfinite(self.window) and self.window > 0):
            raise ValueError("an auth rate needs N >= 1 and SECONDS > 0, as in 10/60")

    @classmethod
    def parse(cls, text: str) -> AuthRate:
        """``"10/60"`` → AuthRate(10, 60.0); ValueError naming the expected shape."""
        count, slash, seconds = text.partition("/")
        try:
            if not slash:
                raise ValueError
            return cls(int(count), float(seconds))
        except ValueError:
            raise ValueError(
                f"auth rate must look like N/SECONDS (e.g. 10/60), not {text!r}"
            ) from None

    def __str__(self) -> str:
        return f"{self.limit}/{self.window:g}"


# The [local_server] section's defaults are the server's: one place, the schema, for what the
# config file, `serve-local` (its flags' defaults) and the embedded server start from.
_SECTION = LocalServerConfig()
_SYNTH = cast(SynthMode, _SECTION.synth)  # one of SYNTH_MODES: the schema checks its default


@dataclass(frozen=True)
class LocalServerSettings:
    """How the local server listens, authenticates, paces and synthesizes; times in seconds."""

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None  # None: any non-empty key is accepted
    user_id: str | None = None  # None: any non-empty user id is accepted
    token_lifetime: float = 3600.0
    connection_lifetime: float = 3600.0
    # Simulated synthesis costs, for tests and benchmarks: off by default (send audio as made).
    first_byte_delay: float = _SECTION.first_byte_delay
    realtime_factor: float = _SECTION.realtime_factor  # 0 disables pacing
    chunk_min: int = 500
    chunk_max: int = 4000
    seed: int = 0
    synth: SynthMode = _SYNTH
    # What a paid service does; every one of these is off by default (see REALISTIC).
    auth_delay: float = _SECTION.auth_delay  # each auth answer comes this late
    connect_delay: float = _SECTION.connect_delay  # each handshake is answered this late
    idle_timeout: float = _SECTION.idle_timeout  # close a websocket idle this long; 0: never
    auth_rate: AuthRate | None = None  # past it, auth answers 429 with Retry-After
    # every auth answer's status: any 2xx (success), or a 4xx other than 429 that refuses
    # every call (401: a revoked key)
    auth_status: int = _SECTION.auth_status
    # The house voice server (docs/local-server.md): TLS, and bounds on each client (by its
    # address): auth calls, open websockets, commands read and not yet answered (0: no bound).
    certfile: str | None = None
    keyfile: str | None = None
    client_auth_rate: AuthRate | None = None
    client_connections: int = 0
    client_requests: int = 0

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def refuses_auth(self) -> bool:
        """`auth_status` is a 4xx (not 429, which is the rate limit's): every auth refused."""
        return 400 <= self.auth_status <= 499 and self.auth_status != 429

    @classmethod
    def realistic(cls, **overrides: Any) -> LocalServerSettings:
        """The settings of ``serve-local --realistic``: REALISTIC, then ``overrides``."""
        return cls(**service_costs(realistic=True, given=overrides))

    @classmethod
    def from_section(
        cls, ls: LocalServerConfig, *, api_key: str | None = None, user_id: str | None = None
    ) -> LocalServerSettings:
        """The embedded server's settings: [local_server], `realistic` expanded (a key set to
        other than its default overrides that cost)."""
        defaults = LocalServerConfig()
        given = {k: getattr(ls, k) for k in REALISTIC if getattr(ls, k) != getattr(defaults, k)}
        costs = service_costs(realistic=ls.realistic, given=given)
        return cls(
            api_key=api_key,
            user_id=user_id,
            first_byte_delay=ls.first_byte_delay,
            realtime_factor=ls.realtime_factor,
            synth=cast(SynthMode, ls.synth),  # validated when the file was loaded
            **costs,
        )

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_min <= self.chunk_max:
            raise ValueError("need 1 <= chunk_min <= chunk_max")
        if self.synth not in SYNTH_MODES:
            raise ValueError(f"synth must be one of {', '.join(SYNTH_MODES)}, not {self.synth!r}")
        for name in ("token_lifetime", "connection_lifetime"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.first_byte_delay < 0 or self.realtime_factor < 0:
            raise ValueError("first_byte_delay and realtime_factor must not be negative")
        for name in ("auth_delay", "connect_delay", "idle_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds, 0 or more")
        if (self.api_key is None or self.user_id is None) and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is beyond loopback: serving it needs credentials that "
                "every client must send (set PLAYAI_API_KEY and PLAYAI_USER_ID)"
            )
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("a keyfile needs its certfile")
        if self.client_connections < 0 or self.client_requests < 0:
            raise ValueError("client_connections and client_requests must be 0 (no bound) or more")
        if not (200 <= self.auth_status <= 299 or self.refuses_auth):
            raise ValueError(
                f"auth_status must be a 2xx code or a 4xx refusal, not {self.auth_status}"
            )


def is_loopback(host: str) -> bool:
    """Whether listening on `host` reaches this machine alone ("", 0.0.0.0 and names other
    than localhost do not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ``--realistic``: roughly what a paid streaming TTS service costs a client. A cold auth call
# and a TLS websocket handshake take a few hundred milliseconds; idle sockets are closed after
# half a minute; auth is rate-limited per key (10 a minute) and created tokens answer 201.
REALISTIC: dict[str, Any] = {
    "auth_delay": 0.25,
    "connect_delay": 0.15,
    "idle_timeout": 30.0,
    "auth_rate": AuthRate(10, 60.0),
    "auth_status": 201,
}


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
    endless_on_text: str | None = None  # ... get a reply whose audio repeats and never ends
    corrupt_after_bytes: int | None = None  # one reply's audio after this offset is garbage
    garbage_frames: bool = False  # a non-JSON frame and an unknown-type frame before each start
    stall_after_bytes: int | None = None  # a reply goes silent after N of its audio bytes (0:
    # right after its start frame, before any audio) until resume_stalls()
    # The next reply's frames name the wrong request id: "unknown" (an id never asked for),
    # "null" (no id at all: a service that does not echo them), "null-end" (only its end
    # frame has a null id). Fires once, then resets to None.
    misnumber_reply: Literal["unknown", "null", "null-end"] | None = None
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

    connections: int = 0  # websockets accepted so far
    auth_calls: int = 0  # POSTs to an auth path, answered or refused
    requests: int = 0  # command frames received, valid or not
    stalls: int = 0  # replies held by the stall fault so far
    auth_refused: int = 0  # auth calls answered 401 or 429
    auth_rate_limited: int = 0  # of those, the 429s
    ws_open: int = 0  # websockets open now
    idle_closes: int = 0  # websockets closed by the idle timeout
    formats: Counter[str] = field(default_factory=Counter)  # answered commands' output formats

    def snapshot(self) -> dict[str, int]:
        """What ``GET /_local/stats`` answers; checks outside the project rely on these names."""
        return {
            "auth_requests": self.auth_calls,
            "auth_refused": self.auth_refused,
            "auth_rate_limited": self.auth_rate_limited,
            "ws_connections": self.connections,
            "ws_open": self.ws_open,
            "ws_idle_closed": self.idle_closes,
            "tts_requests": self.requests,
            "stalls": self.stalls,
        }


def service_costs(*, realistic: bool, given: Mapping[str, Any]) -> dict[str, Any]:
    """The simulated service's costs, for `[local_server]` and `serve-local` alike: REALISTIC
    when `realistic` is asked for, each cost given on its own overriding its share of it."""
    costs = dict(REALISTIC) if realistic else {}
    costs.update(given)
    if isinstance(costs.get("auth_rate"), str):
        costs["auth_rate"] = AuthRate.parse(costs["auth_rate"])
    return costs
