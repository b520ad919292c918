"""Configuration: one frozen dataclass tree, loaded from TOML once, then overridden by the
environment."""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playspeak.errors import ConfigError
from playspeak.limits import SPEED, TEMPERATURE, shown

# The socket path logic lives in sockdir, which the CLI's client verbs use without importing
# this module; re-exported here.
from playspeak.sockdir import ENV_SOCKET as ENV_SOCKET
from playspeak.sockdir import default_socket_path as default_socket_path
from playspeak.sockdir import socket_path_from_env as socket_path_from_env

DEFAULT_API_URL = "https://api.play.ai"
DEFAULT_VOICE = (
    "s3://voice-cloning-zero-shot/d9ff78ba-d016-47f6-b0ef-dd630f59414e/female-cs/manifest.json"
)
MODELS = ("Play3.0-mini", "PlayDialog", "PlayDialogMultilingual", "PlayDialogArabic")
OUTPUT_FORMATS = ("mp3", "wav", "raw", "mulaw", "ogg", "flac")
PRIORITIES = ("important", "message", "text", "notification", "progress")
LOG_LEVELS = ("debug", "info", "warning", "error")

# Stable names used by scripts, units and tests outside the project: keep them as they are.
ENV_API_KEY = "PLAYAI_API_KEY"
ENV_USER_ID = "PLAYAI_USER_ID"
ENV_API_URL = "PLAYSPEAK_API_URL"
ENV_CONFIG = "PLAYSPEAK_CONFIG"
ENV_DEVICE = "PLAYSPEAK_DEVICE"
ENV_SSIP_SOCKET = "PLAYSPEAK_SSIP_SOCKET"
ENV_MQTT_BROKER = "PLAYSPEAK_MQTT_BROKER"


def is_model_name(value: object) -> bool:
    """Any name the service may offer (its auth answer lists them): printable, no spaces."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 100
        and value.isprintable()
        and not any(c.isspace() for c in value)
    )


def default_config_paths() -> list[Path]:
    """Where `playspeak run` looks for a configuration file, first match wins."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path(xdg) / "playspeak" / "playspeak.toml", Path("/etc/playspeak/playspeak.toml")]


@dataclass(frozen=True)
class ApiConfig:
    url: str = ""  # empty: the embedded local server when no key either, else DEFAULT_API_URL
    api_key: str = field(default="", repr=False)
    api_key_file: str = ""
    user_id: str = field(default="", repr=False)
    model: str = "Play3.0-mini"
    voice: str = DEFAULT_VOICE
    output_format: str = "mp3"
    sample_rate: int = 24000
    speed: float = 1.0
    temperature: float | None = None
    connect_timeout: float = 10.0
    request_patience: float = 30.0  # an utterance waits this long for a connection, then fails
    first_audio_timeout: float = 5.0  # a reply with no audio this long: reconnect and ask again
    stall_timeout: float = 5.0  # a reply whose audio stops this long: reconnect and ask again
    ping_interval: float = 20.0  # an idle connection is pinged this often (no pong: reconnect)
    connection_max_age: float = 3600.0  # the service's limit; renewed a minute before

    @property
    def embedded(self) -> bool:
        """True when no key and no URL are configured: the daemon runs the local server."""
        return not self.api_key and not self.url

    @property
    def effective_url(self) -> str:
        return self.url or DEFAULT_API_URL


@dataclass(frozen=True)
class LinkConfig:
    """The websocket's life (issue 17): opened on demand, closed when nothing is to be said."""

    # Close the websocket after this many seconds with nothing to say (0: keep it open). Below
    # the service's own idle timeout (30 s for `serve-local --realistic`), so that we close it.
    idle_close: float = 20.0
    warm_up: bool = False  # connect at start (else on the first utterance)


