"""The unit files: `systemd-analyze verify` accepts every one (with ExecStart pointed at this
venv's playspeak), the system service's security exposure meets the target, and the units agree
with each other and with the daemon."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from playspeak.cli_exit import EXIT_CONFIG
from playspeak.systemd import CONTROL_FD_NAME

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"
SYSTEM = ["playspeak.service", "playspeak.socket"]
USER = ["user/playspeak.service", "user/playspeak.socket"]
VOICE = "playspeak-voice.service"  # the house's voice server (serve-local)
PLAYSPEAK = Path(sys.executable).with_name("playspeak")
EXPOSURE_TARGET = 2.5  # systemd-analyze security: "OK" and below


def settings(name: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> every value assigned in unit file `name`, in order."""
    found: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault((section, key.strip()), []).append(value.strip())
    return found


def one(name: str, section: str, key: str) -> str:
    (value,) = settings(name)[(section, key)]
    return value


def installed_copies(names: list[str], dest: Path) -> list[Path]:
    """The units as an install would leave them: ExecStart= names a playspeak that exists."""
    dest.mkdir(exist_ok=True)
    copies = []
    for name in names:
        text = (UNITS / name).read_text()
        text = re.sub(r"^ExecStart=\S+", f"ExecStart={PLAYSPEAK}", text, flags=re.M)
        copy = dest / Path(name).name
        copy.write_text(text)
        copies.append(copy)
    return copies


