"""systemd glue without libsystemd: socket activation (LISTEN_FDS) and sd_notify datagrams."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3


def listen_sockets(env: dict[str, str] | None = None) -> list[socket.socket]:
    """Sockets passed by systemd for this process (empty when not socket-activated).

    The variables are removed from os.environ so that child processes do not take them.
    """
    env = os.environ if env is None else env
    pid, count = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    if not pid or not count:
        return []
    if pid != str(os.getpid()):
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1\\nSTATUS=idle") to $NOTIFY_SOCKET; False when not under
    systemd. Never raises: a missing supervisor must not stop the daemon."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
        return True
    except OSError as e:
        log.debug("sd_notify failed: %s", e)
        return False
