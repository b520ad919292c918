"""Every setting, declared once: one frozen dataclass per `[section]` of the TOML file, each
field made with `setting()` (default, doc, allowed values, environment variable). The docs here
are the comments of config/playspeak.toml, which is written from them (config/example.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playspeak.config.schema import DEVICE, LATENCY, OCTAL, Entry, Reload, entries_of, setting
from playspeak.errors import ConfigError
from playspeak.limits import SPEED, TEMPERATURE
from playspeak.priority_names import PRIORITIES
from playspeak.sockdir import ENV_SOCKET, default_socket_path

DEFAULT_API_URL = "https://api.play.ai"
DEFAULT_VOICE = (
    "s3://voice-cloning-zero-shot/d9ff78ba-d016-47f6-b0ef-dd630f59414e/female-cs/manifest.json"
)
MODELS = ("Play3.0-mini", "PlayDialog", "PlayDialogMultilingual", "PlayDialogArabic")
OUTPUT_FORMATS = ("mp3", "wav", "raw", "mulaw", "ogg", "flac")
LOG_LEVELS = ("debug", "info", "warning", "error")
EMBEDDED_MODES = ("voice", "server")  # [local_server] embedded
SYNTH_MODES = ("auto", "espeak", "generated", "piper")  # [local_server] synth
# [local_server]'s settings of the server alone (a direct voice has no such costs)
SERVER_ONLY = (
    "first_byte_delay",
    "realtime_factor",
    "realistic",
    "auth_delay",
    "connect_delay",
    "idle_timeout",
    "auth_rate",
    "auth_status",
)

# Stable names used by scripts, units and tests outside the project: keep them as they are.
ENV_API_KEY = "PLAYAI_API_KEY"
ENV_USER_ID = "PLAYAI_USER_ID"
ENV_API_URL = "PLAYSPEAK_API_URL"
ENV_CONFIG = "PLAYSPEAK_CONFIG"
ENV_DEVICE = "PLAYSPEAK_DEVICE"
ENV_SSIP_SOCKET = "PLAYSPEAK_SSIP_SOCKET"
ENV_MQTT_BROKER = "PLAYSPEAK_MQTT_BROKER"
CREDENTIAL_API_KEY = "playai-api-key"  # systemd's LoadCredential= name for the API key


def is_model_name(value: object) -> bool:
    """Any name the service may offer (its auth answer lists them): printable, no spaces."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 100
        and value.isprintable()
        and not any(c.isspace() for c in value)
    )


def _is_latency(value: str) -> bool:
    if value in ("low", "high"):
        return True
    try:
        return float(value) >= 0
    except ValueError:
        return False


def _auth_rate_ok(text: str) -> bool:
    if text == "":
        return True
    count, slash, seconds = text.partition("/")
    try:
        return bool(slash) and int(count) >= 1 and 0 < float(seconds) < float("inf")
    except ValueError:
        return False


INF = float("inf")


def _delay(doc: str) -> float:
    """A cost of the local server, in seconds: 0 (off) or more, finite."""
    return setting(0.0, doc, low=0, high=INF, open_high=True, unit="seconds")


