"""systemd glue without libsystemd: socket activation (LISTEN_FDS), sd_notify datagrams, and the
notifier task that sends READY, keeps STATUS current and feeds the watchdog."""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import Callable, Mapping, MutableMapping
from typing import Protocol

import trio

from playspeak.audio.devicestate import DeviceState
from playspeak.health import Health, LinkHealth
from playspeak.log import redact
from playspeak.playai.linkstate import UP, LinkState

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
CONTROL_FD_NAME = "control"  # FileDescriptorName= of playspeak.socket
STATUS_PERIOD = 1.0  # seconds between looks at the daemon's state
READY_WHEN = ("socket", "link")
_STATUS_MAX = 200  # characters of STATUS=; systemctl shows one line


# ---- socket activation ------------------------------------------------------------------------


def listen_sockets(env: MutableMapping[str, str] | None = None) -> list[socket.socket]:
    """Sockets systemd passed to this process, the one named `control` first; empty when not
    socket-activated (no LISTEN_FDS, or LISTEN_PID is another process).

    Takes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES out of `env` (default os.environ) so that
    child processes do not take them too, and makes the descriptors close-on-exec. Blocks never.
    """
    env = os.environ if env is None else env
    pid, count = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    if not pid or not count or pid != str(os.getpid()):
        return []
    names = env.get("LISTEN_FDNAMES")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    try:
        order = fd_order(int(count), names.split(":") if names else None)
    except ValueError:
        log.warning("ignoring LISTEN_FDS=%r: not a positive number", count)
        return []
    sockets = []
    for fd in order:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                log.warning("ignoring passed file descriptor %d: not a socket", fd)
                continue
        except OSError as e:
            log.warning("ignoring passed file descriptor %d: %s", fd, e.strerror)
            continue
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


def fd_order(count: int, names: list[str] | None) -> list[int]:
    """The passed descriptors (3, 4, …) with the one named `control` first. No I/O.

    Raises ValueError when `count` is not positive. Names that do not match the count (a broken
    LISTEN_FDNAMES) are ignored: the first descriptor is then the control socket.
    """
    if count < 1:
        raise ValueError(count)
    fds = list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))
    if names is None or len(names) != count or CONTROL_FD_NAME not in names:
        if names is not None:
            log.warning(
                "no passed socket is named %r (LISTEN_FDNAMES=%s): using the first",
                CONTROL_FD_NAME,
                ":".join(names),
            )
        return fds
    first = fds.pop(names.index(CONTROL_FD_NAME))
    return [first, *fds]


# ---- sd_notify ----------------------------------------------------------------------------------


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1\\nSTATUS=idle") to $NOTIFY_SOCKET; False when not under
    systemd or when the datagram could not be sent.

    Never blocks (a supervisor that does not read loses the message rather than stalling the
    trio loop) and never raises: a missing supervisor must not stop the daemon.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(message.encode("utf-8"), address)
        return True
    except OSError as e:
        log.debug("sd_notify failed: %s", e)
        return False


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """WatchdogSec= in seconds when systemd expects WATCHDOG=1 from this process, else None
    (no WATCHDOG_USEC, or WATCHDOG_PID names another process)."""
    env = os.environ if env is None else env
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number", usec)
        return None
    return value / 1e6 if value > 0 else None


# ---- STATUS= from the daemon's state -------------------------------------------------------------


def describe(health: Health) -> str:
    """One line for STATUS=: no audio device / stalled / speaking / reconnecting / connecting /
    paused / idle, with the queue length. No I/O."""
    tail = f" ({health.queued} queued)" if health.queued else ""
    device = health.device
    if device.state in (DeviceState.LOST, DeviceState.CLOSED) or not device.running:
        return "no audio device" + tail + (f": {device.error}" if device.error else "")
    links = health.links
    stalled = [link for link in links if link.state is LinkState.STALLED]
    if stalled:
        return "stalled" + tail + f": {stalled[0].last_error or 'the TTS service'}"
    if health.speaking is not None:
        return f"speaking {health.speaking}".rstrip() + tail
    # "idle": closed by choice, opened again by the next utterance: nothing is wrong
    if links and not any(link.state in UP for link in links):
        return _link_trouble(links) + tail
    if health.paused:
        return "paused" + tail
    return "idle" + tail


