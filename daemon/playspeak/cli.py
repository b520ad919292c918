"""The `playspeak` command: run the daemon, talk to it, or run the local PlayAI-compatible
server."""

from __future__ import annotations

# Only what a client needs is imported here: `playspeak say` costs little more than a raw socket
# write. argparse (with the re and enum it brings) comes with cli_parser, which a `playspeak
# say` with its options spelled out, and `stop` and the other verbs alone, do without; trio and
# the configuration machinery come with cli_daemon (run, check-config, demo).
# tests/test_cli_imports.py guards this.
import sys

from playspeak.cli_exit import EXIT_CONFIG, EXIT_FAILED
from playspeak.cli_exit import fail as _fail
from playspeak.client import BlockingClient, ClientError
from playspeak.errors import AudioDeviceError, ConfigError
from playspeak.priority_names import PRIORITIES
from playspeak.style_names import CAPITALS, PUNCTUATION

# not typing's: importing typing slows every client verb (docs/benchmarks.md, "Client start-up")
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any


def _json(value: object, indent: int | None = None) -> str:
    import json  # what a verb prints comes after its command went out

    return json.dumps(value, indent=indent)


def cmd_run(args: argparse.Namespace) -> int:
    from playspeak import cli_daemon

    return cli_daemon.run(args)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate; print the effective configuration as JSON, secrets redacted (exit 2: invalid)."""
    from playspeak import cli_daemon

    return cli_daemon.check_config(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from playspeak import cli_daemon

    return cli_daemon.demo(args)


def cmd_devices(args: argparse.Namespace) -> int:
    from playspeak.audio.devices import list_devices

    devices = list_devices()
    if not devices:
        return _fail(
            "PortAudio sees no output devices: start PulseAudio/PipeWire, or use "
            'device = "wav:/path/out.wav"'
        )
    for d in devices:
        mark = "*" if d.get("is_default") else " "
        print(
            f"{mark} {d['index']:>3}  {d['name']}  ({d.get('hostapi', '')}, "
            f"{int(d.get('default_samplerate', 0))} Hz, {d.get('max_channels', '?')} ch)"
        )
    return 0


def _text_from(args: argparse.Namespace) -> str:
    if args.text:
        return " ".join(args.text)
    return " ".join(sys.stdin.read().split())


def cmd_say(args: argparse.Namespace) -> int:
    return _say(**_say_call(args))


def _say_call(args: argparse.Namespace) -> dict[str, Any]:
    """`_say`'s arguments from argparse's reading of the command line."""
    return {
        "text": _text_from(args),
        "socket": args.socket,
        "wait": args.wait,
        **{name: getattr(args, name) for name in SAY_FIELDS},
    }


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def read(value: str) -> str:
        if value not in choices:
            raise ValueError(value)
        return value

    return read


# say's options, for reading a script's `playspeak say` without argparse (cli_parser declares
# the same ones to argparse, with their help; a test holds the two to the same set).
SAY_VALUES: dict[str, Callable[[str], object]] = {  # --NAME VALUE or --NAME=VALUE
    "socket": str,
    "voice": str,
    "speed": float,
    "model": str,
    "priority": _one_of(PRIORITIES),
    "volume": float,
    "id": str,
    "pitch": float,
    "pitch-range": float,
    "punctuation": _one_of(PUNCTUATION),
    "capitals": _one_of(CAPITALS),
    "language": str,
}
SAY_SWITCHES = {  # --NAME: (field, value)
    "--wait": ("wait", True),
    "--chime": ("chime", True),
    "--no-chime": ("chime", False),
    "--cache": ("cache", True),
    "--no-cache": ("cache", False),
    "--spelling": ("spelling", True),
}
SAY_FIELDS = (  # the speak's fields, as argparse names them (--pitch-range: pitch_range)
    "voice",
    "speed",
    "priority",
    "model",
    "id",
    "volume",
    "chime",
    "cache",
    "pitch",
    "pitch_range",
    "punctuation",
    "capitals",
    "spelling",
    "language",
)


def _read_say(argv: list[str]) -> dict[str, Any] | None:
    """`_say`'s arguments for a `say` command line that argparse would read the same way:
    options spelled out in full with valid values, the text one run of words. None for any
    other (abbreviations, --help, text on standard input, mistakes): argparse reads those."""
    if argv[:1] != ["say"]:
        return None
    call: dict[str, Any] = {"socket": None, "wait": False, **dict.fromkeys(SAY_FIELDS)}
    words: list[str] = []
    words_ended = False  # an option came after the words: argparse takes no more
    tokens = iter(argv[1:])
    for token in tokens:
        if not token.startswith("-"):
            if words_ended:
                return None
            words.append(token)
            continue
        words_ended = bool(words)
        if token in SAY_SWITCHES:
            name, on = SAY_SWITCHES[token]
            call[name] = on
            continue
        name, equals, value = token.removeprefix("--").partition("=")
        read = SAY_VALUES.get(name) if token.startswith("--") else None
        if read is None:
            return None
        if not equals:
            value = next(tokens, "-")
            if value.startswith("-"):  # none, or what argparse may take for an option
                return None
        try:
            call[name.replace("-", "_")] = read(value)
        except ValueError:
            return None
    if not words:
        return None
    return {"text": " ".join(words), **call}


# Verbs that alone on the command line leave argparse nothing to read but the verb (`stop` and
# `cancel` most of all should reach the daemon at once).
PLAIN_VERBS = frozenset({"stop", "skip", "pause", "resume", "cancel", "ping", "status"})


def _say(text: str, *, socket: str | None, wait: bool, **fields: Any) -> int:
    if not text:
        return _fail("nothing to say: give text as arguments or on standard input")
    with BlockingClient(socket) as client:
        event = client.say(text, wait=wait, **fields)
    if not wait:
        print(event["id"])
        return 0
    if reason := event.get("fallback_reason"):
        print(f"playspeak: spoken by the fallback voice: {reason}", file=sys.stderr)
    if warning := event.get("warning"):
        print(f"playspeak: warning: {warning}", file=sys.stderr)
    if event["event"] == "finished":
        return 0
    return _fail(f"{event['event']}: {event.get('reason', '')}".rstrip(": "))


def request_verb(cmd: str, **fields_from_args: Callable[[argparse.Namespace], Any]) -> Any:
    def run(args: argparse.Namespace) -> int:
        fields = {name: get(args) for name, get in fields_from_args.items()}
        return _request(cmd, socket=args.socket, **fields)

    return run


def _request(cmd: str, *, socket: str | None, **fields: Any) -> int:
    with BlockingClient(socket) as client:
        reply = client.request(cmd, **fields)
    reply.pop("event", None)
    reply.pop("line", None)
    if reply:  # every verb says what the daemon answered, even a bare {"cmd": "ping"}
        print(_json(reply, indent=2 if cmd == "status" else None))
    return 0


def cmd_voices(args: argparse.Namespace) -> int:
    """One voice a line: id, language, engine, name (and what it refuses)."""
    with BlockingClient(args.socket) as client:
        reply = client.request("voices")
    for v in reply["voices"]:
        refuses = f"\tno {', '.join(v['refuses'])}" if v.get("refuses") else ""
        print(f"{v['id']}\t{v['language'] or '-'}\t{v['engine']}\t{v['name']}{refuses}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """stats / clear through the daemon (it owns the cache); warm: each line of FILE fetched
    into the cache, one at a time, without playing it."""
    phrases = _read_phrases(args.file) if args.action == "warm" and args.file else []
    with BlockingClient(args.socket) as client:
        if args.action != "warm":
            reply = client.request("cache", action=args.action)
            reply.pop("event", None)
            reply.pop("line", None)
            reply.pop("cmd", None)
            print(_json(reply, indent=2))
            return 0
        if not args.file:
            return _fail("cache warm needs a FILE (one phrase a line; - for standard input)")
        failed = 0
        for phrase in phrases:
            client.request("cache", action="warm", text=phrase, voice=args.voice)
            event = client.next_event()
            while event.get("event") != "warmed":
                event = client.next_event()
            failed += event["result"] == "failed"
            reason = f": {event['reason']}" if event.get("reason") else ""
            print(f"{event['result']}{reason}\t{phrase}")
        return EXIT_FAILED if failed else 0


def _read_phrases(path: str) -> list[str]:
    """FILE's non-empty lines (- is standard input), read before the daemon is asked anything."""
    try:
        with open(path, encoding="utf-8") if path != "-" else sys.stdin as lines:
            return [line.strip() for line in lines if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(
            f"cache warm: cannot read {path}: {getattr(e, 'strerror', None) or e}"
        ) from e


class UsageError(Exception):
    """A command line that names something unusable: one line on stderr, exit 2 as argparse."""


def cmd_watch(args: argparse.Namespace) -> int:
    with BlockingClient(args.socket) as client:
        # The reply first: whoever reads this output knows from then on nothing is missed.
        print(_json(client.request("subscribe")), flush=True)
        try:
            while True:
                print(_json(client.next_event()), flush=True)
        except KeyboardInterrupt:
            return 0


def cmd_serve_local(args: argparse.Namespace) -> int:
    from playspeak.localserver.cli import main as serve_local_main

    return serve_local_main(args.rest)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-local"]:  # its own options, parsed by its own parser
        from playspeak.localserver.cli import main as serve_local_main

        return serve_local_main(argv[1:])
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # here, where a reader that went away is caught
        return code
    except (ConfigError, UsageError) as e:
        return _fail(str(e), EXIT_CONFIG)
    except (ClientError, AudioDeviceError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `playspeak voices | head`: the reader has what it wanted
        import os

        # what is still buffered goes nowhere, instead of failing again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _dispatch(argv: list[str]) -> int:
    # A script's `playspeak say TEXT` or `playspeak stop`: the line goes out first.
    if (call := _read_say(argv)) is not None:
        return _say(**call)
    if len(argv) == 1 and argv[0] in PLAIN_VERBS:
        return _request(argv[0], socket=None)
    from playspeak.cli_parser import build_parser

    verb = argv[0] if argv and not argv[0].startswith("-") else None
    args = build_parser(only=verb, actions=_actions()).parse_args(argv)
    return args.func(args)


def _actions() -> dict[str, Callable[[argparse.Namespace], int]]:
    """What each verb of cli_parser's grammar does."""
    plain = ("stop", "skip", "pause", "resume", "ping", "status")
    return {
        "run": cmd_run,
        "check-config": cmd_check_config,
        "demo": cmd_demo,
        "say": cmd_say,
        **{name: request_verb(name) for name in plain},
        "voices": cmd_voices,
        "cancel": request_verb(
            "cancel", id=lambda a: a.id, scope=lambda a: "self" if a.mine else None
        ),
        "volume": request_verb("volume", level=lambda a: a.level),
        "watch": cmd_watch,
        "cache": cmd_cache,
        "devices": cmd_devices,
        "serve-local": cmd_serve_local,
    }