@dataclass(frozen=True)
class ApiConfig:
    """The PlayAI-compatible text-to-speech service."""

    url: str = setting(
        "",
        "Base URL of the PlayAI-compatible API. Empty: https://api.play.ai when a key is set; "
        "with no key and no URL, the daemon runs its embedded local PlayAI-compatible server "
        "(offline speech).",
        env=ENV_API_URL,
    )
    api_key: str = setting(
        "",
        "The API key, better kept out of this file: in api_key_file, or systemd's "
        "LoadCredential=playai-api-key. Never put a real key in a world-readable file.",
        env=ENV_API_KEY,
        secret=True,
    )
    api_key_file: str = setting(
        "", "A file holding the API key, readable by its owner only (chmod 600)."
    )
    user_id: str = setting("", "The PlayAI user id.", env=ENV_USER_ID, secret=True)
    model: str = setting(
        "Play3.0-mini",
        "The voice model; the service's auth answer lists the names it offers.",
        check=is_model_name,
        allowed="a model name (e.g. one of " + ", ".join(MODELS) + ")",
    )
    voice: str = setting(DEFAULT_VOICE, "The voice: its manifest URL.", reload=Reload.LIVE)
    output_format: str = setting(
        "mp3",
        "The audio format asked of the service; mp3 streams with the lowest latency.",
        choices=OUTPUT_FORMATS,
        reload=Reload.LIVE,
    )
    sample_rate: int = setting(
        24000,
        "Samples per second asked of the service.",
        low=8000,
        high=48000,
        reload=Reload.LIVE,
    )
    speed: float = setting(
        1.0, "The speech rate factor.", low=SPEED[0], high=SPEED[1], reload=Reload.LIVE
    )
    temperature: float | None = setting(
        None,
        "Variation in the voice; unset: the service's default.",
        low=TEMPERATURE[0],
        high=TEMPERATURE[1],
        example="0.5",
        reload=Reload.LIVE,
    )
    connect_timeout: float = setting(
        10.0, "Seconds to wait for a connection to the service.", low=0, open_low=True
    )
    request_patience: float = setting(
        30.0,
        "An utterance waits this long (seconds) for a working connection (e.g. while the "
        "service is unreachable), then fails with the reason; refused credentials (401/403) "
        "fail it at once.",
    )
    first_audio_timeout: float = setting(
        5.0,
        "A reply that brings no audio within this many seconds means a stalled service: the "
        "connection is reopened and the utterance asked for again (speech.max_attempts in "
        "all), else it fails with the reason. Time in which playspeak itself is not reading "
        "(paused, buffer full) does not count.",
        low=0,
        open_low=True,
    )
    stall_timeout: float = setting(
        5.0,
        "A reply whose audio stops for this many seconds is treated as first_audio_timeout "
        "treats one that brings none.",
        low=0,
        open_low=True,
    )
    ping_interval: float = setting(
        20.0,
        "An idle connection is pinged this often (seconds); no pong within as long: it is "
        "reopened.",
        low=0,
        open_low=True,
    )
    connection_max_age: float = setting(
        3600.0,
        "The service closes a connection after an hour; the next one is opened a minute "
        "before and the old one finishes its replies, so no word is cut at the hour mark.",
    )

    @property
    def embedded(self) -> bool:
        """True when no key and no URL are configured: the local voice speaks."""
        return not self.api_key and not self.url

    @property
    def effective_url(self) -> str:
        return self.url or DEFAULT_API_URL


@dataclass(frozen=True)
class LinkConfig:
    """The websocket's life: opened on demand, closed when nothing is to be said.
    The websocket URLs from one auth call are reused for every reconnection until shortly
    before they expire: reconnecting costs no auth call (docs/service.md)."""

    idle_close: float = setting(
        20.0,
        "Close the websocket after this many seconds with nothing to say (0: keep it open); "
        "the next utterance opens it again. Keep it below the service's own idle timeout "
        "(30 s for `serve-local --realistic`), so that we close it rather than the service.",
        low=0,
        unit="seconds",
    )
    warm_up: bool = setting(
        False,
        "Connect at start rather than on the first utterance (the first one is then heard "
        'sooner). systemd.ready_when = "link" implies it.',
    )