@dataclass(frozen=True)
class ControlConfig:
    socket: str = ""  # empty: default_socket_path()
    socket_mode: int = 0o660
    max_line_bytes: int = 65536
    max_clients: int = 256
    client_buffer: int = 1024  # event lines buffered per client before it is dropped as not reading
    socket_group: str = ""  # group owning the socket (with socket_mode 0660: who may connect)
    allow_uids: tuple[int, ...] = ()  # when either allow list is set, only these peers are served
    allow_groups: tuple[str, ...] = ()  # group names (a peer's primary or supplementary group)
    rate_limit: float = 50.0  # lines per second per client (0: no limit) ...
    rate_burst: int = 200  # ... after a burst of this many
    # The limits below (and max_clients, allow_uids, allow_groups) apply at every door: this
    # socket and the SSIP listener, each counting its own clients.
    uid_share: int = 64  # a full door takes newcomers of other uids from a uid holding more
    idle_timeout: float = 300.0  # seconds without a line in or out (0: none) ...
    line_timeout: float = 15.0  # ... and from a line's first byte to its end (0: none)
    max_pending_bytes: int = 2097152  # unfinished lines of all clients of a door together

    @property
    def socket_path(self) -> Path:
        return Path(self.socket) if self.socket else default_socket_path()


@dataclass(frozen=True)
class AudioConfig:
    device: str = ""  # name, index, or "wav:/path/file.wav"; empty: the system default
    samplerate: int = 0  # 0: the device's default rate
    channels: int = 1
    blocksize_ms: float = 10.0
    latency: str = "0.04"  # seconds, or PortAudio's "low"/"high"
    buffer_seconds: float = 2.0
    stop_when_idle: bool = True  # a stream per stretch of speech: new speech plays at once
    steady_latency: float = 0.15  # a long stretch moves to this deeper buffer at a pause (0: no)
    preroll_ms: float = 250.0  # audio held back before an utterance starts playing ...
    adaptive_preroll: bool = True  # ... until the service's pace is learned from its replies
    trim_leading_silence: bool = True  # on an idle device, speech starts at its first sound
    nice: int = -11  # the daemon's scheduling niceness when permitted (PulseAudio's); 0: as given


@dataclass(frozen=True)
class SpeechConfig:
    max_queue: int = 100
    pipeline: bool = True  # request the next utterance while the current one plays
    default_priority: str = "message"
    max_age: float = 300.0  # seconds an utterance may wait (e.g. for a lost audio device)
    max_attempts: int = 3  # requests per utterance when the connection drops (replayed whole)
    # On interruption, reopen a websocket busy streaming unwanted audio (with the kept URL: no
    # auth call) rather than drain it; measured in docs/service.md
    interrupt_reconnect: bool = True
    on_shutdown: str = "cancel"  # SIGTERM: "cancel" what is pending, or "finish" it first ...
    shutdown_timeout: float = 10.0  # ... for at most this long


@dataclass(frozen=True)
class ChimeConfig:
    sound: str = ""  # "" (off), "builtin", or a WAV/MP3 file
    priorities: tuple[str, ...] = ("important",)  # announcements that get the chime


@dataclass(frozen=True)
class SsipConfig:
    socket: str = ""  # "" : off. e.g. "$XDG_RUNTIME_DIR/speech-dispatcher/speechd.sock"
    socket_mode: int = 0o600


@dataclass(frozen=True)
class SystemdConfig:
    ready_when: str = "socket"  # READY=1 once the socket listens, or once the link is "link"


@dataclass(frozen=True)
class LocalServerConfig:
    first_byte_delay: float = 0.15
    realtime_factor: float = 3.0
    synth: str = "auto"
    # What a paid service costs (as `serve-local --realistic` and its single flags); all off.
    # `realistic` turns them all on; a key below set to other than its default overrides it.
    realistic: bool = False
    auth_delay: float = 0.0
    connect_delay: float = 0.0
    idle_timeout: float = 0.0  # 0: never
    auth_rate: str = ""  # "N/SECONDS"; "": no limit
    auth_status: int = 200
    error_frames: str = "legacy"  # or "typed"


def _auth_rate_ok(text: str) -> bool:
    count, slash, seconds = text.partition("/")
    try:
        return bool(slash) and int(count) >= 1 and 0 < float(seconds) < float("inf")
    except ValueError:
        return False


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = True  # complete replies are kept on disk and played from there next time
    dir: str = ""  # "": $CACHE_DIRECTORY (systemd), else $XDG_CACHE_HOME/playspeak
    max_bytes: int = 200_000_000  # least recently used entries go beyond this


@dataclass(frozen=True)
class FallbackConfig:
    enabled: bool = True  # speak with espeak-ng when the service fails or is late
    after: float = 2.0  # seconds without audio from the service before the local voice speaks
    priorities: tuple[str, ...] = ("important", "message")  # the others fail as before


