"""`wav:` output never follows a planted link: a new file is created exclusively, an existing one
is overwritten only when it is a plain file of ours with one name; anything else is refused with
a message naming the path, and `playspeak run` stops with exit 2."""

from __future__ import annotations

import os
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import trio

from playspeak.audio.wavfile import WavFilePlayer, open_output
from playspeak.errors import ConfigError

VICTIM = b"a file the daemon must not touch\n"


async def write_some(path: Path) -> None:
    player = WavFilePlayer(path, samplerate=8000)
    async with trio.open_nursery() as nursery:
        await nursery.start(player.run)
        await player.play(np.zeros((800, 1), dtype=np.float32))
        nursery.cancel_scope.cancel()


async def test_a_new_file_and_an_old_one_of_ours_are_written(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    await write_some(out)
    out.write_bytes(b"older, longer content " * 1000)
    await write_some(out)
    with wave.open(str(out), "rb") as wav:
        assert (wav.getframerate(), wav.getnframes()) == (8000, 800)


def test_a_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    (tmp_path / "out.wav").symlink_to(victim)
    with pytest.raises(ConfigError, match="is a symbolic link: refusing to follow it"):
        open_output(tmp_path / "out.wav")
    assert victim.read_bytes() == VICTIM


def test_a_hard_link_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    os.link(victim, tmp_path / "out.wav")
    with pytest.raises(ConfigError, match=r"has 2 names \(hard links\): refusing"):
        open_output(tmp_path / "out.wav")
    assert victim.read_bytes() == VICTIM


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_another_users_file_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "out.wav"
    theirs.write_bytes(VICTIM)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to uid 65534, not to us"):
        open_output(theirs)
    assert theirs.read_bytes() == VICTIM


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out.wav").mkdir()
    with pytest.raises(ConfigError, match=r"out\.wav: Is a directory"):
        open_output(tmp_path / "out.wav")


async def test_the_daemon_refuses_a_planted_link_with_exit_2(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    (tmp_path / "out.wav").symlink_to(victim)
    result = await trio.run_process(
        [sys.executable, "-m", "playspeak", "run"],
        env={
            **os.environ,
            "PLAYSPEAK_SOCKET": str(tmp_path / "playspeak.sock"),
            "PLAYSPEAK_DEVICE": f"wav:{tmp_path}/out.wav",
        },
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert f"wav output {tmp_path}/out.wav is a symbolic link: refusing to follow it" in err
    assert "Traceback" not in err
    assert victim.read_bytes() == VICTIM
    assert not (tmp_path / "playspeak.sock").exists()


async def test_a_full_file_goes_on_in_the_next_one(tmp_path: Path) -> None:
    """A WAV file holds at most 4 GiB; the bound is lowered here to 1 s of audio (16 000
    bytes at 8 kHz mono) so that no test writes 4 GiB. 2.5 s go to three files, each whole."""
    out = tmp_path / "out.wav"
    player = WavFilePlayer(out, samplerate=8000)
    player.max_bytes = 16000
    async with trio.open_nursery() as nursery:
        await nursery.start(player.run)
        for _ in range(5):  # half a second each: the bound falls inside a write
            assert await player.play(np.full((4000, 1), 0.5, dtype=np.float32)) > 0
        nursery.cancel_scope.cancel()
    files = [out, tmp_path / "out-2.wav", tmp_path / "out-3.wav"]
    frames = []
    for path in files:
        with wave.open(str(path), "rb") as wav:
            frames.append(wav.getnframes())
            assert set(np.frombuffer(wav.readframes(wav.getnframes()), "<i2")) == {16383}
    assert frames == [8000, 8000, 4000]
    assert player.frames_written == 20000