@dataclass(frozen=True)
class ControlConfig:
    """The control socket. max_clients, allow_uids, allow_groups, uid_share, idle_timeout,
    line_timeout and max_pending_bytes apply at every door: this socket and the SSIP listener
    ([ssip]), each counting its own clients."""

    socket: str = setting(
        "",
        "The socket's path. Empty: playspeak.sock in $RUNTIME_DIRECTORY or $XDG_RUNTIME_DIR, "
        "else in /tmp/playspeak-UID/ (made 0700 by the daemon; refused when it exists and is "
        "not ours alone).",
        env=ENV_SOCKET,
    )
    socket_mode: int = setting(0o660, "The socket's file mode.", kind=OCTAL)
    max_line_bytes: int = setting(65536, "The longest line a client may send.", low=256)
    max_clients: int = setting(256, "Clients served at once.", low=1)
    client_buffer: int = setting(
        1024,
        "Event lines buffered per client; a client that lets more pile up is disconnected.",
        low=1,
    )
    socket_group: str = setting(
        "",
        "The socket's group (\"\": the daemon's own). With socket_mode 0660, its members may "
        "connect.",
    )
    allow_uids: tuple[int, ...] = setting(
        (),
        "When either allow list is non-empty, only peers with these uids, or in these groups, "
        "are served (checked with SO_PEERCRED). root is not special.",
    )
    allow_groups: tuple[str, ...] = setting(
        (), "Group names (a peer's primary or supplementary group); see allow_uids."
    )
    rate_limit: float = setting(
        50.0, "Lines per second per client after a burst of rate_burst lines (0: no limit).", low=0
    )
    rate_burst: int = setting(200, "The burst of lines allowed before rate_limit.", low=1)
    uid_share: int = setting(
        64,
        "A uid may hold more than uid_share connections while there is room; once the door is "
        "full, a newcomer of a uid holding fewer takes the place of the least recently active "
        "connection of the uid holding the most (idle ones first); failing that, the "
        "connection idle the longest with nothing pending and not subscribed gives way (one of "
        "the newcomer's own uid, when that uid is at its share). Else it is refused.",
        low=1,
    )
    idle_timeout: float = setting(
        300.0,
        "Seconds a connection may go without a line in or out before it is closed (0: never). "
        "Connections with speech pending or subscribed to events are never idle.",
        low=0,
        unit="seconds",
    )
    line_timeout: float = setting(
        15.0,
        "Seconds from the first byte of a line (or of an SSIP SPEAK text) to its end; a client "
        "that trickles a line slower than this is disconnected (0: no limit).",
        low=0,
        unit="seconds",
    )
    max_pending_bytes: int = setting(
        2097152,
        "Bytes of unfinished lines and texts all clients of one door may hold together; beyond "
        "it the largest holders are disconnected. At least max_line_bytes.",
    )

    @property
    def socket_path(self) -> Path:
        return Path(self.socket or default_socket_path())


