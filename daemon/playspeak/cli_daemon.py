"""The `playspeak` verbs that load the configuration and run the daemon in this process: run,
check-config and demo. cli.py imports this module only when one of them is asked for: trio and
the configuration machinery take a few hundred milliseconds to import, and the client verbs
(say, status, …) must not pay for them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from playspeak.audio.priority import raise_priority
from playspeak.cli_exit import EXIT_CONFIG, EXIT_FAILED
from playspeak.cli_exit import fail as _fail
from playspeak.client import Client
from playspeak.config import Config, load_config
from playspeak.errors import AudioDeviceError, ConfigError, PlayspeakError, leaves
from playspeak.log import setup_logging

log = logging.getLogger("playspeak")

GREETING = "Hello! This is playspeak, speaking as the words arrive."


def _first_error(error: BaseException) -> BaseException:
    """Our own error inside trio's exception groups, else the first leaf."""
    found = leaves(error)
    return next((e for e in found if isinstance(e, PlayspeakError)), found[0])


def _load(args: argparse.Namespace) -> Config:
    config = load_config(getattr(args, "config", None))
    overrides: dict[str, dict[str, Any]] = {
        "control": {"socket": getattr(args, "socket", None)},
        "audio": {"device": getattr(args, "device", None)},
        "log": {"level": getattr(args, "log_level", None)},
    }
    for section, values in overrides.items():
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            part = dataclasses.replace(getattr(config, section), **values)
            config = dataclasses.replace(config, **{section: part})
    return config


def _run_daemon(config: Config, reload: Callable[[], Config] | None = None) -> int:
    from playspeak.daemon import run_until_signal

    setup_logging(config.log.level)
    if priority := raise_priority(config.audio.nice):
        log.info("%s", priority)
    try:
        trio.run(run_until_signal, config, reload)
    except BaseException as e:
        error = _first_error(e)
        if isinstance(error, PlayspeakError):
            return _fail(str(error), EXIT_CONFIG if isinstance(error, ConfigError) else 1)
        raise
    return 0


def run(args: argparse.Namespace) -> int:
    return _run_daemon(_load(args), lambda: _load(args))


def check_config(args: argparse.Namespace) -> int:
    """Validate; print the effective configuration (file + environment + options) as JSON with
    secrets redacted. A ConfigError (exit 2) lists every error found, each naming the key, the
    file and, where known, the line; then what `run` would refuse at start: the chime, the
    audio device."""
    from playspeak.chime import load_chime
    from playspeak.log import redact, register_secret

    config = _load(args)
    register_secret(config.api.api_key)
    register_secret(config.api.user_id)
    errors: list[str] = []
    try:
        load_chime(config.chime.sound, 48000, config.audio.channels)
    except ConfigError as e:
        errors.append(str(e))
    if (device_error := _device_error(config.audio.device)) is not None:
        errors.append(f"audio.device: {device_error}")
    if errors:
        raise ConfigError("\n".join(errors))
    effective = config.redacted()  # as the schema shows each value (modes in octal)
    effective["control"]["socket"] = str(config.control.socket_path)
    effective["source"] = config.source or "(no file: built-in defaults)"
    if config.cache.enabled:  # where it will be: [cache] dir, else $CACHE_DIRECTORY or XDG's
        from playspeak.cache.store import default_cache_dir

        effective["cache"]["dir"] = config.cache.dir or str(default_cache_dir())
    print(redact(json.dumps(effective, indent=2)))
    service = "the embedded local server" if config.api.embedded else config.api.effective_url
    if config.fallback.enabled and shutil.which("espeak-ng") is None:
        print("playspeak: note: fallback.enabled, but espeak-ng is not installed", file=sys.stderr)
    print(f"playspeak: configuration OK; speech from {redact(service)}", file=sys.stderr)
    if (note := _idle_close_note(config)) is not None:
        print(f"playspeak: note: {note}", file=sys.stderr)
    from playspeak.config.reload import live_names

    print(
        f"playspeak: a reload (SIGHUP) applies {', '.join(live_names())}; "
        "any other change needs a restart",
        file=sys.stderr,
    )
    return 0


def _device_error(device: str) -> str | None:
    """Why the player of `run` would refuse `device` at start (the same lookup), or None. A
    WAV file is checked when `run` opens it."""
    if device.startswith("wav:"):
        return None
    from playspeak.audio.devices import resolve_device

    try:
        resolve_device(device or None)
    except AudioDeviceError as e:
        return str(e)
    return None


def _idle_close_note(config: Config) -> str | None:
    """link.idle_close at or above the embedded server's idle timeout: the server, not we,
    would close the idle websocket (harmless, but not what the setting is for)."""
    if not config.api.embedded:
        return None
    from playspeak.localserver.settings import LocalServerSettings

    timeout = LocalServerSettings.from_section(config.local_server).idle_timeout
    close = config.link.idle_close
    if timeout > 0 and (close == 0 or close >= timeout):
        return (
            f"link.idle_close ({close:g} s) is not below the embedded server's idle timeout "
            f"({timeout:g} s): the server will close the idle websocket first"
        )
    return None


def demo(args: argparse.Namespace) -> int:
    """Start the daemon, speak one greeting through its socket, stop. The README's first step."""
    config = _load(args)
    setup_logging(config.log.level)
    with tempfile.TemporaryDirectory(prefix="playspeak-demo-") as tmp:
        control = dataclasses.replace(config.control, socket=str(Path(tmp) / "playspeak.sock"))
        config = dataclasses.replace(config, control=control)
        if not config.audio.device.startswith("wav:") and not _has_sound_card():
            wav = Path(args.wav).resolve()
            log.warning(
                "no sound card here (PortAudio lists no output device): writing the "
                "speech to %s instead",
                wav,
            )
            config = dataclasses.replace(
                config, audio=dataclasses.replace(config.audio, device=f"wav:{wav}")
            )
        try:
            event = trio.run(_demo, config, args.text or GREETING)
        except BaseException as e:
            error = _first_error(e)
            if isinstance(error, PlayspeakError):
                return _fail(str(error))
            raise
    print(json.dumps(event))
    return 0 if event["event"] == "finished" else EXIT_FAILED


async def _demo(config: Config, text: str) -> dict[str, Any]:
    from playspeak.daemon import open_daemon

    async with open_daemon(config) as daemon, await Client.connect(daemon.socket_path) as c:
        reply = await c.say(text)
        log.info("said %r as %s", text, reply["id"])
        return await c.wait_for(reply["id"])


def _has_sound_card() -> bool:
    try:
        from playspeak.audio.devices import list_devices

        return bool(list_devices())
    except AudioDeviceError:
        return False