@dataclass(frozen=True)
class MqttConfig:
    broker: str = ""  # "": off. mqtt://host:1883 or mqtts://host:8883 (PLAYSPEAK_MQTT_BROKER)
    username: str = ""
    password_file: str = ""  # readable by its owner only
    node: str = ""  # "": the host name. Topics: <topic_prefix>/<node>/say, .../cmd, ...
    groups: tuple[str, ...] = ()  # also take <topic_prefix>/group/<group>/say
    topic_prefix: str = "playspeak"
    discovery: bool = True  # Home Assistant MQTT discovery (false: remove its configs)
    discovery_prefix: str = "homeassistant"
    max_age: float = 300.0  # a message stamped with "t" older than this is not spoken
    keepalive: float = 30.0


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"


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
        """The effective configuration as a dict, with secrets replaced, for printing."""
        out = dataclasses.asdict(self)
        for key in ("api_key", "user_id"):
            if out["api"][key]:
                out["api"][key] = "<redacted>"
        return out


_SECTIONS: dict[str, type] = {
    "api": ApiConfig,
    "link": LinkConfig,
    "control": ControlConfig,
    "audio": AudioConfig,
    "speech": SpeechConfig,
    "chime": ChimeConfig,
    "ssip": SsipConfig,
    "systemd": SystemdConfig,
    "local_server": LocalServerConfig,
    "mqtt": MqttConfig,
    "log": LogConfig,
    "cache": CacheConfig,
    "fallback": FallbackConfig,
}


def _coerce(section: str, key: str, value: Any, default: Any, where: str) -> Any:
    """Check one value's type against its default's; the error names the key and the file."""
    name = f"{section}.{key}"
    if key == "socket_mode" and isinstance(value, str):
        try:
            return int(value, 8)
        except ValueError:
            raise ConfigError(f'{where}: {name} must be an octal string like "0660"') from None
    if key == "temperature":
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return None if value is None else float(value)
        raise ConfigError(f"{where}: {name} must be a number between 0 and 1")
    if isinstance(default, tuple):
        kind = int if key == "allow_uids" else str
        if not isinstance(value, list) or not all(
            isinstance(v, kind) and not isinstance(v, bool) for v in value
        ):
            what = "whole numbers" if kind is int else "strings"
            raise ConfigError(f"{where}: {name} must be a list of {what}, not {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false, not {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {name} must be a number, not {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {name} must be a whole number, not {value!r}")
        return value
    if isinstance(default, str):
        if key == "device" and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if key == "latency" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(float(value))  # seconds
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {name} must be a string, not {value!r}")
        return value
    return value


def _line_of(text: str, section: str, key: str) -> int | None:
    """Best-effort line number of `key` inside `[section]`, for error messages."""
    current = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == section and line.split("=", 1)[0].strip() == key:
            return number
    return None


def _header_line(text: str, section: str) -> int | None:
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip() == f"[{section}]":
            return number
    return None


def _from_mapping(data: dict[str, Any], where: str, text: str = "") -> Config:
    sections: dict[str, Any] = {}
    for section, values in data.items():
        cls = _SECTIONS.get(section)
        header = _header_line(text, section)
        at_header = f"{where}, line {header}" if header else where
        if cls is None:
            known = ", ".join(_SECTIONS)
            raise ConfigError(f"{at_header}: unknown section [{section}] (known: {known})")
        if not isinstance(values, dict):
            at_key = _line_of(text, "", section)
            at = f"{where}, line {at_key}" if at_key else where
            raise ConfigError(f"{at}: {section} must be a table")
        defaults = cls()
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            line = _line_of(text, section, key)
            at = f"{where}, line {line}" if line else where
            if key not in fields:
                raise ConfigError(f"{at}: unknown key {section}.{key}")
            kwargs[key] = _coerce(section, key, value, getattr(defaults, key), at)
        sections[section] = cls(**kwargs)
    return Config(**sections, source=where)


def read_secret_file(path: str, key: str = "api.api_key_file") -> str:
    """A secret (the API key, the MQTT password) from a file that only its owner may read;
    ConfigError naming `key` otherwise."""
    p = Path(path)
    try:
        st = p.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{key} {path} is readable by other users: run chmod 600 {path}")
        return p.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"{key} {path}: {e.strerror}") from None