@dataclass(frozen=True)
class AudioConfig:
    """The sound card."""

    device: str = setting(
        "",
        "Empty: the system's default device. A name (or part of one), an index from "
        '`playspeak devices`, or "wav:/path/file.wav" to write a WAV file instead.',
        kind=DEVICE,
        env=ENV_DEVICE,
    )
    samplerate: int = setting(
        0, "Samples per second at the sound card; 0: the device's default rate.", low=0
    )
    channels: int = setting(1, "Mono or stereo.", choices=(1, 2))
    blocksize_ms: float = setting(10.0, "Milliseconds of audio handed to the sound card at once.")
    latency: str = setting(
        "0.04",
        'Seconds of audio the sound card holds (or PortAudio\'s "low"/"high"). On PulseAudio '
        '0.04 costs less CPU than the 20 ms of "low" (fewer wake-ups of PortAudio and the '
        'sound server; docs/benchmarks.md, "Output streams") for 20 ms later sound; a stop '
        "command silences within about this plus one block.",
        kind=LATENCY,
        check=_is_latency,
        allowed='"low", "high" or seconds (a number >= 0)',
    )
    buffer_seconds: float = setting(
        2.0,
        "PCM buffered ahead of the sound card; when full, playspeak stops reading the websocket.",
        low=0,
        open_low=True,
    )
    stop_when_idle: bool = setting(
        True,
        "Open and run an output stream only while something plays: a stream kept running "
        "keeps its buffer full of silence that new speech would queue behind (more than the "
        'latency on PulseAudio: docs/benchmarks.md, "Output streams"); a fresh one started '
        "with the speech waiting plays it at once (opening and starting take a few "
        "milliseconds), closing drops what the device holds on a stop, and a "
        "sound server restarted in between is found again. false keeps one stream running "
        "between utterances: for devices slow to wake (HDMI, Bluetooth) that would clip the "
        "first syllable.",
    )
    steady_latency: float = setting(
        0.15,
        "A stretch of speech starts on a stream with the shallow buffer above (it plays at "
        "once), and at its first pause moves to one with this latency, in seconds (0: it stays "
        "on the first). On PulseAudio a deeper buffer means fewer wake-ups: a silent stream "
        'costs far less CPU at 0.15 than at 0.04 (docs/benchmarks.md, "What a running '
        'stream costs"). The pause keeps its length on an idle machine (docs/benchmarks.md, '
        '"Output streams"); pause and volume then take effect after the deeper buffer, stop '
        "and cancel still at once.",
        low=0,
        high=2,
        open_high=True,
        unit="seconds",
    )
    preroll_ms: float = setting(
        170.0,
        "Audio held back (after any leading silence) before an utterance starts, so that the "
        "service's next chunk is in before what is held has played out: a streaming service "
        "sends each chunk once it is synthesised (bench.compare's service: 3x real time, "
        "500-4000-byte chunks). It is held beyond the sound card's share, which a stream that "
        "starts takes at once into its buffer (more than the latency itself, more with a "
        'deeper one: docs/benchmarks.md, "Output streams"). Used until the service\'s pace '
        "is learned (adaptive_preroll), or always "
        "with adaptive_preroll = false. 0: play from the first decoded frame. The local "
        "voice is held too, but it makes a sentence at a time far faster than it plays: its "
        "first sentence usually covers this at once.",
        low=0,
    )
    adaptive_preroll: bool = setting(
        True,
        "Learn the service's pace from its replies (the slowest rate and the largest burst of "
        "the last 8 that started on an idle device, audio/arrivals.py) and start each "
        "utterance as soon as the audio in hand lasts until more is sure to have come, with "
        "the sound card's share kept.",
    )
    trim_leading_silence: bool = setting(
        True,
        "An utterance that starts on an idle device skips its leading silence (the MP3 codec's "
        'delay and the voice\'s pause, tens of milliseconds: docs/benchmarks.md, "Method"): '
        "speech starts that much sooner. Utterances "
        "queued behind another keep theirs, so the pause between them stays natural.",
    )
    nice: int = setting(
        -11,
        "The daemon's scheduling niceness, as PulseAudio's: on a machine with every core busy, "
        "a daemon at nice 0 gets too little CPU to keep the sound card's buffer filled (gaps). "
        "Applied at start when permitted (root, CAP_SYS_NICE; the system unit sets Nice=-11 "
        "itself); otherwise the log says so and the daemon runs at the priority it was given, "
        "as it does with 0.",
        low=-20,
        high=19,
    )


