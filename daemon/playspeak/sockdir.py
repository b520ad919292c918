"""Where the sockets live: systemd's runtime directory, the session's, or else a private
directory in /tmp that we make ourselves and refuse to use when someone else made it.

The same check serves the daemon (before it binds) and the clients (before they send text):
nobody else's directory may sit between a user and their daemon. No trio; plain system calls,
and paths as strings: pathlib (with the urllib.parse and ipaddress it imports) would slow
every `playspeak say` (docs/benchmarks.md, "Client start-up").
"""

from __future__ import annotations

import os
import stat

from playspeak.errors import ConfigError

SOCKET_NAME = "playspeak.sock"
PRIVATE_MODE = 0o700
ENV_SOCKET = "PLAYSPEAK_SOCKET"  # a stable name scripts and units rely on


# not typing's: importing typing slows every client verb (docs/benchmarks.md, "Client start-up")
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping  # not at run time: collections.abc slows a client too
    from os import PathLike

    AnyPath = str | PathLike[str]


def runtime_dir(env: Mapping[str, str] | None = None) -> str | None:
    """`$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`, the first when it names several),
    else `$XDG_RUNTIME_DIR`; None when neither is set."""
    env = os.environ if env is None else env
    systemd = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    session = env.get("XDG_RUNTIME_DIR", "")
    chosen = systemd or session
    return chosen or None


def fallback_dir(env: Mapping[str, str] | None = None) -> str:
    """`/tmp/playspeak-<uid>` (in `$TMPDIR` when that is set): ours only if we made it."""
    env = os.environ if env is None else env
    return os.path.join(env.get("TMPDIR") or "/tmp", f"playspeak-{os.getuid()}")


def default_socket_path(env: Mapping[str, str] | None = None) -> str:
    """The control socket in the runtime directory, else in the private fallback directory."""
    return os.path.join(runtime_dir(env) or fallback_dir(env), SOCKET_NAME)


def socket_path_from_env(env: Mapping[str, str] | None = None) -> str:
    """The control socket path a client should use: `$PLAYSPEAK_SOCKET` or the default."""
    env = os.environ if env is None else env
    value = env.get(ENV_SOCKET)
    return value or default_socket_path(env)


def _is_fallback(directory: AnyPath) -> bool:
    return os.path.abspath(directory) == os.path.abspath(fallback_dir())  # both normalised


def check_own_dir(
    directory: AnyPath, use: str, fix: str, *, forbidden: int = 0o077, follow: bool = False
) -> None:
    """Raise ConfigError unless `directory` is a directory that belongs to this user and whose
    mode grants nothing in `forbidden` (by default: nobody else may enter). A symlink is refused
    unless `follow`. `use` names what the directory is for and `fix` ends the message with
    what else the user can do."""
    try:
        st = os.stat(directory) if follow else os.lstat(directory)
    except OSError as e:
        raise ConfigError(
            f"cannot check the directory for {use} {directory}: {e.strerror}"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(
            f"{directory} is not a directory (a symlink or a file): refusing to use it for "
            f"{use}; remove it, {fix}"
        )
    if st.st_uid != os.getuid():
        raise ConfigError(
            f"{directory} belongs to uid {st.st_uid}, not to this user (uid {os.getuid()}): "
            f"someone else may have made it to take over {use}; refusing to use "
            f"it. Have it removed, {fix}"
        )
    if st.st_mode & forbidden:
        may = "write to it" if st.st_mode & forbidden & 0o022 else "reach into it"
        raise ConfigError(
            f"{directory} has mode {stat.S_IMODE(st.st_mode):04o}: other users may {may}; "
            f"refusing to use it for {use}. Run chmod 700 {directory}, {fix}"
        )


def check_private_dir(directory: AnyPath) -> None:
    """The socket directory's check: ours, a real directory (no symlink), mode & 0o077 == 0."""
    fix = "or set XDG_RUNTIME_DIR or PLAYSPEAK_SOCKET to a directory of your own"
    check_own_dir(directory, "the control socket", fix)


def prepare_socket_dir(directory: AnyPath) -> bool:
    """For a daemon about to bind a socket in `directory`: the fallback directory is created
    0700 or checked (ConfigError when it is not ours and private). Returns whether
    `directory` is the fallback (the caller then creates nothing itself)."""
    if not _is_fallback(directory):
        return False
    try:
        os.mkdir(directory, PRIVATE_MODE)
    except FileExistsError:
        pass
    except OSError as e:
        raise ConfigError(f"cannot create the socket directory {directory}: {e.strerror}") from None
    check_private_dir(directory)
    return True


def check_client_socket(path: AnyPath) -> None:
    """For a client about to send text to `path`: when the socket is in the fallback directory,
    that directory must be ours and private (ConfigError otherwise). A missing directory passes:
    connecting then fails with the usual "is it running?" message."""
    directory = os.path.dirname(os.fspath(path))
    if _is_fallback(directory) and os.path.lexists(directory):
        check_private_dir(directory)
