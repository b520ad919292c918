"""Who may talk to the daemon: the socket's mode and group, the allow-lists checked against the
peer's credentials (SO_PEERCRED), and one log line per command naming who sent it.

Refusal is shown by allowing only someone else. Run as root (as the suite is), the tests also
give the socket to another group and play real other users (with and without a supplementary
group) with child processes started as `nobody`.
"""

from __future__ import annotations

import grp
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from playspeak.config import AudioConfig, Config, ControlConfig, LocalServerConfig
from playspeak.control.peers import AccessPolicy, Peer, resolve_group
from playspeak.control.server import bind_unix_socket
from playspeak.daemon import open_daemon
from playspeak.errors import ConfigError

from daemon_helpers import LineClient

NOBODY = 65534
NO_GROUP = "no-such-group-for-playspeak"

UID, GID = os.getuid(), os.getgid()
OWN_GROUP = grp.getgrgid(GID).gr_name
# Giving the socket to a group we are not in, and playing other users, take root.
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, other users)")


def other_group() -> grp.struct_group:
    """An existing group that root is not in by default: the socket's group in these tests."""
    return next(g for g in grp.getgrall() if g.gr_gid not in (0, NOBODY))


def config_for(socket_path: Path, **control: Any) -> Config:
    return Config(
        control=ControlConfig(socket=str(socket_path), **control),
        audio=AudioConfig(device=f"wav:{socket_path.parent}/out.wav"),
        local_server=LocalServerConfig(first_byte_delay=0, realtime_factor=0, synth="generated"),
    )


async def read_to_end(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


# ---- the I/O-free parts ---------------------------------------------------------------------


def test_groups_resolve_by_name_or_number_and_a_missing_one_is_named() -> None:
    group = other_group()
    assert resolve_group(group.gr_name) == group.gr_gid
    assert resolve_group(str(group.gr_gid)) == group.gr_gid
    with pytest.raises(ConfigError, match=rf"control\.socket_group: no group named '{NO_GROUP}'"):
        resolve_group(NO_GROUP)
    with pytest.raises(ConfigError, match=r"control\.allow_groups: no group named"):
        AccessPolicy.from_config([], [NO_GROUP])


def test_the_allow_lists() -> None:
    group = other_group()
    assert AccessPolicy().allows(Peer(uid=12345, gid=12345)), "no lists: everyone"
    by_uid = AccessPolicy.from_config([12345], [])
    assert by_uid.allows(Peer(uid=12345, gid=1))
    assert not by_uid.allows(Peer(uid=0, gid=0))
    assert not by_uid.allows(Peer()), "unknown credentials are refused"
    by_group = AccessPolicy.from_config([], [group.gr_name])
    assert by_group.allows(Peer(uid=54321, gid=group.gr_gid)), "primary group"
    assert not by_group.allows(Peer(uid=54321, gid=54321)), "no account, no other groups"
    assert AccessPolicy.refusal(Peer(uid=7)) == (
        "not allowed: uid 7 is not in control.allow_uids/allow_groups"
    )


# ---- the socket file ------------------------------------------------------------------------


@needs_root
async def test_the_socket_belongs_to_socket_group_with_mode_0660(tmp_path: Path) -> None:
    group = other_group()
    path = tmp_path / "run" / "playspeak" / "playspeak.sock"  # the directories are ours to make
    async with open_daemon(config_for(path, socket_group=group.gr_name)) as daemon:
        st = path.stat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == group.gr_gid
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
        client = await LineClient.open(daemon.socket_path)
        assert (await client.command(cmd="ping"))["event"] == "ok"


@needs_root
async def test_a_numeric_socket_group_and_root(tmp_path: Path) -> None:
    group = other_group()
    path = tmp_path / "playspeak.sock"
    async with open_daemon(config_for(path, socket_group=str(group.gr_gid))):
        assert path.stat().st_gid == group.gr_gid
    async with open_daemon(config_for(path, socket_group="root")):
        assert path.stat().st_gid == 0


@needs_root
def test_bind_gives_a_directory_it_creates_to_the_group(tmp_path: Path) -> None:
    group = other_group()
    path = tmp_path / "new" / "playspeak.sock"
    sock = bind_unix_socket(path, 0o660, group=group.gr_name)
    try:
        directory = path.parent.stat()
        assert stat.S_IMODE(directory.st_mode) == 0o750 and directory.st_gid == group.gr_gid
        assert path.stat().st_gid == group.gr_gid
    finally:
        sock.close()
    with pytest.raises(ConfigError, match="no group named"):
        bind_unix_socket(tmp_path / "other" / "playspeak.sock", 0o660, group=NO_GROUP)
    assert not (tmp_path / "other").exists(), "nothing is made for a configuration that fails"


async def test_a_missing_socket_group_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "playspeak.sock"
    expected = pytest.RaisesExc(
        ConfigError, match=f"control.socket_group: no group named '{NO_GROUP}' on this system"
    )
    with pytest.RaisesGroup(expected, flatten_subgroups=True, allow_unwrapped=True):
        async with open_daemon(config_for(path, socket_group=NO_GROUP)):
            pytest.fail("the daemon started")
    assert not path.exists(), "no socket file is left behind"


async def test_playspeak_run_exits_2_naming_the_missing_group(tmp_path: Path) -> None:
    (tmp_path / "playspeak.toml").write_text(f'[control]\nsocket_group = "{NO_GROUP}"\n')
    env = {
        **os.environ,
        "PLAYSPEAK_CONFIG": str(tmp_path / "playspeak.toml"),
        "PLAYSPEAK_SOCKET": str(tmp_path / "playspeak.sock"),
        "PLAYSPEAK_DEVICE": f"wav:{tmp_path}/out.wav",
    }
    for key in ("PLAYAI_API_KEY", "PLAYAI_USER_ID", "PLAYSPEAK_API_URL", "NOTIFY_SOCKET"):
        env.pop(key, None)
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, "-m", "playspeak", "run"],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert f"control.socket_group: no group named '{NO_GROUP}' on this system" in stderr
    assert "Traceback" not in stderr


