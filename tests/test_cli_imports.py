"""The client verbs cost next to nothing: `playspeak --help`, `say`, `status` and the other verbs
that only talk to the socket import neither trio, numpy, PyAV, httpx, sounddevice nor the
configuration module. What a process imported is read from `python -X importtime`, run on the
installed `playspeak` command against a fake daemon: one line in, one line out."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import ANY

import pytest

PLAYSPEAK = str(Path(sys.executable).with_name("playspeak"))
HEAVY = {
    "trio",
    "trio_websocket",
    "numpy",
    "av",
    "httpx",
    "sounddevice",
    "playspeak.config",
    "playspeak.daemon",
}
REPLIES = {
    "speak": {"event": "queued", "id": "u1"},
    "status": {"event": "status", "state": "idle", "queued": 0},
    "volume": {"event": "volume", "level": 50.0},
    **{verb: {"event": "ok", "cmd": verb, "line": 1} for verb in ("ping", "pause", "resume")},
}


@contextmanager
def fake_daemon(path: Path) -> Iterator[list[dict]]:
    """A Unix socket at `path` that answers each command line with one reply line (a subscriber
    gets one event more, then the connection closes); yields the commands it received."""
    received: list[dict] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            with conn, conn.makefile("rb") as lines:
                for line in lines:
                    command = json.loads(line)
                    received.append(command)
                    reply = REPLIES.get(command["cmd"], {"event": "ok"})
                    conn.sendall((json.dumps(reply) + "\n").encode())
                    if command["cmd"] == "subscribe":
                        conn.sendall(b'{"event": "started", "id": "u1"}\n')
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)


def imported_by(*args: str, env: dict[str, str]) -> tuple[set[str], subprocess.CompletedProcess]:
    """Run `playspeak ARGS` under `-X importtime`: the modules it imported, and the result (its
    stderr without the import lines)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", PLAYSPEAK, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    modules, other = set(), []
    for line in result.stderr.splitlines():
        if line.startswith("import time:"):
            modules.add(line.rsplit("|", 1)[1].strip())
        else:
            other.append(line)
    result.stderr = "\n".join(other)
    return modules, result


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m in HEAVY or m.split(".")[0] in HEAVY)


def test_help_imports_nothing_heavy() -> None:
    modules, result = imported_by("--help", env={})
    assert result.returncode == 0 and "say" in result.stdout
    assert "playspeak.cli" in modules  # the import lines were read
    assert heavy(modules) == []


@pytest.mark.parametrize(
    ("args", "cmd"),
    [
        (["say", "hi"], "speak"),
        (["say", "--priority", "important", "hi"], "speak"),
        (["status"], "status"),
        (["stop"], "stop"),
        (["skip"], "skip"),
        (["cancel", "--id", "u1"], "cancel"),
        (["volume", "50"], "volume"),
        (["pause"], "pause"),
        (["resume"], "resume"),
        (["ping"], "ping"),
        (["cache", "stats"], "cache"),
        (["cache", "clear"], "cache"),
    ],
)
def test_client_verbs_import_nothing_heavy(tmp_path: Path, args: list[str], cmd: str) -> None:
    sock = tmp_path / "playspeak.sock"
    with fake_daemon(sock) as received:
        modules, result = imported_by(*args, env={"PLAYSPEAK_SOCKET": str(sock)})
    assert (result.returncode, result.stderr) == (0, "")
    assert [c["cmd"] for c in received] == [cmd]
    assert "playspeak.client" in modules
    assert heavy(modules) == []
    assert not modules & NEEDLESS


# What argparse's help formatter would bring for its terminal width (cli._Formatter reads it
# without them), and pathlib (sockdir works with strings): a few ms on every client verb's run.
NEEDLESS = {"shutil", "bz2", "lzma", "pathlib"}


