"""Loading the configuration: find the file, read its TOML through the schema (each value
checked as it is read), apply the environment, then the checks that span several keys. Every
error names the file, the line where known, the key, the value and what is allowed; all of
them are found before one ConfigError lists them, a line each (a bad value counts as its
default for the checks after it)."""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from playspeak.config.files import MAX_CONFIG_BYTES, MAX_SECRET_BYTES, read_text_file
from playspeak.config.schema import Entry, Invalid, entries_of
from playspeak.config.sections import (
    CREDENTIAL_API_KEY,
    ENV_API_KEY,
    ENV_API_URL,
    ENV_CONFIG,
    ENV_USER_ID,
    SECTIONS,
    Config,
    entries,
)
from playspeak.errors import ConfigError


def default_config_paths() -> list[Path]:
    """Where `playspeak run` looks for a configuration file, first match wins."""
    system = Path("/etc/playspeak/playspeak.toml")
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if not xdg:
        try:
            xdg = str(Path.home() / ".config")
        except RuntimeError:
            # No $HOME and a uid the passwd database does not know: systemd's DynamicUser=
            # where libnss-systemd is not installed (Debian's default). Only the system file.
            return [system]
    return [Path(xdg) / "playspeak" / "playspeak.toml", system]


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


def _at(where: str, line: int | None) -> str:
    return f"{where}, line {line}" if line else where


def _unknown_key(section: str, key: str, known: Mapping[str, Entry]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {section}.{close[0]}?)" if close else ""
    return f"unknown key {section}.{key}{hint}"


def _from_mapping(data: dict[str, Any], where: str, text: str, errors: list[str]) -> Config:
    """The file's values read through the schema; each bad one is added to `errors` and left
    at its default."""
    sections: dict[str, Any] = {}
    for section, values in data.items():
        cls = SECTIONS.get(section)
        if cls is None:
            known = ", ".join(SECTIONS)
            at = _at(where, _header_line(text, section))
            errors.append(f"{at}: unknown section [{section}] (known: {known})")
            continue
        if not isinstance(values, dict):
            at = _at(where, _line_of(text, "", section))
            errors.append(f"{at}: {section} must be a table")
            continue
        schema = {e.key: e for e in entries_of(section, cls)}
        kwargs = {}
        for key, value in values.items():
            at = _at(where, _line_of(text, section, key))
            if key not in schema:
                errors.append(f"{at}: {_unknown_key(section, key, schema)}")
                continue
            try:
                kwargs[key] = schema[key].read(value)
            except Invalid as e:
                errors.append(f"{at}: {e}")
        sections[section] = cls(**kwargs)
    return Config(**sections, source=where)


def read_secret_file(path: str, key: str = "api.api_key_file") -> str:
    """A secret (the API key, the MQTT password) from a file that only its owner may read;
    ConfigError naming `key` otherwise."""
    return read_text_file(
        path, f"{key} {path}", "the secret", MAX_SECRET_BYTES, private=True
    ).strip()


def _replace(config: Config, section: str, **values: Any) -> Config:
    part = dataclasses.replace(getattr(config, section), **values)
    return dataclasses.replace(config, **{section: part})


def _apply_environment(config: Config, env: Mapping[str, str], errors: list[str]) -> Config:
    """Environment overrides, in one place: each setting's variable (from the schema) when set
    and not empty; then the API key's other sources, in order: the file named by
    api.api_key_file, then systemd's credential. Each bad one is added to `errors`."""
    for entry in entries():
        variable = entry.setting.env
        if variable and env.get(variable):
            try:
                value = entry.read(env[variable])
            except Invalid as e:
                errors.append(f"{variable}: {e}")
                continue
            config = _replace(config, entry.section, **{entry.key: value})
    api = config.api
    key = api.api_key
    try:
        if not key and api.api_key_file:
            key = read_secret_file(api.api_key_file)
        key = key or credential_api_key(env)
    except ConfigError as e:
        errors.append(str(e))
    return _replace(config, "api", api_key=key)


def credential_api_key(env: Mapping[str, str]) -> str:
    """The API key systemd handed over (LoadCredential=playai-api-key), "" if none; raises
    ConfigError when the file cannot be read."""
    creds_dir = env.get("CREDENTIALS_DIRECTORY")
    credential = Path(creds_dir) / CREDENTIAL_API_KEY if creds_dir else None
    where = f"systemd credential {credential}"
    try:
        if credential is None or not credential.exists():
            return ""
    except OSError as e:  # e.g. a directory the daemon's user may not enter
        raise ConfigError(f"{where}: {e.strerror or e}") from None
    return read_text_file(credential, where, "the secret", MAX_SECRET_BYTES).strip()


def _check_together(config: Config, text: str, errors: list[str]) -> None:
    """The rules that span several keys (each key's own were checked as it was read); each
    one broken is added to `errors`."""
    where = config.source or "configuration"
    control = config.control
    if control.max_pending_bytes < control.max_line_bytes:
        at = _at(where, _line_of(text, "control", "max_pending_bytes"))
        errors.append(
            f"{at}: control.max_pending_bytes must be >= control.max_line_bytes "
            f"({control.max_line_bytes}), not {control.max_pending_bytes}"
        )
    from playspeak.mqtt.topics import check_config as check_mqtt  # light: no paho

    try:
        mqtt = config.mqtt
        check_mqtt(mqtt.broker, mqtt.topic_prefix, mqtt.node, mqtt.groups)
        if mqtt.broker and mqtt.password_file:
            read_secret_file(mqtt.password_file, "mqtt.password_file")
    except ConfigError as e:
        errors.append(f"{where}: {e}")
    try:
        config.local_server.check()
    except ConfigError as e:
        costs = config.local_server.server_costs()
        errors.append(f"{_at(where, _line_of(text, 'local_server', costs[0]))}: {e}")
    api = config.api
    if api.url and not api.api_key:
        errors.append(
            f"{where}: api.url ({ENV_API_URL}) is set but no API key: set {ENV_API_KEY}, "
            "api.api_key_file, or unset the URL to use the embedded local server"
        )
    if api.api_key and not api.user_id:
        errors.append(f"{where}: an API key is set but no user id: set {ENV_USER_ID}")


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
    errors: list[str] = []
    if path is not None:
        where = str(path)
        text = read_text_file(path, where, "configuration", MAX_CONFIG_BYTES)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:  # the rest of the file cannot be read
            raise ConfigError(f"{where}: {e}") from None
        config = _from_mapping(data, where, text, errors)
    config = _apply_environment(config, env, errors)
    _check_together(config, text, errors)
    if errors:
        raise ConfigError("\n".join(errors))
    return config
