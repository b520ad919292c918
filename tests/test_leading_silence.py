"""An utterance that starts on an idle device skips the stream's leading silence (the MP3
codec's delay and the voice's pause), and nothing else. End to end: the embedded local server
over a real websocket, PyAV decoding, and the daemon's WAV-file output (every sample it played,
unpaced, so the check is exact). Utterances queued behind another keep their pause: that is
checked on the sound card in test_daemon_speak (no gap and no overlap between three)."""

from __future__ import annotations

import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from playspeak.audio.silence import SILENCE_LEVEL
from playspeak.config import (
    DEFAULT_VOICE,
    AudioConfig,
    Config,
    ControlConfig,
    LocalServerConfig,
)
from playspeak.daemon import open_daemon

from audio_compare import RATE, reference_pcm
from daemon_helpers import LineClient

MS = RATE // 1000
SILENCE = SILENCE_LEVEL * 32768  # the trimmer's level on the int16 scale
TEXT = "Garage door open."


def wav_config(tmp_path: Path, *, trim: bool) -> Config:
    return Config(
        control=ControlConfig(socket=str(tmp_path / "playspeak.sock")),
        audio=AudioConfig(
            device=f"wav:{tmp_path}/out.wav", samplerate=RATE, trim_leading_silence=trim
        ),
        local_server=LocalServerConfig(embedded="server"),
    )


async def speak_into_wav(tmp_path: Path, *, trim: bool) -> tuple[np.ndarray, np.ndarray]:
    """Speak TEXT once; (what the WAV file holds as int16, the server's audio decoded by PyAV's
    own demuxer as float32)."""
    async with open_daemon(wav_config(tmp_path, trim=trim)) as daemon:
        client = await LineClient.open(daemon.socket_path)
        reply = await client.command(cmd="speak", text=TEXT)
        events = await client.events_until_end({reply["id"]})
        assert events[-1]["event"] == "finished", events
        mp3 = await daemon.local_server.render(text=TEXT, voice=DEFAULT_VOICE)
    with wave.open(str(tmp_path / "out.wav"), "rb") as wav:
        written = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return written, reference_pcm(mp3)


def first_sound(samples: np.ndarray) -> int:
    return int(np.flatnonzero(np.abs(samples) >= SILENCE)[0])


@pytest.mark.parametrize("trim", [True, False])
async def test_speech_from_idle_starts_at_its_first_sound_and_loses_nothing_else(
    tmp_path: Path, trim: bool
) -> None:
    written, expected = await speak_into_wav(tmp_path, trim=trim)
    lead_in = first_sound(expected[:, 0] * 32768)
    assert lead_in >= 30 * MS, f"the material itself has {lead_in / MS:.1f} ms of lead-in"

    if trim:
        # 5 ms are kept before the onset; the rest of the lead-in is gone
        assert first_sound(written) == pytest.approx(5 * MS, abs=MS)
        assert len(written) == pytest.approx(len(expected) - lead_in + 5 * MS, abs=MS)
    else:
        assert first_sound(written) == pytest.approx(lead_in, abs=MS)
        assert len(written) == pytest.approx(len(expected), abs=MS)

    # what follows is the server's audio, sample for sample: same length, correlation ~1
    onset = first_sound(written)
    played = written[onset - 5 * MS :].astype(np.float64)
    source = expected[lead_in - 5 * MS :, 0].astype(np.float64) * 32768
    assert abs(len(played) - len(source)) <= MS
    n = min(len(played), len(source))
    assert np.corrcoef(played[:n], source[:n])[0, 1] >= 0.999


async def test_an_utterance_of_silence_still_reports_started_before_finished(
    tmp_path: Path,
) -> None:
    # "." synthesises to silence only: all of it is held back as leading silence, so the
    # utterance is fed whole at its end, and its `started` and `finished` are due at once.
    config = wav_config(tmp_path, trim=True)
    config = replace(config, local_server=replace(config.local_server, synth="generated"))
    async with open_daemon(config) as daemon:
        client = await LineClient.open(daemon.socket_path)
        for _ in range(8):  # trio runs simultaneous tasks in either order: try both
            reply = await client.command(cmd="speak", text=".")
            events = await client.events_until_end({reply["id"]})
            assert [e["event"] for e in events] == ["queued", "started", "finished"]