def test_a_verb_builds_its_own_parser_only_and_errors_still_list_every_verb() -> None:
    from playspeak.cli_parser import build_parser

    def verbs(parser: argparse.ArgumentParser) -> list[str]:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return list(sub.choices)

    everything = verbs(build_parser())
    assert len(everything) > 10 and "say" in everything
    assert verbs(build_parser(only="say")) == ["say"]
    assert verbs(build_parser(only="sya")) == everything  # "invalid choice … (choose from …)"
    args = build_parser(only="say").parse_args(["say", "--priority", "important", "hi"])
    assert (args.priority, args.text) == ("important", ["hi"])


def test_watch_imports_nothing_heavy(tmp_path: Path) -> None:
    sock = tmp_path / "playspeak.sock"
    with fake_daemon(sock):
        modules, result = imported_by("watch", env={"PLAYSPEAK_SOCKET": str(sock)})
    assert result.stdout.splitlines() == ['{"event": "ok"}', '{"event": "started", "id": "u1"}']
    assert result.returncode == 1 and "closed the connection" in result.stderr
    assert heavy(modules) == []


def test_the_daemon_loads_no_test_tooling() -> None:
    """trio.testing imports pytest: a tenth of a second of every daemon start."""
    probe = "import sys, playspeak.daemon; print(sorted(m for m in sys.modules if m.startswith(T)))"
    probe = probe.replace("T", repr(("pytest", "_pytest", "trio.testing")))
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_say_prints_the_id_the_daemon_gave(tmp_path: Path) -> None:
    sock = tmp_path / "playspeak.sock"
    with fake_daemon(sock) as received:
        _modules, result = imported_by("say", "hello", "there", env={"PLAYSPEAK_SOCKET": str(sock)})
    assert result.stdout == "u1\n"
    assert received == [{"cmd": "speak", "text": "hello there"}]


