"""Where the control socket lives, and that nobody else's directory sits between a user and their
daemon: systemd's runtime directory, the session's, else a /tmp directory we make 0700 ourselves
and refuse (daemon and CLI alike) when another user made it first. Also the socket file's life
around a failed start, and a socket directory that cannot be made."""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path

import pytest
import trio

from playspeak.sockdir import default_socket_path, fallback_dir

from daemon_helpers import daemon_process

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make another's directory")


def fallback_env(tmp_path: Path) -> dict[str, str]:
    """No runtime directory and no socket named: the fallback, in a /tmp of the test's own."""
    return {
        "TMPDIR": str(tmp_path),
        "XDG_RUNTIME_DIR": "",
        "RUNTIME_DIRECTORY": "",
        "PLAYSPEAK_SOCKET": "",
        "PLAYSPEAK_DEVICE": f"wav:{tmp_path}/out.wav",
    }


async def playspeak(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    result = await trio.run_process(
        [sys.executable, "-m", "playspeak", *args],
        env={**os.environ, **env},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_the_runtime_directory_comes_from_systemd_then_the_session_then_tmp(
    tmp_path: Path,
) -> None:
    uid = os.getuid()
    both = {"RUNTIME_DIRECTORY": "/run/a:/run/b", "XDG_RUNTIME_DIR": "/run/user/7"}
    assert default_socket_path(both) == "/run/a/playspeak.sock"
    assert default_socket_path({"XDG_RUNTIME_DIR": "/run/user/7"}) == "/run/user/7/playspeak.sock"
    assert default_socket_path({}) == f"/tmp/playspeak-{uid}/playspeak.sock"
    assert default_socket_path({"TMPDIR": str(tmp_path)}) == str(
        tmp_path / f"playspeak-{uid}" / "playspeak.sock"
    )


async def test_the_fallback_directory_is_made_private_and_the_cli_finds_the_daemon(
    tmp_path: Path,
) -> None:
    env = fallback_env(tmp_path)
    directory = tmp_path / f"playspeak-{os.getuid()}"
    async with daemon_process(tmp_path, env=env):
        st = os.lstat(directory)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
        assert stat.S_IMODE(st.st_mode) == 0o700
        assert stat.S_ISSOCK(os.lstat(directory / "playspeak.sock").st_mode)
        code, _out, err = await playspeak("say", "--wait", "Found you.", env=env)
        assert code == 0, err


def make_foreign(directory: Path, *, uid: int = NOBODY, mode: int = 0o700) -> None:
    directory.mkdir()
    os.chown(directory, uid, -1)
    os.chmod(directory, mode)


@needs_root
async def test_a_fallback_directory_made_by_another_user_stops_the_daemon(tmp_path: Path) -> None:
    env = fallback_env(tmp_path)
    directory = tmp_path / f"playspeak-{os.getuid()}"
    make_foreign(directory)
    code, _out, err = await playspeak("run", env=env)
    assert code == 2, err
    assert f"{directory} belongs to uid {NOBODY}, not to this user" in err
    assert "refusing to use it" in err and "Traceback" not in err
    assert os.listdir(directory) == []


@pytest.mark.parametrize("kind", ["loose mode", "symlink"])
async def test_a_fallback_that_is_not_private_stops_the_daemon(tmp_path: Path, kind: str) -> None:
    env = fallback_env(tmp_path)
    directory = tmp_path / f"playspeak-{os.getuid()}"
    if kind == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        directory.symlink_to(tmp_path / "elsewhere")
        expected = "is not a directory (a symlink or a file)"
    else:
        directory.mkdir()
        os.chmod(directory, 0o755)
        expected = "has mode 0755: other users may reach into it; refusing to use it for the "
    code, _out, err = await playspeak("run", env=env)
    assert code == 2, err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "elsewhere" / "playspeak.sock").exists()


@needs_root
async def test_the_cli_sends_nothing_to_a_socket_in_another_users_directory(
    tmp_path: Path,
) -> None:
    """Another user made the directory first and listens there, as the victim's daemon would:
    `playspeak say` refuses (exit 2) and the impostor never even sees a connection."""
    env = fallback_env(tmp_path)
    directory = tmp_path / f"playspeak-{os.getuid()}"
    make_foreign(directory, mode=0o755)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as impostor:
        impostor.bind(str(directory / "playspeak.sock"))
        impostor.listen()
        impostor.setblocking(False)
        code, _out, err = await playspeak("say", "my secret text", env=env)
        assert code == 2, err
        assert f"belongs to uid {NOBODY}" in err and "Traceback" not in err
        with pytest.raises(BlockingIOError):
            impostor.accept()  # the CLI has exited: any connection would be waiting here


def test_the_fallback_follows_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert fallback_dir() == str(tmp_path / f"playspeak-{os.getuid()}")


async def test_a_socket_directory_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    env = {
        "PLAYSPEAK_SOCKET": str(tmp_path / "a-file" / "run" / "playspeak.sock"),
        "PLAYSPEAK_DEVICE": f"wav:{tmp_path}/out.wav",
    }
    code, _out, err = await playspeak("run", env=env)
    assert code == 2, err
    assert f"cannot create the socket directory {tmp_path}/a-file/run: Not a directory" in err
    assert "Traceback" not in err


async def test_a_failed_start_leaves_no_socket_file_and_check_config_agrees(
    tmp_path: Path,
) -> None:
    """A chime file that cannot be decoded: `run` stops after binding its socket (exit 2) and
    removes it; `check-config` refuses the same configuration with the same message."""
    (tmp_path / "chime.wav").write_bytes(b"RIFF....WAVEnot really")
    (tmp_path / "playspeak.toml").write_text(f'[chime]\nsound = "{tmp_path}/chime.wav"\n')
    socket_path = tmp_path / "playspeak.sock"
    env = {
        "PLAYSPEAK_CONFIG": str(tmp_path / "playspeak.toml"),
        "PLAYSPEAK_SOCKET": str(socket_path),
        "PLAYSPEAK_DEVICE": f"wav:{tmp_path}/out.wav",
    }
    expected = f"chime.sound {tmp_path}/chime.wav: cannot decode it"
    code, _out, err = await playspeak("run", env=env)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not socket_path.exists() and not socket_path.is_symlink()
    code, out, err = await playspeak("check-config", env=env)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert out == ""