def _apply_environment(config: Config, env: dict[str, str]) -> Config:
    """Environment overrides, in one place: secrets, API URL, socket and device."""
    api = config.api
    key = env.get(ENV_API_KEY) or api.api_key
    if not key and api.api_key_file:
        key = read_secret_file(api.api_key_file)
    creds_dir = env.get("CREDENTIALS_DIRECTORY")
    if not key and creds_dir and (Path(creds_dir) / "playai-api-key").exists():
        key = (Path(creds_dir) / "playai-api-key").read_text(encoding="utf-8").strip()
    api = dataclasses.replace(
        api,
        api_key=key,
        user_id=env.get(ENV_USER_ID) or api.user_id,
        url=env.get(ENV_API_URL) or api.url,
    )
    control = config.control
    if env.get(ENV_SOCKET):
        control = dataclasses.replace(control, socket=env[ENV_SOCKET])
    audio = config.audio
    if env.get(ENV_DEVICE):
        audio = dataclasses.replace(audio, device=env[ENV_DEVICE])
    ssip = config.ssip
    if env.get(ENV_SSIP_SOCKET):
        ssip = dataclasses.replace(ssip, socket=env[ENV_SSIP_SOCKET])
    mqtt = config.mqtt
    if env.get(ENV_MQTT_BROKER):
        mqtt = dataclasses.replace(mqtt, broker=env[ENV_MQTT_BROKER])
    return dataclasses.replace(
        config, api=api, control=control, audio=audio, ssip=ssip, mqtt=mqtt
    )


def _is_latency(value: str) -> bool:
    if value in ("low", "high"):
        return True
    try:
        return float(value) >= 0
    except ValueError:
        return False