def test_the_check_sees_a_heavy_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """check-config needs the configuration module: the same check reports it."""
    for name in ("PLAYSPEAK_CONFIG", "PLAYSPEAK_API_URL", "PLAYAI_API_KEY", "PLAYAI_USER_ID"):
        monkeypatch.delenv(name, raising=False)
    env = {"XDG_CONFIG_HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    modules, result = imported_by("check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert "playspeak.config" in heavy(modules)


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["say", "hello", "there"], {"cmd": "speak", "text": "hello there"}),
        (
            ["say", "--priority", "important", "--no-chime", "hi"],
            {"cmd": "speak", "text": "hi", "priority": "important", "chime": False},
        ),
        (
            [
                "say",
                *("--pitch", "40", "--pitch-range", "20", "--punctuation", "all"),
                *("--capitals", "spell", "--spelling", "--language", "de", "hi"),
            ],
            {"cmd": "speak", "text": "hi", "pitch": 40.0, "pitch_range": 20.0}
            | {"punctuation": "all", "capitals": "spell", "spelling": True, "language": "de"},
        ),
        (["stop"], {"cmd": "stop"}),
        (["cancel"], {"cmd": "cancel"}),
    ],
)
def test_a_plain_verb_sends_its_line_before_loading_argparse_json_or_socket(
    tmp_path: Path, args: list[str], command: dict
) -> None:
    """What `playspeak say TEXT` (or `stop`) had imported when its line reached the daemon.
    argparse, json and the socket module bring re, enum and selectors: ~8 ms of every script's
    say, before the daemon could start speaking. (C's stderr is unbuffered: every import line
    written before the client's send is in the pipe by the time the line arrives.)"""
    path = tmp_path / "playspeak.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()
        server.settimeout(60)
        client = subprocess.Popen(
            [sys.executable, "-X", "importtime", PLAYSPEAK, *args],
            env={**os.environ, "PLAYSPEAK_SOCKET": str(path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            conn, _ = server.accept()
            with conn, conn.makefile("rb") as lines:
                line = lines.readline()
                assert client.stderr is not None
                before_send = _available(client.stderr.fileno()).decode()
                conn.sendall(
                    b'{"event": "queued", "id": "u1"}\n'
                    if args[0] == "say"
                    else b'{"event": "ok"}\n'
                )
                out, _err = client.communicate(timeout=60)
        finally:
            client.kill()
            client.wait()
    assert json.loads(line) == command
    assert (client.returncode, out) == (0, b"u1\n" if args[0] == "say" else b"")
    imported = {row.rsplit("|", 1)[1].strip() for row in before_send.splitlines()}
    assert "playspeak.client" in imported  # the import lines were read
    assert imported & {"argparse", "json", "socket", "re", "enum", "selectors"} == set()
    assert heavy(imported) == []


def _available(fd: int) -> bytes:
    """What the pipe holds now, without waiting for more."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    os.set_blocking(fd, True)
    return data


READ_QUICKLY = [
    ["say", "hi"],
    ["say", "hello", "there"],
    ["say", ""],
    ["say", "a-b", "x--y", "@file", "k=v"],
    ["say", "--wait", "hi"],
    ["say", "hi", "there", "--wait"],
    ["say", "--priority", "important", "--chime", "Smoke", "alarm"],
    ["say", "--priority=text", "--no-chime", "--no-cache", "--cache", "hi"],
    ["say", "--speed", "1.5", "--volume=40", "--voice", "s3://v", "--model", "m", "x"],
    ["say", "--id", "door-1", "--socket", "/run/x.sock", "--socket=", "hi"],
    ["say", "--volume", "1e1", "--speed", "inf", "hi", "--wait", "--wait"],
    ["say", "--pitch", "40", "--pitch-range=-20", "--punctuation", "all", "hi"],
    ["say", "--capitals", "icon", "--capitals=none", "hi", "--spelling"],
    ["say", "--spelling", "--language", "de", "--pitch=-1e1", "--punctuation=none", "hi"],
]
FOR_ARGPARSE = [
    ["say"],  # standard input
    ["say", "-5", "degrees"],
    ["say", "--", "-x"],
    ["say", "--prio", "text", "hi"],  # argparse's abbreviation
    ["say", "--priority", "loud", "hi"],  # its error
    ["say", "--speed", "fast", "hi"],
    ["say", "--punctuation", "lots", "hi"],  # its error
    ["say", "--capitals", "Spell", "hi"],
    ["say", "--pitch", "-20", "hi"],  # a value argparse reads as a negative number
    ["say", "--pitch-rang", "5", "hi"],
    ["say", "--speed=", "hi"],
    ["say", "--volume", "-5", "hi"],
    ["say", "--voice"],
    ["say", "hello", "--wait", "world"],  # its error: text after an option
    ["say", "--wait=1", "hi"],
    ["say", "-h"],
    ["say", "--help"],
    ["say", "--mine", "hi"],
    ["status"],
    ["--help"],
]


def test_a_say_read_without_argparse_is_read_as_argparse_reads_it() -> None:
    """Each command line the quick reading takes gives the daemon what argparse's reading
    gives; every other one goes to argparse (and its help or errors)."""
    from playspeak.cli import _read_say, _say_call
    from playspeak.cli_parser import build_parser

    for argv in READ_QUICKLY:
        assert _read_say(argv) == _say_call(build_parser().parse_args(argv)), argv
    for argv in FOR_ARGPARSE:
        assert _read_say(argv) is None, argv


def test_the_quick_reading_knows_every_option_of_say_and_no_other() -> None:
    from playspeak.cli import SAY_SWITCHES, SAY_VALUES
    from playspeak.cli_parser import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    declared = {o for a in sub.choices["say"]._actions for o in a.option_strings}
    assert declared - {"-h", "--help"} == {f"--{n}" for n in SAY_VALUES} | set(SAY_SWITCHES)


def test_the_light_modules_know_the_priorities_the_configuration_knows() -> None:
    """The CLI and the SSIP door keep their own copy (the configuration module is heavy)."""
    from playspeak import cli
    from playspeak.config import PRIORITIES
    from playspeak.ssip import settings

    assert cli.PRIORITIES == settings.PRIORITIES == PRIORITIES


def test_plain_verbs_are_ones_argparse_reads_as_defaults_alone() -> None:
    """`playspeak stop` and the like skip argparse: it would read them as the verb alone."""
    from playspeak.cli import PLAIN_VERBS
    from playspeak.cli_parser import build_parser

    for verb in PLAIN_VERBS:
        extra = {"id": None, "mine": False} if verb == "cancel" else {}
        assert vars(build_parser().parse_args([verb])) == {
            "command": verb,
            "socket": None,
            "func": ANY,
            **extra,
        }


@pytest.mark.parametrize(
    "fields",
    [
        {"text": "hello there", "priority": "important"},
        {"text": 'quotes " and \\ back\nslash\t\x00\x1f\x7f', "id": "a/b"},
        {"text": "ünïcödé — 日本語 🙂 \ud800", "voice": "s3://voice"},
        {"volume": 50.0, "speed": 1.25, "level": 7, "chime": True, "cache": False},
        {"volume": float("nan"), "speed": float("inf"), "level": float("-inf"), "n": -0.0},
        {"nested": {"a": [1, "x"]}, "list": ["y", 2.5]},
    ],
)
def test_a_command_line_is_exactly_what_json_dumps_writes(fields: dict) -> None:
    """The client writes commands without importing json; the bytes are json's."""
    from playspeak.client import _command

    line = _command("speak", **fields, skipped=None)
    assert line == (json.dumps({"cmd": "speak", **fields}) + "\n").encode()


def test_lines_are_split_as_they_arrive() -> None:
    from playspeak.client import _Lines

    lines = _Lines()
    assert lines.take() is None
    lines.feed(b'{"a": 1}\n{"b"')
    assert lines.take() == b'{"a": 1}'
    assert lines.take() is None
    lines.feed(b": 2}\n\n")
    assert (lines.take(), lines.take(), lines.take()) == (b'{"b": 2}', b"", None)


@pytest.mark.parametrize("verb", ["ping", "pause", "resume"])
def test_a_verb_with_a_bare_reply_prints_it_too(tmp_path: Path, verb: str) -> None:
    sock = tmp_path / "playspeak.sock"
    with fake_daemon(sock):
        _, result = imported_by(verb, env={"PLAYSPEAK_SOCKET": str(sock)})
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout) == {"cmd": verb}


def test_a_reader_that_went_away_is_no_traceback(tmp_path: Path) -> None:
    # `playspeak status | head -1`: head has gone by the time the rest is written
    sock = tmp_path / "playspeak.sock"
    read_end, write_end = os.pipe()
    os.close(read_end)
    with fake_daemon(sock), os.fdopen(write_end, "wb") as gone:
        result = subprocess.run(
            [sys.executable, PLAYSPEAK, "status"],
            env={**os.environ, "PLAYSPEAK_SOCKET": str(sock)},
            stdout=gone,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert (result.returncode, result.stderr) == (1, "")


def test_cache_warm_of_a_missing_file_says_so_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    _, result = imported_by("cache", "warm", str(missing), env={})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"playspeak: cache warm: cannot read {missing}: No such file or directory"
    )


def test_version_prints_the_installed_package_version() -> None:
    from importlib.metadata import version

    done = subprocess.run(
        [sys.executable, "-m", "playspeak", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"playspeak {version('playspeak')}"


def test_every_verb_of_the_grammar_has_its_action_and_no_action_lacks_a_verb() -> None:
    from playspeak import cli
    from playspeak.cli_parser import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(cli._actions())


def source_imports(module: str) -> set[str]:
    """The playspeak modules `module`'s source names in any import (lazy ones too)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n.startswith("playspeak")}


@pytest.mark.parametrize(
    ("module", "must_not_import"),
    [
        ("playspeak.cli_parser", "playspeak.cli"),  # the grammar is handed its actions
        ("playspeak.cli_daemon", "playspeak.cli"),  # exit codes live in cli_exit
        ("playspeak.mqtt.topics", "playspeak.config"),  # takes the [mqtt] values, not the section
    ],
)
def test_no_import_circle(module: str, must_not_import: str) -> None:
    assert must_not_import not in source_imports(module)
