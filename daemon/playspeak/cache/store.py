"""The phrase cache's disk store: one file per entry, free of trio (callers run it in a thread).

An entry file is a fixed header (magic, payload length, SHA-256 of the payload) and the payload,
written to a temp file in the same directory, fsynced and renamed into place: a crash or a full
disk leaves at worst a stray temp file (removed at the next start), never a half entry under an
entry's name. A file whose length or checksum does not match is dropped on reading, so a
damaged entry is never played, only fetched again. Least recently used entries (by mtime,
touched on every hit) go first once the total passes `max_bytes`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playspeak.sockdir import check_own_dir

MAGIC = b"PSCACHE1"
HEADER = struct.Struct(">8sQ32s")  # magic, payload length, sha256(payload)
SUFFIX = ".entry"
TEMP_PREFIX = ".tmp-"
DEFAULT_MAX_BYTES = 200_000_000
# The largest entry kept (or a smaller cap): a phrase is seconds of audio, 16 MiB of MP3 is over
# half an hour, and a reply is held in memory until it ends before it is stored.
MAX_ENTRY_BYTES = 16 * 1024 * 1024


def cache_key(fields: dict[str, Any]) -> str:
    """A stable key for everything that shapes the audio (text, voice, model, format, …)."""
    wire = {k: v for k, v in fields.items() if v is not None and k != "request_id"}
    blob = json.dumps(wire, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def default_cache_dir(env: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """systemd's $CACHE_DIRECTORY (its first entry) if set, else $XDG_CACHE_HOME/playspeak,
    else ~/.cache/playspeak."""
    env = os.environ if env is None else env
    if env.get("CACHE_DIRECTORY"):
        return Path(env["CACHE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "playspeak"


def pack(payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload


def unpack(blob: bytes) -> bytes | None:
    """The payload of an entry file's bytes; None when it is damaged in any way."""
    if len(blob) < HEADER.size:
        return None
    magic, length, digest = HEADER.unpack_from(blob)
    payload = blob[HEADER.size :]
    if magic != MAGIC or length != len(payload) or hashlib.sha256(payload).digest() != digest:
        return None
    return payload


@dataclass
class _Entry:
    size: int  # bytes on disk
    used: float  # mtime: last stored or played


class PhraseStore:
    """Entries in one directory, with an in-memory index of sizes and last use.

    Every method blocks on disk I/O (run them in a worker thread from trio); a lock makes
    them safe to call from several threads."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_entry_bytes = min(max_bytes, MAX_ENTRY_BYTES)  # payload bytes
        self._index: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.dropped = 0  # damaged entries found and removed

    def open(self) -> None:
        """Create the directory (mode 0700), check that it is ours and that nobody else may
        write to it (ConfigError otherwise: whoever can write it decides what is spoken),
        index what is there, remove stray temp files and shrink to the cap."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Group and others may read (systemd's CacheDirectory= is 0755), never write; a
        # symlink is followed (DynamicUser= makes one into /var/cache/private).
        fix = "or set cache.dir to a directory of your own"
        check_own_dir(self.directory, "the phrase cache", fix, forbidden=0o022, follow=True)
        with self._lock:
            self._index.clear()
            for path in self.directory.iterdir():
                if path.name.startswith(TEMP_PREFIX):
                    _remove(path)  # a write that never finished
                elif path.name.endswith(SUFFIX):
                    try:
                        st = path.lstat()
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(st.st_mode):  # anything else is dropped when asked for
                        self._index[path.name[: -len(SUFFIX)]] = _Entry(st.st_size, st.st_mtime)
            self._evict(0)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def get(self, key: str) -> bytes | None:
        """The stored audio for `key`, or None: absent, or not a regular file of ours within
        the cap, or damaged (then removed). Never waits on what is there (a FIFO, a device)."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            with self._lock:
                self._index.pop(key, None)
                self.misses += 1
            return None
        except OSError:  # a symlink (ELOOP), unreadable, ...
            self._drop(key)
            return None
        try:
            payload = self._read(fd)
            if payload is None:
                self._drop(key)
                return None
            with self._lock:
                self.hits += 1
                with contextlib.suppress(OSError):
                    os.utime(fd)  # least recently *used*: a hit counts as use
                    st = os.fstat(fd)
                    self._index[key] = _Entry(st.st_size, st.st_mtime)
            return payload
        finally:
            os.close(fd)

    def _read(self, fd: int) -> bytes | None:
        """The payload of the open entry `fd`; None unless it is a regular file of this user
        of at most `max_bytes`, whole and matching its checksum."""
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                return None
            if st.st_size > self.max_bytes:
                return None
            parts, left = [], st.st_size + 1  # one byte more: a file that grew is damaged
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
                parts.append(chunk)
                left -= len(chunk)
        except OSError:
            return None
        return unpack(b"".join(parts))

    def _drop(self, key: str) -> None:
        """`key`'s entry cannot be used: a miss, and whatever is there goes (a directory
        stays: never removed recursively)."""
        _remove(self._path(key))
        with self._lock:
            self._index.pop(key, None)
            self.dropped += 1
            self.misses += 1

    def put(self, key: str, payload: bytes) -> bool:
        """Store atomically; False when it cannot be (e.g. disk full: nothing is left behind).
        An entry larger than `max_entry_bytes` is not stored."""
        if len(payload) > self.max_entry_bytes:
            return False
        blob = pack(payload)
        if len(blob) > self.max_bytes:
            return False
        # An unpredictable name, created here and now: nothing planted in its place is used.
        temp = self.directory / f"{TEMP_PREFIX}{secrets.token_hex(16)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(temp, flags, 0o600)
        except OSError:
            return False
        try:
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                mtime = os.fstat(fd).st_mtime
            finally:
                os.close(fd)
            os.replace(temp, self._path(key))
            _fsync_dir(self.directory)
        except OSError:
            _remove(temp)
            return False
        with self._lock:
            self._index[key] = _Entry(len(blob), mtime)
            self._evict(keep=1)
        return True

    def _evict(self, keep: int) -> None:
        """Remove least recently used entries until the total fits the cap (lock held); the
        `keep` most recent are spared (the one just stored)."""
        total = sum(e.size for e in self._index.values())
        if total <= self.max_bytes:
            return
        order = sorted(self._index.items(), key=lambda kv: kv[1].used)
        for key, entry in order[: max(0, len(order) - keep)]:
            if total <= self.max_bytes:
                break
            _remove(self._path(key))
            del self._index[key]
            total -= entry.size

    def clear(self) -> int:
        """Remove every entry; returns how many."""
        with self._lock:
            count = len(self._index)
            for key in list(self._index):
                _remove(self._path(key))
            self._index.clear()
        return count

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "dir": str(self.directory),
                "entries": len(self._index),
                "bytes": sum(e.size for e in self._index.values()),
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "damaged_dropped": self.dropped,
            }


def _remove(path: Path) -> None:
    """Unlink `path` if it can be (not a directory); errors are not ours to report here."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