@dataclass(frozen=True)
class SpeechConfig:
    """The speech queue."""

    max_queue: int = setting(10_000, "Utterances waiting at most, of all clients.", low=1)
    client_queue_bytes: int = setting(
        4 << 20,
        "The memory one client's waiting utterances may hold (their text and about 1 KiB "
        "each): a burst of 500 keys from a screen reader is taken, a runaway client is not. "
        "0: no per-client bound.",
        low=0,
    )
    pipeline: bool = setting(
        True,
        "Request the next utterance while the current one plays: no gap between announcements.",
    )
    default_priority: str = setting(
        "message",
        "The priority of plain text lines and of speak commands without one, with Speech "
        "Dispatcher's semantics (see README.md).",
        choices=PRIORITIES,
        reload=Reload.LIVE,
    )
    max_age: float = setting(
        300.0,
        "Seconds an utterance may wait to be spoken (e.g. while the audio device is gone).",
        low=0,
        open_low=True,
        reload=Reload.LIVE,
    )
    max_attempts: int = setting(
        3,
        "Requests per utterance when the connection drops mid-way (each replays it from the "
        "start).",
        low=1,
        reload=Reload.LIVE,
    )
    max_reply_seconds: float = setting(
        0.0,
        "The most audio one reply may bring, in seconds; past it the utterance fails with the "
        "reason and its connection is reopened (a reply that never ends must not hold the "
        "queue, nor its audio be kept for the cache). 0: 30 s plus half a second per "
        "character, divided by the speed.",
        low=0,
    )
    schedule_tolerance: float = setting(
        0.05,
        'A speak\'s "at" (Unix seconds: the instant its first sample is heard) may be this '
        "far in the past, and then starts at once; further back it is refused with the reason. "
        "Rooms rely on NTP-synchronised clocks.",
        low=0,
        unit="seconds",
    )
    schedule_max_ahead: float = setting(
        300.0,
        'A speak\'s "at" further ahead than this is refused with the reason.',
        low=0,
        open_low=True,
        unit="seconds",
    )
    interrupt_reconnect: bool = setting(
        True,
        "When an utterance is interrupted while its audio is still streaming in, open a fresh "
        "websocket (with the kept URL: no auth call) for the next request instead of draining "
        "the unwanted rest on the same one. Measured against `serve-local --realistic` "
        "(docs/service.md): the next first sound comes within a fraction of a second "
        'reconnecting, seconds later draining a long reply (docs/benchmarks.md, "What a '
        'rate-limited service pays"); the cost is one websocket handshake per interruption.',
    )
    on_shutdown: str = setting(
        "cancel",
        'On SIGTERM/SIGINT: "cancel" what is speaking and queued at once, or "finish" saying '
        "it first (new speech is refused meanwhile) for at most shutdown_timeout seconds, then "
        "cancel the rest.",
        choices=("cancel", "finish"),
    )
    shutdown_timeout: float = setting(
        10.0, 'How long on_shutdown = "finish" may take.', low=0, unit="seconds"
    )


@dataclass(frozen=True)
class ChimeConfig:
    """A sound before announcements. The speech is requested while the chime plays. A speak
    command's "chime": true/false decides for that message."""

    sound: str = setting(
        "",
        'The sound: "" (off), "builtin" (a two-note ding-dong), or a WAV/MP3 file.',
        reload=Reload.LIVE,
    )
    priorities: tuple[str, ...] = setting(
        ("important",),
        "The announcements that get the chime.",
        choices=PRIORITIES,
        reload=Reload.LIVE,
    )


@dataclass(frozen=True)
class SsipConfig:
    """A Speech Dispatcher (SSIP) listener, so spd-say and speechd clients speak through
    playspeak. Point clients at it with SPEECHD_ADDRESS=unix_socket:/path/to/socket."""

    socket: str = setting(
        "",
        'The listener\'s path ("": off), e.g. "$XDG_RUNTIME_DIR/speech-dispatcher/speechd.sock".',
        env=ENV_SSIP_SOCKET,
    )
    socket_mode: int = setting(0o600, "The socket's file mode.", kind=OCTAL)


@dataclass(frozen=True)
class SystemdConfig:
    """The systemd service's readiness."""

    ready_when: str = setting(
        "socket",
        'When the service reports READY=1: "socket" (the control socket listens; speech waits '
        'for the link if needed) or "link" (also connected to the TTS service).',
        choices=("socket", "link"),
    )


