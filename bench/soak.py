"""Soak: thousands of utterances from concurrent clients through connection drops and short
token and connection lifetimes; nothing may be lost and memory must not grow.

    .venv/bin/python -m bench.soak [--utterances 2000] [--clients 20]

The local PlayAI-compatible server runs in this process (so faults can be injected); the
daemon is a real `playspeak run` process (so its memory is its own), writing its audio to
`wav:/dev/null`: this measures the link, the queue and the decoder, not the sound card.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
from pathlib import Path

import trio

from playspeak.localserver import LocalServer, open_local_server

KEY, USER = "soak-key-0123456789", "soak-user"
ENDINGS = ("finished", "cancelled", "failed")
TEXTS = [f"Soak test announcement number {n}, with a few more words." for n in range(20)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def wait_ready(notify: trio.socket.SocketType) -> None:
    with trio.fail_after(30):
        while b"READY=1" not in await notify.recv(4096):
            pass


async def client(path: Path, count: int, seed: int, tally: dict[str, int]) -> None:
    """One client: `count` utterances, one after the other, each waited for."""
    rng = random.Random(seed)
    stream = await trio.open_unix_socket(str(path))
    buffer = b""

    async def line() -> dict:
        nonlocal buffer
        while b"\n" not in buffer:
            data = await stream.receive_some(65536)
            if not data:
                raise RuntimeError("daemon closed the connection")
            buffer += data
        raw, buffer = buffer.split(b"\n", 1)
        return json.loads(raw)

    for _ in range(count):
        text = rng.choice(TEXTS)
        await stream.send_all(json.dumps({"cmd": "speak", "text": text}).encode() + b"\n")
        tally["requested"] += 1
        while (reply := await line())["event"] not in ("ok", "error"):
            pass
        if reply["event"] == "error":
            tally["rejected"] += 1
            continue
        while (event := await line())["event"] not in ENDINGS or event["id"] != reply["id"]:
            pass
        tally[event["event"]] += 1
    await stream.aclose()


async def drop_now_and_then(server: LocalServer, every: int, seed: int) -> None:
    """Arm a connection drop after a random number of requests (about `every`) again and
    again: the fault disarms itself when it fires."""
    rng = random.Random(seed)
    while True:
        if server.faults.drop_after_requests is None:
            server.faults.drop_after_requests = rng.randint(every // 2, every * 3 // 2)
        await trio.sleep(0.05)


async def soak(utterances: int, clients: int, lifetime: float, drop_every: int) -> int:
    with tempfile.TemporaryDirectory(prefix="playspeak-soak-") as tmp:
        tmpdir = Path(tmp)
        async with open_local_server(
            api_key=KEY,
            user_id=USER,
            first_byte_delay=0.0,
            realtime_factor=0.0,
            token_lifetime=lifetime,
            connection_lifetime=lifetime,
        ) as server:
            config = tmpdir / "playspeak.toml"
            config.write_text(
                f"[api]\nconnection_max_age = {lifetime}\nrequest_patience = 30.0\n"
                '[audio]\ndevice = "wav:/dev/null"\nsamplerate = 48000\n'
                '[speech]\nmax_queue = 1000\n[log]\nlevel = "warning"\n'
            )
            notify = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
            await notify.bind(str(tmpdir / "notify"))
            env = {
                **os.environ,
                "PLAYAI_API_KEY": KEY,
                "PLAYAI_USER_ID": USER,
                "PLAYSPEAK_API_URL": server.base_url,
                "NOTIFY_SOCKET": str(tmpdir / "notify"),
                "PLAYSPEAK_SOCKET": str(tmpdir / "playspeak.sock"),
            }
            command = [sys.executable, "-m", "playspeak", "run", "--config", str(config)]
            tally = dict.fromkeys(["requested", "rejected", *ENDINGS], 0)
            async with trio.open_nursery() as nursery:
                daemon = await nursery.start(
                    lambda task_status: trio.run_process(
                        command, env=env, check=False, task_status=task_status
                    )
                )
                await wait_ready(notify)
                start_rss = rss_kib(daemon.pid)
                nursery.start_soon(drop_now_and_then, server, drop_every, 1)
                began = trio.current_time()
                async with trio.open_nursery() as crowd:
                    for n in range(clients):
                        share = utterances // clients + (n < utterances % clients)
                        crowd.start_soon(client, tmpdir / "playspeak.sock", share, n, tally)
                elapsed = trio.current_time() - began
                end_rss = rss_kib(daemon.pid)
                daemon.send_signal(signal.SIGTERM)
                code = await daemon.wait()
                nursery.cancel_scope.cancel()
    ended = sum(tally[e] for e in ENDINGS) + tally["rejected"]
    lost = tally["requested"] - ended
    growth = (end_rss - start_rss) / 1024
    print(
        f"utterances requested {tally['requested']}  finished {tally['finished']}  "
        f"failed {tally['failed']}  cancelled {tally['cancelled']}  "
        f"rejected {tally['rejected']}  lost {lost}"
    )
    print(
        f"connections {server.stats.connections} (reconnects {server.stats.connections - 1}), "
        f"auth calls {server.stats.auth_calls}, in {elapsed:.1f} s"
    )
    print(
        f"daemon RSS start {start_rss / 1024:.1f} MiB, end {end_rss / 1024:.1f} MiB, "
        f"growth {growth:+.1f} MiB (target < 10)"
    )
    print(f"daemon exit status after SIGTERM: {code}")
    ok = lost == 0 and growth < 10 and code == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--lifetime", type=float, default=5.0, help="token and connection lifetime, seconds"
    )
    parser.add_argument(
        "--drop-every", type=int, default=50, help="drop the connection about every N requests"
    )
    args = parser.parse_args()
    return trio.run(soak, args.utterances, args.clients, args.lifetime, args.drop_every)


if __name__ == "__main__":
    raise SystemExit(main())