def _link_trouble(links: tuple[LinkHealth, ...]) -> str:
    states = {link.state for link in links}
    error = next((link.last_error for link in links if link.last_error), "")
    if LinkState.AUTH_FAILED in states:
        text = "reconnecting: the TTS service refused the credentials"
    elif LinkState.RECONNECTING in states:
        text = "reconnecting to the TTS service"
    else:
        return "connecting to the TTS service"
    return f"{text}: {error}" if error else text


def _one_line(text: str) -> str:
    text = " ".join(redact(text).split())
    return text if len(text) <= _STATUS_MAX else text[: _STATUS_MAX - 1] + "…"


def progressing(health: Health) -> bool:
    """False while a reply from the TTS service is overdue (a link is stalled): the watchdog
    is then not fed. Idle, speaking, or retrying a connection all count as progress. No I/O."""
    return not any(link.state is LinkState.STALLED for link in health.links)


def link_up(health: Health) -> bool:
    """True once a websocket to the TTS service is open (for `ready_when = "link"`)."""
    return any(link.state is LinkState.CONNECTED for link in health.links)


# ---- the notifier task ---------------------------------------------------------------------------


class HasHealth(Protocol):
    def health(self) -> Health: ...


class Notifier:
    """Tells systemd how the daemon is doing: READY=1, STATUS= on change, WATCHDOG=1.

    Runs in the daemon's root nursery, on the trio thread; WATCHDOG=1 therefore stops when the
    trio loop hangs, and also while a reply from the TTS service is overdue beyond its timeout
    (a stall the link could not yet fail over): systemd restarts the service if that lasts.
    """

    def __init__(
        self,
        daemon: HasHealth,
        *,
        ready_when: str = "socket",
        status_period: float = STATUS_PERIOD,
        send: Callable[[str], bool] = notify,
    ) -> None:
        if ready_when not in READY_WHEN:
            raise ValueError(f"ready_when must be one of {', '.join(READY_WHEN)}")
        self.daemon = daemon
        self.ready_when = ready_when
        self.status_period = status_period
        self.send = send
        self.ready = False
        self.last_status: str | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled: READY=1 (with ready_when "socket", before reporting started), then
        STATUS= whenever it changes (looked at every `status_period`, or every half watchdog
        interval if that is shorter) and WATCHDOG=1 every half WatchdogSec. Returns at once when
        not started by systemd (no $NOTIFY_SOCKET)."""
        if not os.environ.get("NOTIFY_SOCKET"):
            task_status.started()
            return
        interval = watchdog_interval()
        self.update(ready=self.ready_when == "socket")
        task_status.started()
        async with trio.open_nursery() as nursery:
            period = self.status_period
            if interval is not None:
                nursery.start_soon(self._watchdog, interval / 2)
                period = min(period, interval / 2)
            while True:
                await trio.sleep(period)
                self.update()

    def update(self, *, ready: bool = False) -> None:
        """Look at the daemon's state once; send READY=1 and STATUS= as due. Never blocks, and
        never raises for the daemon's status: a bug there must not stop the daemon."""
        try:
            health: Health | None = self.daemon.health()
        except Exception:
            log.debug("no status for systemd", exc_info=True)
            health = None
        lines = []
        if not self.ready and (
            ready or (self.ready_when == "link" and health is not None and link_up(health))
        ):
            self.ready = True
            lines.append("READY=1")
        text = None if health is None else _one_line(describe(health))
        if text is not None and text != self.last_status:
            self.last_status = text
            lines.append(f"STATUS={text}")
        if lines:
            self.send("\n".join(lines))

    async def _watchdog(self, every: float) -> None:
        while True:
            if self._progressing():
                self.send("WATCHDOG=1")
            await trio.sleep(every)

    def _progressing(self) -> bool:
        try:
            health = self.daemon.health()
        except Exception:  # a bug in the status is not a hung daemon: keep feeding
            return True
        if progressing(health):
            return True
        log.debug("not feeding the watchdog: a reply from the TTS service is overdue")
        return False