@dataclass(frozen=True)
class LocalServerConfig:
    """The local voice, used when no API key and no URL are configured. embedded = "voice"
    (the default) speaks directly: engine to PCM to the sound card, in the daemon's process.
    embedded = "server" runs the local PlayAI-compatible server on loopback instead and speaks
    through it, as through a service; the costs a paid service has are settings of that server
    only (the `playspeak serve-local` flags), each off by default; realistic = true turns them
    all on. They are refused with embedded = "voice", which has none of them."""

    embedded: str = setting(
        "voice",
        '"voice": the engine speaks directly; "server": through the local PlayAI-compatible '
        "server on loopback (for tests and benchmarks of the service path).",
        choices=EMBEDDED_MODES,
    )
    first_byte_delay: float = _delay("Seconds before the first audio of each reply (server).")
    realtime_factor: float = setting(
        0.0,
        "How many times faster than real time audio is sent (server); 0: as fast as it is made.",
        low=0,
    )
    synth: str = setting(
        "auto",
        "The engine of voices not named by engine: auto is espeak-ng when installed, else the "
        "first Piper voice found, else generated audio (a warning says so); piper: the first "
        'Piper voice found (the extra playspeak[piper]). A voice "piper:<model>" is always '
        "spoken by that Piper model.",
        choices=SYNTH_MODES,
    )
    realistic: bool = setting(
        False,
        "Turn every cost on, at: auth_delay 0.25, connect_delay 0.15, idle_timeout 30, "
        'auth_rate "10/60", auth_status 201; a key below set to other than its default '
        "overrides that.",
    )
    auth_delay: float = _delay("Seconds before each websocket-auth answer.")
    connect_delay: float = _delay("Seconds before each websocket handshake answer.")
    idle_timeout: float = _delay(
        "Close a websocket that has had nothing to do for this many seconds; 0: never."
    )
    auth_rate: str = setting(
        "",
        '"N/SECONDS": past N auth calls in any SECONDS, answer 429 with Retry-After; "": no limit.',
        check=_auth_rate_ok,
        allowed='"" or "N/SECONDS", as in "10/60"',
    )
    auth_status: int = setting(
        200, "The status of a successful auth answer (any 2xx).", low=200, high=299
    )

    def server_costs(self) -> list[str]:
        """The settings of the server alone that differ from their defaults."""
        defaults = LocalServerConfig()
        return [k for k in SERVER_ONLY if getattr(self, k) != getattr(defaults, k)]

    def check(self) -> None:
        """ConfigError when a cost of the server is set for the direct voice (it has none)."""
        if self.embedded == "voice" and (costs := self.server_costs()):
            raise ConfigError(
                "local_server." + ", local_server.".join(costs) + " apply to the local server "
                'only: set local_server.embedded = "server" to speak through it'
            )


@dataclass(frozen=True)
class CacheConfig:
    """The phrase cache: a reply that streamed completely is kept on disk, keyed by everything
    that shapes the audio (text, voice, model, speed, temperature, language, format, sample
    rate), and the next identical utterance plays from disk without the service (also
    offline). A speak command with "cache": false opts out. `playspeak cache stats | clear |
    warm FILE`."""

    enabled: bool = setting(True, "Keep complete replies on disk and play them from there.")
    dir: str = setting(
        "",
        'Where: "": $CACHE_DIRECTORY (systemd\'s CacheDirectory=), else $XDG_CACHE_HOME/playspeak '
        "(~/.cache/playspeak).",
    )
    max_bytes: int = setting(
        200_000_000, "Least recently used entries are removed beyond this many bytes.", low=0
    )


@dataclass(frozen=True)
class FallbackConfig:
    """When the service cannot be reached, refuses the credentials, rate-limits, or has sent no
    audio `after` seconds into a reply, these priorities are spoken by a local voice
    (espeak-ng) instead of failing; the others fail with the reason, as without it."""

    enabled: bool = setting(True, "Speak with espeak-ng when the service fails or is late.")
    after: float = setting(
        2.0,
        "Seconds without audio from the service before the local voice speaks.",
        low=0,
        high=INF,
        open_low=True,
        open_high=True,
        unit="seconds",
    )
    priorities: tuple[str, ...] = setting(
        ("important", "message"), "The priorities the local voice speaks.", choices=PRIORITIES
    )


