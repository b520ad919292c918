"""A user who may not connect to the daemon's socket is told which group to join, not asked
whether the daemon runs. Real Unix sockets and the real `playspeak` command; as root, the
command runs without CAP_DAC_OVERRIDE (setpriv), so that the socket's mode binds it too."""

from __future__ import annotations

import grp
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# root ignores file modes unless these capabilities are gone
AS_AN_ORDINARY_USER = (
    ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
    if os.geteuid() == 0
    else []
)


def ping(sock: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_AN_ORDINARY_USER, sys.executable, "-m", "playspeak", "ping"],
        env={**os.environ, "PLAYSPEAK_SOCKET": str(sock)},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not found")
def test_a_socket_of_another_group_names_the_group_to_join(tmp_path: Path) -> None:
    sock = tmp_path / "playspeak.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(sock))
        server.listen()
        # the system unit's socket is 0660 for group playspeak; here: no one but the group
        os.chmod(sock, 0o070)
        result = ping(sock)
    group = grp.getgrgid(sock.stat().st_gid).gr_name
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"playspeak: cannot reach the playspeak daemon at {sock}: permission denied: {sock} is "
        f"for group {group}; join it with `sudo usermod -aG {group} $USER`, then log in again"
    )


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not found")
def test_a_directory_it_may_not_enter_names_its_group(tmp_path: Path) -> None:
    private = tmp_path / "run"
    private.mkdir(mode=0o700)
    sock = private / "playspeak.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(sock))
        server.listen()
        private.chmod(0o070)  # systemd's RuntimeDirectory= for a group, as this user sees it
        result = ping(sock)
        private.chmod(0o700)
    group = grp.getgrgid(private.stat().st_gid).gr_name
    assert result.returncode == 1
    assert f"permission denied: {private} is for group {group}; join it" in result.stderr
