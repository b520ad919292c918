"""The one reader of configuration and secret files: whatever is at the path (a directory, a
FIFO, a device, bytes that are not UTF-8, far too much), the answer is the text or a
ConfigError in the usual "where, line n: reason" form. Blocks on the file (call it from start-up
or SIGHUP handling, never from a hot path); never hangs on a FIFO."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from playspeak.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a configuration file is a few KB; beyond this it is not one
MAX_SECRET_BYTES = 64 << 10

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_text_file(
    path: str | Path, where: str, what: str, max_bytes: int, *, private: bool = False
) -> str:
    """The UTF-8 text of the regular file `path`. `where` begins every error message and `what`
    names the file's role ("configuration"); with `private`, a file that group or others may
    read is refused."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (and fstat then refuses it).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {what}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise ConfigError(f"{where}: cannot read {what}: it is {kind}, not a regular file")
        if private and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{where} is readable by other users: run chmod 600 {path}")
        data = _read_at_most(fd, max_bytes + 1)
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {what}: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ConfigError(f"{where}: cannot read {what}: larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        # No byte values: the file may hold a secret.
        raise ConfigError(f"{where}, line {line}: {what} is not UTF-8 (column {column})") from None


def _read_at_most(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    while limit > 0 and (chunk := os.read(fd, min(limit, 65536))):
        parts.append(chunk)
        limit -= len(chunk)
    return b"".join(parts)
