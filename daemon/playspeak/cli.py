"""The `playspeak` command: run the daemon, talk to it, or run the local PlayAI-compatible
server."""

from __future__ import annotations

# Only what a client needs is imported here: `playspeak say` costs little more than a raw socket
# write. trio and the configuration machinery come with cli_daemon (run, check-config, demo);
# tests/test_cli_imports.py guards this.
import argparse
import json
import os
import sys
from collections.abc import Callable

from playspeak.client import BlockingClient, ClientError
from playspeak.errors import AudioDeviceError, ConfigError

TYPE_CHECKING = False  # not typing's: importing typing alone takes ~4 ms
if TYPE_CHECKING:
    from typing import Any

EXIT_FAILED, EXIT_CONFIG = 1, 2


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"playspeak: {message}", file=sys.stderr)
    return code


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
    text = _text_from(args)
    if not text:
        return _fail("nothing to say: give text as arguments or on standard input")
    fields = {
        "voice": args.voice,
        "speed": args.speed,
        "priority": args.priority,
        "model": args.model,
        "id": args.id,
        "volume": args.volume,
        "chime": args.chime,
        "cache": args.cache,
    }
    with BlockingClient(args.socket) as client:
        event = client.say(text, wait=args.wait, **fields)
    if not args.wait:
        print(event["id"])
        return 0
    if event["event"] == "finished":
        return 0
    return _fail(f"{event['event']}: {event.get('reason', '')}".rstrip(": "))


def _simple(cmd: str, **fields_from_args: Callable[[argparse.Namespace], Any]) -> Any:
    def run(args: argparse.Namespace) -> int:
        fields = {name: get(args) for name, get in fields_from_args.items()}
        with BlockingClient(args.socket) as client:
            reply = client.request(cmd, **fields)
        reply.pop("event", None)
        reply.pop("line", None)
        if len(reply) > 1:
            print(json.dumps(reply, indent=2 if cmd == "status" else None))
        return 0

    return run


def cmd_cache(args: argparse.Namespace) -> int:
    """stats / clear through the daemon (it owns the cache); warm: each line of FILE fetched
    into the cache, one at a time, without playing it."""
    with BlockingClient(args.socket) as client:
        if args.action != "warm":
            reply = client.request("cache", action=args.action)
            reply.pop("event", None)
            reply.pop("line", None)
            reply.pop("cmd", None)
            print(json.dumps(reply, indent=2))
            return 0
        if not args.file:
            return _fail("cache warm needs a FILE (one phrase a line; - for standard input)")
        with open(args.file, encoding="utf-8") if args.file != "-" else sys.stdin as lines:
            phrases = [line.strip() for line in lines if line.strip()]
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


def cmd_watch(args: argparse.Namespace) -> int:
    with BlockingClient(args.socket) as client:
        # The reply first: whoever reads this output knows from then on nothing is missed.
        print(json.dumps(client.request("subscribe")), flush=True)
        try:
            while True:
                print(json.dumps(client.next_event()), flush=True)
        except KeyboardInterrupt:
            return 0


def cmd_serve_local(args: argparse.Namespace) -> int:
    from playspeak.localserver.cli import main as serve_local_main

    return serve_local_main(args.rest)