def _validate(config: Config, text: str = "") -> None:
    """Range and consistency checks; each error names the key, the file and its line."""
    where = config.source or "configuration"
    api = config.api
    checks = [
        (
            is_model_name(api.model),
            "api.model must be a model name (e.g. one of " + ", ".join(MODELS) + ")",
        ),
        (config.link.idle_close >= 0, "link.idle_close must be seconds >= 0 (0: never)"),
        (api.output_format in OUTPUT_FORMATS, f"api.output_format must be one of {OUTPUT_FORMATS}"),
        (8000 <= api.sample_rate <= 48000, "api.sample_rate must be 8000–48000"),
        (SPEED[0] <= api.speed <= SPEED[1], f"api.speed must be {shown(SPEED)}"),
        (
            api.temperature is None or TEMPERATURE[0] <= api.temperature <= TEMPERATURE[1],
            f"api.temperature must be {shown(TEMPERATURE)}",
        ),
        (api.connect_timeout > 0, "api.connect_timeout must be > 0"),
        (api.first_audio_timeout > 0, "api.first_audio_timeout must be > 0"),
        (api.stall_timeout > 0, "api.stall_timeout must be > 0"),
        (api.ping_interval > 0, "api.ping_interval must be > 0"),
        (config.audio.channels in (1, 2), "audio.channels must be 1 or 2"),
        (config.audio.buffer_seconds > 0, "audio.buffer_seconds must be > 0"),
        (config.audio.preroll_ms >= 0, "audio.preroll_ms must be >= 0"),
        (
            0 <= config.audio.steady_latency < 2,
            "audio.steady_latency must be seconds in [0, 2) (0: no switch)",
        ),
        (
            _is_latency(config.audio.latency),
            'audio.latency must be "low", "high" or seconds (a number >= 0)',
        ),
        (config.audio.samplerate >= 0, "audio.samplerate must be >= 0 (0: device default)"),
        (-20 <= config.audio.nice <= 19, "audio.nice must be an integer in [-20, 19]"),
        (config.control.max_line_bytes >= 256, "control.max_line_bytes must be >= 256"),
        (config.control.rate_limit >= 0, "control.rate_limit must be >= 0 (0: no limit)"),
        (config.control.max_clients >= 1, "control.max_clients must be >= 1"),
        (config.control.rate_burst >= 1, "control.rate_burst must be >= 1"),
        (config.control.client_buffer >= 1, "control.client_buffer must be >= 1"),
        (config.control.uid_share >= 1, "control.uid_share must be >= 1"),
        (config.control.idle_timeout >= 0, "control.idle_timeout must be >= 0 (0: none)"),
        (config.control.line_timeout >= 0, "control.line_timeout must be >= 0 (0: none)"),
        (
            config.control.max_pending_bytes >= config.control.max_line_bytes,
            "control.max_pending_bytes must be >= control.max_line_bytes",
        ),
        (config.cache.max_bytes >= 0, "cache.max_bytes must be >= 0"),
        (
            0 < config.fallback.after < float("inf"),
            "fallback.after must be seconds, more than 0",
        ),
        (
            all(p in PRIORITIES for p in config.fallback.priorities),
            f"fallback.priorities may hold only {', '.join(PRIORITIES)}",
        ),
        (config.log.level in LOG_LEVELS, f"log.level must be one of {', '.join(LOG_LEVELS)}"),
        (config.speech.max_queue >= 1, "speech.max_queue must be >= 1"),
        (config.speech.max_age > 0, "speech.max_age must be > 0"),
        (config.speech.max_attempts >= 1, "speech.max_attempts must be >= 1"),
        (
            config.speech.on_shutdown in ("cancel", "finish"),
            "speech.on_shutdown must be cancel or finish",
        ),
        (config.speech.shutdown_timeout >= 0, "speech.shutdown_timeout must be >= 0"),
        (
            config.speech.default_priority in PRIORITIES,
            f"speech.default_priority must be one of {', '.join(PRIORITIES)}",
        ),
        (
            all(p in PRIORITIES for p in config.chime.priorities),
            f"chime.priorities may hold only {', '.join(PRIORITIES)}",
        ),
        (
            config.systemd.ready_when in ("socket", "link"),
            "systemd.ready_when must be socket or link",
        ),
        (
            config.local_server.synth in ("auto", "espeak", "generated"),
            "local_server.synth must be auto, espeak or generated",
        ),
        (
            all(
                0 <= getattr(config.local_server, k) < float("inf")
                for k in ("auth_delay", "connect_delay", "idle_timeout")
            ),
            "local_server.auth_delay, connect_delay and idle_timeout must be seconds, 0 or more",
        ),
        (
            config.local_server.auth_rate == "" or _auth_rate_ok(config.local_server.auth_rate),
            'local_server.auth_rate must be "" or "N/SECONDS", as in "10/60"',
        ),
        (200 <= config.local_server.auth_status <= 299, "local_server.auth_status must be 2xx"),
        (
            config.local_server.error_frames in ("legacy", "typed"),
            "local_server.error_frames must be legacy or typed",
        ),
    ]
    checks += [
        (config.mqtt.max_age >= 0, "mqtt.max_age must be >= 0 (0: no limit)"),
        (config.mqtt.keepalive >= 5, "mqtt.keepalive must be >= 5 seconds"),
    ]
    for ok, message in checks:
        if not ok:
            section, _, key = message.split()[0].partition(".")
            line = _line_of(text, section, key)
            raise ConfigError(f"{where}{f', line {line}' if line else ''}: {message}")
    from playspeak.mqtt.topics import check_config as check_mqtt  # light: no paho

    try:
        check_mqtt(config.mqtt)
        if config.mqtt.broker and config.mqtt.password_file:
            read_secret_file(config.mqtt.password_file, "mqtt.password_file")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if api.url and not api.api_key:
        raise ConfigError(
            f"{where}: api.url ({ENV_API_URL}) is set but no API key: set {ENV_API_KEY}, "
            "api.api_key_file, or unset the URL to use the embedded local server"
        )
    if api.api_key and not api.user_id:
        raise ConfigError(f"{where}: an API key is set but no user id: set {ENV_USER_ID}")


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Load, override from the environment and validate. Raises ConfigError, never returns None.

    `path` None means `$PLAYSPEAK_CONFIG`, else the first existing default path, else defaults.
    """
    env = dict(os.environ) if env is None else env
    if path is None and env.get(ENV_CONFIG):
        path = env[ENV_CONFIG]
    if path is None:
        path = next((p for p in default_config_paths() if p.exists()), None)
    config, text = Config(), ""
    if path is not None:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{where}: cannot read configuration: {e.strerror}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{where}: {e}") from None
        config = _from_mapping(data, where, text)
    config = _apply_environment(config, env)
    _validate(config, text)
    return config