@dataclass(frozen=True)
class MqttConfig:
    """Many rooms: take speech from an MQTT broker (Mosquitto, Home Assistant's add-on, ...).
    Messages wait on the broker while the node is away (a persistent session, QoS 1)."""

    broker: str = setting(
        "", 'The broker: "" (off), mqtt://host:1883 or mqtts://host:8883.', env=ENV_MQTT_BROKER
    )
    username: str = setting("", "The user name at the broker.")
    password_file: str = setting("", "The password, in a file only its owner may read (chmod 600).")
    node: str = setting(
        "",
        'This node\'s name in topics ("": the host name): <topic_prefix>/<node>/say takes text '
        'or JSON speak fields, <topic_prefix>/<node>/cmd takes {"cmd": "stop" | "pause" | '
        '"resume" | "volume", ...}; events go to .../event, retained online/offline to '
        ".../status, and a retained JSON state to .../state. Every node also takes "
        "<topic_prefix>/all/say.",
    )
    groups: tuple[str, ...] = setting(
        (), "Groups this node belongs to: each adds <topic_prefix>/group/<group>/say."
    )
    topic_prefix: str = setting("playspeak", "The first level of every topic.")
    discovery: bool = setting(
        True,
        "Home Assistant MQTT discovery: a device per node with notify and text entities to "
        "speak, stop/skip/pause/resume buttons, a volume number, a state sensor and an event "
        "entity. false removes what an earlier run published.",
    )
    discovery_prefix: str = setting("homeassistant", "Home Assistant's discovery prefix.")
    speak_title: bool = setting(
        True, 'A say message\'s "title" is spoken before its text; false: the text alone.'
    )
    group_lead: float = setting(
        1.0,
        'A say on a group or the all topic without "at" is given one this far after its stamp '
        '"t" (while that is fresher than this), else after its arrival, so that the rooms start '
        "it together (they rely on NTP-synchronised clocks); 0: each room starts it at once.",
        low=0,
        unit="seconds",
    )
    max_age: float = setting(
        300.0,
        'A JSON message stamped with "t" (Unix seconds when sent) older than this is not '
        'spoken (a message may give its own "max_age"); 0: no limit.',
        low=0,
        unit="seconds",
    )
    keepalive: float = setting(30.0, "Seconds between keep-alive pings.", low=5, unit="seconds")
    inbox: int = setting(
        64,
        "QoS 1 messages delivered to this node and not yet acted on, at most (MQTT 5's Receive "
        "Maximum): the broker holds the rest until there is room.",
        low=1,
        high=65535,
    )


@dataclass(frozen=True)
class LogConfig:
    """Logging (to standard error, or the journal under systemd)."""

    level: str = setting(
        "info", "The least severe messages logged.", choices=LOG_LEVELS, reload=Reload.LIVE
    )


@dataclass(frozen=True)
class Config:
    api: ApiConfig = ApiConfig()
    link: LinkConfig = LinkConfig()
    control: ControlConfig = ControlConfig()
    audio: AudioConfig = AudioConfig()
    speech: SpeechConfig = SpeechConfig()
    chime: ChimeConfig = ChimeConfig()
    ssip: SsipConfig = SsipConfig()
    systemd: SystemdConfig = SystemdConfig()
    local_server: LocalServerConfig = LocalServerConfig()
    mqtt: MqttConfig = MqttConfig()
    log: LogConfig = LogConfig()
    cache: CacheConfig = CacheConfig()
    fallback: FallbackConfig = FallbackConfig()
    source: str = ""  # the file it was read from, for messages

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as `check-config` prints it (JSON values, modes in
        octal), with secrets replaced."""
        out: dict[str, Any] = {}
        for section, cls in SECTIONS.items():
            values = getattr(self, section)
            out[section] = {
                e.key: e.shown(getattr(values, e.key)) for e in entries_of(section, cls)
            }
        out["source"] = self.source
        return out


# The sections, in the order of Config's fields (and of the example file).
SECTIONS: dict[str, type] = {
    name: type(value) for name, value in vars(Config()).items() if name != "source"
}


def entries() -> list[Entry]:
    """Every setting of the schema, section by section."""
    return [entry for section, cls in SECTIONS.items() for entry in entries_of(section, cls)]
