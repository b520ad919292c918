"""Who is on the other end of a socket (SO_PEERCRED), who may be, and which group owns
the socket file. Group look-ups go through the system's databases (grp, pwd) and /proc."""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from playspeak.errors import ConfigError, PlayspeakError


@dataclass(frozen=True)
class Peer:
    """The connected process's credentials at connect time (None: unknown)."""

    uid: int | None = None
    gid: int | None = None
    pid: int | None = None

    def __str__(self) -> str:
        def show(value: int | None) -> str:
            return "?" if value is None else str(value)

        return f"uid={show(self.uid)} gid={show(self.gid)} pid={show(self.pid)}"


def peer_of(sock: socket.socket) -> Peer:
    """The credentials of the process connected to the Unix socket `sock`."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):  # not a Unix socket, or no SO_PEERCRED on this system
        return Peer()
    pid, uid, gid = struct.unpack("3i", raw)
    # pid 0: the peer lives in another pid namespace; its pid means nothing here.
    return Peer(uid=uid, gid=gid, pid=pid or None)


def resolve_group(name: str, key: str = "control.socket_group") -> int:
    """A group name or a numeric gid, as a gid; ConfigError naming `key` when there is none."""
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"{key}: no group named {name!r} on this system") from None


def give_to_group(path: Path, gid: int, name: str) -> None:
    """Make `gid` the group of the socket file `path` (its mode says what the group may do)."""
    try:
        os.chown(path, -1, gid)
    except OSError as e:
        raise PlayspeakError(
            f"cannot give {path} to group {name!r} (control.socket_group): {e.strerror}"
        ) from None


def _proc_groups(pid: int) -> set[int] | None:
    """The supplementary groups of process `pid` now, from /proc (None: not readable)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("Groups:"):
            return {int(g) for g in line.split()[1:] if g.isdigit()}
    return None


def _account_groups(uid: int, gid: int) -> set[int]:
    """The groups the account `uid` belongs to, from the group database."""
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        return set()
    try:
        return set(os.getgrouplist(user, gid))
    except OSError:
        return set()


def peer_groups(peer: Peer) -> set[int]:
    """The peer's primary group and supplementary groups. The process's own list (/proc) is
    preferred: it is what the kernel checks, and it is there for users not in pwd."""
    groups = {peer.gid} if peer.gid is not None else set()
    found = _proc_groups(peer.pid) if peer.pid is not None else None
    if found is None and peer.uid is not None and peer.gid is not None:
        found = _account_groups(peer.uid, peer.gid)
    return groups | (found or set())


@dataclass(frozen=True)
class AccessPolicy:
    """control.allow_uids / control.allow_groups. Empty lists: everyone who can open the socket
    (its mode and group decide that) is served."""

    uids: frozenset[int] = frozenset()
    gids: frozenset[int] = frozenset()
    group_names: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_config(cls, uids: Iterable[int], groups: Iterable[str]) -> AccessPolicy:
        """Resolve the group names now, so that a typo fails at start-up (ConfigError)."""
        names = tuple(groups)
        gids = frozenset(resolve_group(g, "control.allow_groups") for g in names)
        return cls(frozenset(uids), gids, names)

    @property
    def active(self) -> bool:
        return bool(self.uids or self.gids)

    def decided(self, peer: Peer) -> bool | None:
        """The answer when the uid list alone gives it (no look-up, never blocks); None when
        the peer's groups must be looked up (`allows`, from a worker thread)."""
        if not self.active or (peer.uid is not None and peer.uid in self.uids):
            return True
        return None if self.gids else False

    def allows(self, peer: Peer) -> bool:
        """True when `peer` may be served. May read /proc and the group database: call it from
        a worker thread (a remote user database can be slow)."""
        if not self.active:
            return True
        if peer.uid is not None and peer.uid in self.uids:
            return True
        return bool(self.gids and self.gids & peer_groups(peer))

    @staticmethod
    def refusal(peer: Peer) -> str:
        uid = "?" if peer.uid is None else peer.uid
        return f"not allowed: uid {uid} is not in control.allow_uids/allow_groups"
