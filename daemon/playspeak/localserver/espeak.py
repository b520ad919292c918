"""Speech from espeak-ng: PlayAI voice to espeak voice, text to 16-bit mono PCM."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess

import numpy as np
import trio

ESPEAK = "espeak-ng"
WAV_HEADER = 44

# A few PlayAI voices (by name or by the id in their manifest URL) and a stand-in for each.
_KNOWN_VOICES: dict[str, str] = {
    "angelo": "en-us+m3",
    "baf1ef41-36b6-428c-9bdf-50ba54682bd8": "en-us+m3",
    "deedee": "en-us+f3",
    "e040bd1b-f190-4bdb-83f0-75ef85b18f84": "en-us+f3",
    "jennifer": "en-gb+f3",
    "801a663f-efd0-4254-98d0-5c175514c3e8": "en-gb+f3",
    "briggs": "en-gb+m3",
    "71cdb799-1e03-41c6-8a05-f7cd55134b0b": "en-gb+m3",
    "samara": "en-us",
    "90217770-a480-4a91-b1ea-df00f4d4c29d": "en-us",
}
_FALLBACK_VOICES = ("en-us", "en-us+f3", "en-gb+m3", "en-gb+f3")


def espeak_available() -> bool:
    """Whether espeak-ng is on PATH."""
    return shutil.which(ESPEAK) is not None


def espeak_voice(voice: str) -> str:
    """The espeak voice standing in for a PlayAI voice id or name (deterministic)."""
    lowered = voice.strip().lower()
    if lowered in _KNOWN_VOICES:
        return _KNOWN_VOICES[lowered]
    for key, mapped in _KNOWN_VOICES.items():
        if "-" in key and key in lowered:  # a voice id inside an s3://…/manifest.json URL
            return mapped
    digest = hashlib.sha256(voice.encode()).digest()
    return _FALLBACK_VOICES[digest[0] % len(_FALLBACK_VOICES)]


def _command(voice: str, speed: float) -> list[str]:
    wpm = round(175 * speed)
    return [ESPEAK, "--stdout", "--stdin", "-v", espeak_voice(voice), "-s", str(wpm)]


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    # espeak writes 0x7fffffff as its size fields, so trust only the fixed 44-byte layout.
    if len(data) < WAV_HEADER or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError("espeak-ng did not write a WAV stream")
    (rate,) = struct.unpack_from("<I", data, 24)
    body = data[WAV_HEADER:]
    pcm = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.int16)
    return pcm, rate


async def espeak_pcm(text: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
    """Run espeak-ng in a subprocess (cancellable); returns (int16 samples, sample rate)."""
    result = await trio.run_process(
        _command(voice, speed), stdin=text.encode(), capture_stdout=True
    )
    return _parse_wav(result.stdout)


def espeak_pcm_blocking(text: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
    """The same as espeak_pcm, blocking the calling thread (for use under a mock clock)."""
    result = subprocess.run(
        _command(voice, speed), input=text.encode(), capture_output=True, check=True
    )
    return _parse_wav(result.stdout)