def analyze(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    program = shutil.which("systemd-analyze")
    if program is None:
        pytest.fail("systemd-analyze not found: apt-get install systemd", pytrace=False)
    return subprocess.run([program, *args], capture_output=True, text=True, timeout=60, env=env)


def test_the_system_units_verify(tmp_path: Path) -> None:
    copies = installed_copies(SYSTEM, tmp_path / "system")
    result = analyze("verify", *map(str, copies))
    about_ours = [
        line for line in (result.stdout + result.stderr).splitlines() if "playspeak" in line
    ]
    assert result.returncode == 0 and not about_ours, result.stdout + result.stderr


def test_the_user_units_verify(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    copies = installed_copies(USER, tmp_path / "user")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    result = analyze("--user", "verify", *map(str, copies), env=env)
    about_ours = [
        line for line in (result.stdout + result.stderr).splitlines() if "playspeak" in line
    ]
    assert result.returncode == 0 and not about_ours, result.stdout + result.stderr


def test_the_unmodified_service_only_misses_its_executable() -> None:
    """The shipped file itself: nothing wrong but the program not being installed here."""
    result = analyze("verify", str(UNITS / "playspeak.service"), str(UNITS / "playspeak.socket"))
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "playspeak" in line and "is not executable" not in line
    ]
    assert not problems, result.stdout + result.stderr


@pytest.mark.parametrize("service", [SYSTEM[0], USER[0], VOICE])
def test_each_service_exposure_meets_the_target(service: str) -> None:
    """`systemd-analyze security --offline=true` on the shipped file (it rates a user unit as if
    the system manager ran it: as root, so the sandbox has to make up for that)."""
    result = analyze("security", "--offline=true", "--no-pager", str(UNITS / service))
    name = re.escape(Path(service).name)
    found = re.search(rf"Overall exposure level for {name}: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= EXPOSURE_TARGET, result.stdout


def test_the_voice_server_unit_verifies_and_serves_the_house_with_credentials(
    tmp_path: Path,
) -> None:
    (copy,) = installed_copies([VOICE], tmp_path)
    result = analyze("verify", str(copy))
    about_ours = [line for line in (result.stdout + result.stderr).splitlines() if VOICE in line]
    assert result.returncode == 0 and not about_ours, result.stdout + result.stderr
    joined = (UNITS / VOICE).read_text().replace("\\\n", " ")  # continuation lines
    command = re.findall(r"^ExecStart=(.*)$", joined, flags=re.M)[0].split()
    assert command[1:4] == ["serve-local", "--host", "0.0.0.0"]
    for bound in ("--client-auth-rate", "--client-connections", "--client-requests"):
        assert bound in command
    assert one(VOICE, "Service", "LoadCredential").startswith("playai-api-key:")
    assert one(VOICE, "Service", "RestartPreventExitStatus") == str(EXIT_CONFIG)


@pytest.mark.parametrize("service", [SYSTEM[0], USER[0], VOICE])
def test_each_service_limits_its_open_files(service: str) -> None:
    limit = int(one(service, "Service", "LimitNOFILE"))
    assert 1024 <= limit <= 65536  # room above the client limits, and a bound below the kernel's


def test_the_user_service_sandbox_goes_through_a_private_user_namespace() -> None:
    """In a user manager, mount and kernel protections need PrivateUsers=yes; no capabilities."""
    unit = settings(USER[0])
    for key, value in {
        "PrivateUsers": "yes",
        "CapabilityBoundingSet": "",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",  # the configuration in ~/.config stays readable
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
    }.items():
        assert unit[("Service", key)] == [value], key


@pytest.mark.parametrize(("service", "socket"), [(SYSTEM[0], SYSTEM[1]), (USER[0], USER[1])])
def test_service_and_socket_agree(service: str, socket: str) -> None:
    assert one(socket, "Socket", "ListenStream") == one(
        service, "Service", "Environment"
    ).removeprefix("PLAYSPEAK_SOCKET=")
    assert one(socket, "Socket", "FileDescriptorName") == CONTROL_FD_NAME
    assert one(service, "Service", "Type") == "notify"
    assert one(service, "Service", "NotifyAccess") == "main"
    assert int(one(service, "Service", "WatchdogSec")) > 0
    assert one(service, "Service", "Restart") == "on-failure"
    assert one(service, "Service", "RestartPreventExitStatus") == str(EXIT_CONFIG)
    assert f"{Path(socket).name}" in one(service, "Unit", "Requires")


def test_the_system_service_is_hardened() -> None:
    unit = settings(SYSTEM[0])
    expected = {
        "DynamicUser": "yes",
        "SupplementaryGroups": "audio",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "UMask": "0077",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "DevicePolicy": "closed",
        "DeviceAllow": "char-alsa rw",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert unit[("Service", key)] == [value], key
    assert unit[("Service", "SystemCallFilter")] == [
        "@system-service",
        "~@privileged @resources",
        "sched_setscheduler sched_setparam sched_setattr",
    ]
    # The key comes as a credential; with no key file the empty fallback keeps the unit startable.
    assert unit[("Service", "LoadCredential")] == ["playai-api-key:/etc/playspeak/api-key"]
    assert unit[("Service", "SetCredential")] == ["playai-api-key:\\n"]


def test_the_dynamic_user_is_not_named_like_the_socket_group() -> None:
    """systemd refuses to allocate a dynamic user when a static group of the same name exists
    (dynamic-user.c: EILSEQ), and installing creates the socket's group."""
    user = one(SYSTEM[0], "Service", "User")  # without User= it would be "playspeak"
    assert user != one(SYSTEM[1], "Socket", "SocketGroup")


def test_the_service_does_not_own_the_socket_directory() -> None:
    """systemd chowns a RuntimeDirectory= recursively to the dynamic user at every start and
    removes it at stop: that would take the socket from its group and unlink it under
    playspeak.socket. The socket unit owns /run/playspeak instead."""
    assert ("Service", "RuntimeDirectory") not in settings(SYSTEM[0])
    assert one(SYSTEM[1], "Socket", "ListenStream").startswith("/run/playspeak/")


def test_write_execute_memory_stays_allowed() -> None:
    """sounddevice's stream callback is a cffi callback, which needs writable+executable memory:
    under MemoryDenyWriteExecute=yes (emulated here with the kernel's PR_SET_MDWE) it cannot be
    created, so the unit must not set it."""
    assert settings(SYSTEM[0]).get(("Service", "MemoryDenyWriteExecute"), ["no"]) == ["no"]
    probe = (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "if libc.prctl(65, 1, 0, 0, 0) != 0: sys.exit(3)  # PR_SET_MDWE, REFUSE_EXEC_GAIN\n"
        "from _sounddevice import ffi\n"
        "try:\n"
        "    ffi.callback('PaStreamCallback', lambda *a: 0)\n"
        "except MemoryError:\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30)
    if result.returncode == 3:
        pytest.skip("this kernel has no PR_SET_MDWE to emulate MemoryDenyWriteExecute")
    assert result.returncode == 0, result.stderr
