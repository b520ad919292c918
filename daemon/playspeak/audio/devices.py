"""Finding output devices through PortAudio, with errors that say how to fix the setup."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from playspeak.errors import AudioDeviceError

NO_DEVICES_HINT = (
    "start PulseAudio/PipeWire or set PLAYSPEAK_DEVICE; `playspeak devices` lists what is available"
)


def sounddevice() -> ModuleType:
    """Import sounddevice on first use, so importing playspeak works without PortAudio.

    Blocks: the first import initialises PortAudio, which enumerates the devices once (the
    device list is fixed from then on; a sound server started later is not seen).
    """
    try:
        if "sounddevice" in sys.modules:
            import sounddevice as sd
        else:
            with _lean_alsa_probe():
                import sounddevice as sd
    except (OSError, ImportError) as e:  # sounddevice loads libportaudio at import time
        raise AudioDeviceError(
            f"PortAudio is not available ({e}): install it (Debian: apt-get install "
            "libportaudio2; pip install sounddevice) and start a sound server "
            "(PulseAudio/PipeWire)"
        ) from e
    return sd


# PortAudio 19.6 opens every pcm.* of the ALSA configuration to probe it; see the .conf file.
_ALSA_PROBE_CONF = Path(__file__).with_name("alsa-skip-probe.conf")


@contextlib.contextmanager
def _lean_alsa_probe() -> Iterator[None]:
    """While PortAudio initialises, read alsa-skip-probe.conf after ALSA's usual files
    (ALSA_CONFIG_PATH if set, else ALSA_CONFIG_DIR/alsa.conf, which loads /etc/asound.conf and
    ~/.asoundrc), then restore the environment: later snd_pcm_open() calls and child processes
    see the normal configuration. PLAYSPEAK_ALSA_FULL_PROBE=1 turns this off."""
    old = os.environ.get("ALSA_CONFIG_PATH")
    base = old or os.path.join(os.environ.get("ALSA_CONFIG_DIR", "/usr/share/alsa"), "alsa.conf")
    usable = _ALSA_PROBE_CONF.is_file() and all(os.path.isfile(f) for f in base.split(":"))
    if os.environ.get("PLAYSPEAK_ALSA_FULL_PROBE") or not usable:
        yield  # e.g. a distribution whose alsa.conf lives elsewhere: probe as before
        return
    os.environ["ALSA_CONFIG_PATH"] = f"{base}:{_ALSA_PROBE_CONF}"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ALSA_CONFIG_PATH", None)
        else:
            os.environ["ALSA_CONFIG_PATH"] = old


def list_devices() -> list[dict[str, Any]]:
    """Output-capable devices: index, name, hostapi, default_samplerate, max_channels,
    is_default. Blocks briefly (PortAudio queries); call it from a worker thread in trio."""
    sd = sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default = _default_output(sd)
    except sd.PortAudioError as e:
        raise AudioDeviceError(f"PortAudio cannot list devices ({e}): {NO_DEVICES_HINT}") from e
    return [
        {
            "index": d["index"],
            "name": d["name"],
            "hostapi": hostapis[d["hostapi"]]["name"],
            "default_samplerate": int(d["default_samplerate"]),
            "max_channels": d["max_output_channels"],
            "is_default": d["index"] == default,
        }
        for d in devices
        if d["max_output_channels"] > 0
    ]


def _default_output(sd: ModuleType) -> int | None:
    index = sd.default.device[1]
    return index if isinstance(index, int) and index >= 0 else None


def _describe(devices: list[dict[str, Any]]) -> str:
    if not devices:
        return f"PortAudio sees no output devices: {NO_DEVICES_HINT}"
    names = ", ".join(f"{d['index']}: {d['name']!r}" for d in devices)
    return f"available output devices: {names}"


def resolve_device(spec: str | int | None) -> int | None:
    """PortAudio index for `spec`: an index, an exact name or a case-insensitive substring.

    None (or "") means PortAudio's default output. Raises AudioDeviceError naming the
    available devices when nothing (or more than one device) matches, or when there are
    no output devices at all.
    """
    devices = list_devices()
    if not devices:
        raise AudioDeviceError(f"PortAudio sees no output devices: {NO_DEVICES_HINT}")
    if spec is None or spec == "":
        return None
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        if any(d["index"] == index for d in devices):
            return index
        raise AudioDeviceError(f"no output device with index {index}; {_describe(devices)}")
    exact = [d["index"] for d in devices if d["name"] == spec]
    if exact:
        return exact[0]
    matches = [d for d in devices if spec.lower() in d["name"].lower()]
    if len(matches) == 1:
        return matches[0]["index"]
    problem = "is ambiguous" if matches else "matches no output device"
    raise AudioDeviceError(f"device {spec!r} {problem}; {_describe(devices)}")