# ---- allow-lists, as ourselves --------------------------------------------------------------


async def test_we_are_refused_when_only_another_uid_is_allowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_daemon(config_for(tmp_path / "s.sock", allow_uids=(12345,))) as daemon:
        stream = await trio.open_unix_socket(str(daemon.socket_path))
        assert await read_to_end(stream) == (
            b'{"event": "error", "error": "not allowed: uid %d is not in '
            b'control.allow_uids/allow_groups"}\n' % UID
        )
        assert not daemon.control.clients
    refusals = [r for r in caplog.records if "not in control.allow_uids" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.WARNING]
    assert f"uid={UID} gid={GID} pid={os.getpid()}" in refusals[0].getMessage()


@pytest.mark.parametrize(
    "allowed",
    [{"allow_uids": (UID,)}, {"allow_groups": (OWN_GROUP,)}, {"allow_uids": (12345, UID)}],
)
async def test_we_are_served_when_allowed(tmp_path: Path, allowed: dict[str, Any]) -> None:
    async with open_daemon(config_for(tmp_path / "s.sock", **allowed)) as daemon:
        client = await LineClient.open(daemon.socket_path)
        assert (await client.command(cmd="ping")) == {"event": "ok", "cmd": "ping", "line": 1}


async def test_each_command_is_logged_once_with_the_peer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="playspeak.control")
    async with open_daemon(config_for(tmp_path / "s.sock")) as daemon:
        client = await LineClient.open(daemon.socket_path)
        text = "The front door has been open for ten minutes now, please close it."
        reply = await client.command(cmd="speak", text=text, priority="important")
        await client.events_until_end({reply["id"]})
        assert (await client.command(cmd="volume", level=40))["event"] == "ok"
        assert (await client.command(cmd="launch"))["event"] == "error"
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "playspeak.control.server"
        and r.levelno == logging.INFO
        and " line " in r.getMessage()
    ]
    who = f"(uid={UID} gid={GID} pid={os.getpid()})"
    assert len(lines) == 3, lines
    assert lines[0].endswith(
        f"{who} line 1: speak id='{reply['id']}' "
        "text='The front door has been open for ten mi…' priority='important'"
    )
    assert lines[1].endswith(f"{who} line 2: volume level=40.0")
    assert f"{who} line 3: refused: unknown command 'launch' (known: speak," in lines[2]


# ---- real other users -----------------------------------------------------------------------

CLIENT = """
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit(0)
data = b""
try:
    sock.sendall(b'{"cmd":"ping"}\\n')
    sock.shutdown(socket.SHUT_WR)
except BrokenPipeError:  # refused and closed before the ping got there
    pass
try:
    while chunk := sock.recv(4096):
        data += chunk
except ConnectionResetError:  # refused and closed with the ping unread; the line came first
    pass
print(data.decode().strip())
"""
SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter may live where nobody may look


async def as_nobody(path: Path, *, gid: int = NOBODY, groups: tuple[int, ...] = ()) -> str:
    """Connect as uid 65534 with primary group `gid` and supplementary `groups`, send a ping,
    and return what came back ("EACCES" when the socket's permissions kept it out)."""
    result = await trio.run_process(
        [SYSTEM_PYTHON, "-I", "-c", CLIENT, str(path)],
        user=NOBODY,
        group=gid,
        extra_groups=list(groups),
        env={},
        cwd="/",
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


@pytest.fixture
async def needs_system_python() -> None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} is needed to play another user")


@needs_root
async def test_other_users_by_socket_group_and_supplementary_groups(
    shared_dir: Path, needs_system_python: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="playspeak.control")
    group = other_group()
    ok = '{"event": "ok", "cmd": "ping", "line": 1}'
    config = config_for(
        shared_dir / "playspeak.sock", socket_group=group.gr_name, allow_groups=(group.gr_name,)
    )
    async with open_daemon(config) as daemon:
        path = daemon.socket_path
        assert await as_nobody(path) == "EACCES", "mode 0660: not in the socket's group"
        assert await as_nobody(path, groups=(group.gr_gid,)) == ok, "a supplementary group"
        assert await as_nobody(path, gid=group.gr_gid) == ok, "the primary group"
    served = [r.getMessage() for r in caplog.records if "line 1: ping" in r.getMessage()]
    assert len(served) == 2 and all(f"uid={NOBODY} " in line for line in served)


@needs_root
async def test_a_member_of_the_socket_group_who_is_not_allowed_is_refused(
    shared_dir: Path, needs_system_python: None
) -> None:
    group = other_group()
    config = config_for(
        shared_dir / "playspeak.sock", socket_group=group.gr_name, allow_uids=(12345,)
    )
    async with open_daemon(config) as daemon:
        answer = await as_nobody(daemon.socket_path, groups=(group.gr_gid,))
    assert answer == (
        '{"event": "error", "error": '
        f'"not allowed: uid {NOBODY} is not in control.allow_uids/allow_groups"}}'
    )