class _Formatter(argparse.HelpFormatter):
    """argparse's, sized to the terminal without importing shutil (which brings bz2 and lzma:
    a few ms on every run, since argparse makes a formatter for each add_argument)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_columns() - 2)  # argparse's own margin


def _columns() -> int:
    try:
        return int(os.environ.get("COLUMNS", "")) or 80
    except ValueError:
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return 80


class _Unbuilt:
    """Stands in for the parser of a verb this run does not use: its arguments are not built
    (argparse makes a parser, a formatter and gettext lookups for each: ~10 ms for all verbs,
    paid by every shell script's `playspeak say`)."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        pass


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, the top level and that verb alone (the whole one
    when there is no such verb, so that the error lists them)."""
    parser = argparse.ArgumentParser(
        prog="playspeak", description=__doc__, formatter_class=_Formatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help: str, socket: bool = True
    ) -> Any:  # an ArgumentParser, or an _Unbuilt one
        if only is not None and name != only:
            return _Unbuilt()
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Formatter)
        p.set_defaults(func=func)
        if socket:
            p.add_argument(
                "--socket",
                help="control socket (default: $PLAYSPEAK_SOCKET or "
                "$XDG_RUNTIME_DIR/playspeak.sock)",
            )
        return p

    run = add("run", cmd_run, "run the daemon")
    for p in (
        run,
        add(
            "check-config",
            cmd_check_config,
            "validate and print the effective configuration (secrets redacted)",
        ),
    ):
        p.add_argument(
            "--config",
            help="TOML file (default: $PLAYSPEAK_CONFIG, "
            "~/.config/playspeak/playspeak.toml, /etc/playspeak/playspeak.toml)",
        )
        p.add_argument("--device", help="output device: name, index or wav:PATH")
        p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    demo = add("demo", cmd_demo, "start the daemon, speak a greeting, stop", socket=False)
    demo.add_argument("--config")
    demo.add_argument("--device")
    demo.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    demo.add_argument(
        "--wav",
        default="playspeak-greeting.wav",
        help="where the speech goes when there is no sound card",
    )
    demo.add_argument("text", nargs="?", help="what to say")

    say = add("say", cmd_say, "speak text (arguments, or standard input)")
    say.add_argument("text", nargs="*")
    say.add_argument(
        "--wait",
        action="store_true",
        help="return when it was heard; exit 1 if it failed or was cancelled",
    )
    say.add_argument("--voice")
    say.add_argument("--speed", type=float)
    say.add_argument("--model")
    say.add_argument(
        "--priority", choices=("important", "message", "text", "notification", "progress")
    )
    say.add_argument("--volume", type=float, help="0–100 for this utterance")
    say.add_argument("--id", help="your id for this utterance")
    say.add_argument(
        "--chime",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="play (or, with --no-chime, skip) the chime before it",
    )
    say.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --no-cache, neither play it from nor store it in the phrase cache",
    )

    for name, help in (
        ("stop", "stop the utterance speaking now"),
        ("skip", "skip the utterance speaking now"),
        ("pause", "pause speech"),
        ("resume", "resume speech"),
        ("ping", "check the daemon answers"),
        ("status", "show the state"),
    ):
        add(name, _simple(name), help)
    cancel = add(
        "cancel",
        _simple("cancel", id=lambda a: a.id, scope=lambda a: "self" if a.mine else None),
        "cancel an utterance by id, or all",
    )
    cancel.add_argument("--id")
    cancel.add_argument("--mine", action="store_true", help=argparse.SUPPRESS)
    volume = add("volume", _simple("volume", level=lambda a: a.level), "get or set the volume")
    volume.add_argument("level", nargs="?", type=float, help="0–100")
    add("watch", cmd_watch, "print every utterance's events")
    cache = add(
        "cache",
        cmd_cache,
        "the phrase cache: stats, clear, or warm FILE (one phrase a line, fetched ahead)",
    )
    cache.add_argument("action", choices=("stats", "clear", "warm"))
    cache.add_argument("file", nargs="?", help="warm: the phrases, one a line (- for stdin)")
    cache.add_argument("--voice", help="warm: the voice (default: the configured one)")
    add("devices", cmd_devices, "list output devices", socket=False)
    serve = add(
        "serve-local",
        cmd_serve_local,
        "run the local PlayAI-compatible server (see serve-local --help)",
        socket=False,
    )
    serve.add_argument("rest", nargs=argparse.REMAINDER)
    if only is not None and only not in sub.choices:
        return build_parser()
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-local"]:  # its own options, parsed by its own parser
        from playspeak.localserver.cli import main as serve_local_main

        return serve_local_main(argv[1:])
    verb = argv[0] if argv and not argv[0].startswith("-") else None
    args = build_parser(only=verb).parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        return _fail(str(e), EXIT_CONFIG)
    except (ClientError, AudioDeviceError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return 130
