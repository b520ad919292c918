"""Across hosts for real: a daemon in a network namespace of the test's own (a veth pair, the
test's own addresses) speaks through serve-local in the root namespace, reached only by
PLAYSPEAK_API_URL=http://ADDR:PORT with the credentials. The daemon's control socket, its
sd_notify socket and the PulseAudio test sink are Unix sockets in the file system: they reach
across namespaces, the loopback does not."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from playspeak.localserver import open_local_server

from daemon_helpers import LineClient, daemon_process, speak

KEY, USER = "kitchen-key-0123", "kitchen-user-4567"


@dataclass(frozen=True)
class Namespace:
    name: str
    server_address: str  # in the root namespace
    room_address: str  # in the namespace


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def room() -> Iterator[Namespace]:
    """A network namespace joined to the root one by a veth pair, with a /30 of its own."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's ip")
    tag = os.urandom(3).hex()
    name, outside, inside = f"psroom-{tag}", f"psh{tag}", f"psn{tag}"
    net = f"10.{random.randrange(200, 250)}.{random.randrange(256)}.{random.randrange(64) * 4}"
    base = net.rsplit(".", 1)
    server, room_address = f"{base[0]}.{int(base[1]) + 1}", f"{base[0]}.{int(base[1]) + 2}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    try:
        steps = [
            ("link", "add", outside, "type", "veth", "peer", "name", inside),
            ("link", "set", inside, "netns", name),
            ("addr", "add", f"{server}/30", "dev", outside),
            ("link", "set", outside, "up"),
            ("-n", name, "addr", "add", f"{room_address}/30", "dev", inside),
            ("-n", name, "link", "set", inside, "up"),
            ("-n", name, "link", "set", "lo", "up"),
        ]
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                pytest.skip(f"cannot join the namespace (ip {' '.join(step)}): {done.stderr}")
        yield Namespace(name, server, room_address)
    finally:
        _ip("link", "del", outside)  # its peer goes with it
        _ip("netns", "del", name)


async def test_a_daemon_in_another_room_speaks_through_the_house_server(
    room: Namespace, tmp_path: Path
) -> None:
    async with open_local_server(
        host=room.server_address,
        api_key=KEY,
        user_id=USER,
        first_byte_delay=0,
        realtime_factor=0,
        synth="generated",
    ) as server:
        env = {
            "PLAYSPEAK_API_URL": f"http://{room.server_address}:{server.port}",
            "PLAYAI_API_KEY": KEY,
            "PLAYAI_USER_ID": USER,
        }
        log = tmp_path / "daemon.log"
        wrapper = ("ip", "netns", "exec", room.name)
        async with daemon_process(tmp_path, env, stderr=log, wrapper=wrapper) as daemon:
            client = await LineClient.open(daemon.socket_path)
            first = await speak(client, "Dinner is ready.")
            second = await speak(client, "Come to the kitchen.")
            events = await client.events_until_end({first, second})
            await client.stream.aclose()
        ends = [e for e in events if e["event"] in ("finished", "failed", "cancelled")]
        assert [(e["event"], e["source"]) for e in ends] == [("finished", "service")] * 2, ends
        assert server.stats.auth_calls >= 1 and server.stats.connections >= 1
        assert server.stats.requests >= 2
    said = log.read_text()
    assert f"connected to ws://{room.server_address}:{server.port}/" in said
    assert KEY not in said and USER not in said  # the daemon never logs a secret
