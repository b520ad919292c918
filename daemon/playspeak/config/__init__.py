"""Configuration: one frozen dataclass tree, declared as a schema (config/sections.py), loaded
from TOML once (config/load.py), then overridden by the environment. The names other modules
use are all here."""

from __future__ import annotations

from playspeak.config.load import default_config_paths, load_config, read_secret_file
from playspeak.config.sections import (
    DEFAULT_API_URL,
    DEFAULT_VOICE,
    ENV_API_KEY,
    ENV_API_URL,
    ENV_CONFIG,
    ENV_DEVICE,
    ENV_MQTT_BROKER,
    ENV_SSIP_SOCKET,
    ENV_USER_ID,
    LOG_LEVELS,
    MODELS,
    OUTPUT_FORMATS,
    PRIORITIES,
    ApiConfig,
    AudioConfig,
    CacheConfig,
    ChimeConfig,
    Config,
    ControlConfig,
    FallbackConfig,
    LinkConfig,
    LocalServerConfig,
    LogConfig,
    MqttConfig,
    SpeechConfig,
    SsipConfig,
    SystemdConfig,
    is_model_name,
)

# The socket path logic lives in sockdir, which the CLI's client verbs use without importing
# this package; re-exported here.
from playspeak.sockdir import ENV_SOCKET, default_socket_path, socket_path_from_env

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_VOICE",
    "ENV_API_KEY",
    "ENV_API_URL",
    "ENV_CONFIG",
    "ENV_DEVICE",
    "ENV_MQTT_BROKER",
    "ENV_SOCKET",
    "ENV_SSIP_SOCKET",
    "ENV_USER_ID",
    "LOG_LEVELS",
    "MODELS",
    "OUTPUT_FORMATS",
    "PRIORITIES",
    "ApiConfig",
    "AudioConfig",
    "CacheConfig",
    "ChimeConfig",
    "Config",
    "ControlConfig",
    "FallbackConfig",
    "LinkConfig",
    "LocalServerConfig",
    "LogConfig",
    "MqttConfig",
    "SpeechConfig",
    "SsipConfig",
    "SystemdConfig",
    "default_config_paths",
    "default_socket_path",
    "is_model_name",
    "load_config",
    "read_secret_file",
    "socket_path_from_env",
]
