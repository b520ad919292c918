"""A deterministic speech-like signal, for when espeak-ng is absent or not wanted (no I/O)."""

from __future__ import annotations

import hashlib

import numpy as np

RATE = 22050
CHAR_SECONDS = 0.07  # one character of text lasts this long at speed 1
_VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
    "y": (440.0, 1020.0, 2240.0),
}
_NEUTRAL = (500.0, 1500.0, 2500.0)  # a murmur for voiced consonants, digits, other letters
_VOICED_CONSONANTS = frozenset("bdgjlmnrvwz")
_PAUSE_CHARS: dict[str, float] = {",": 3.0, ";": 3.0, ":": 3.0, ".": 5.0, "!": 5.0, "?": 5.0}
_RAMP_SECONDS = 0.012  # attack and release of each sound, so joins do not click


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:8], "little")


def _envelope(n: int) -> np.ndarray:
    env = np.ones(n)
    ramp = min(n // 3, int(_RAMP_SECONDS * RATE))
    if ramp > 0:
        rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        env[:ramp] = rise
        env[-ramp:] = rise[::-1]
    return env


def _voiced(
    n: int, f0: float, formants: tuple[float, float, float], phase: float
) -> tuple[np.ndarray, float]:
    """Harmonics of f0 weighted by three formant peaks; returns samples and the end phase."""
    t = np.arange(n) / RATE
    track = f0 * (1.0 + 0.02 * np.sin(2 * np.pi * 5.0 * t))  # a little vibrato
    phases = phase + 2 * np.pi * np.cumsum(track) / RATE
    k = np.arange(1, int(4000 / f0) + 1)
    weights = 0.05 / k
    for rank, centre in enumerate(formants):
        weights = weights + np.exp(-0.5 * ((k * f0 - centre) / 90.0) ** 2) / (1 + rank)
    samples = (weights[:, None] * np.sin(k[:, None] * phases[None, :])).sum(axis=0)
    return samples / weights.sum(), float(phases[-1] % (2 * np.pi)) if n else phase


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.diff(rng.standard_normal(n + 1)) / 2  # differenced noise sounds like a hiss


def generate(text: str, voice: str, speed: float = 1.0) -> np.ndarray:
    """int16 mono samples at RATE, ~70 ms per character / speed; same input, same output."""
    rng = np.random.default_rng(_seed(voice, text, repr(speed)))
    base_f0 = 95.0 + (_seed(voice) % 1000) / 1000 * 130.0  # each voice has its own pitch
    step = round(CHAR_SECONDS / speed * RATE)
    parts: list[np.ndarray] = []
    phase = 0.0
    for i, ch in enumerate(text.lower()):
        if ch in _PAUSE_CHARS or ch == "\n":
            parts.append(np.zeros(int(step * _PAUSE_CHARS.get(ch, 5.0))))
        elif not ch.isalnum():
            parts.append(np.zeros(step))  # spaces and symbols: a short gap between words
        elif ch in _VOWELS or ch in _VOICED_CONSONANTS or not ch.isascii() or ch.isdigit():
            declination = 1.15 - 0.3 * i / max(len(text), 1)  # pitch falls over a sentence
            f0 = base_f0 * declination * (1.0 + 0.03 * rng.standard_normal())
            samples, phase = _voiced(step, f0, _VOWELS.get(ch, _NEUTRAL), phase)
            parts.append(samples * (1.0 if ch in _VOWELS else 0.45) * _envelope(step))
        else:
            parts.append(_noise(step, rng) * 0.25 * _envelope(step))
    signal = np.concatenate(parts) if parts else np.zeros(0)
    if signal.size < RATE // 20:
        signal = np.concatenate([signal, np.zeros(RATE // 20 - signal.size)])
    peak = float(np.abs(signal).max())
    scale = 0.6 * 32767 / peak if peak > 0 else 0.0
    return np.round(signal * scale).astype(np.int16)
