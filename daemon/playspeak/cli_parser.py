"""The command line's grammar (argparse), built when a verb needs it: a script's `playspeak
say` (cli._read_say) sends its line without it (argparse brings re and enum, which would delay
the line: docs/benchmarks.md, "Client start-up"). It knows the words, not what they do: cli.py
hands in each verb's action."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping

from playspeak.priority_names import PRIORITIES
from playspeak.style_names import CAPITALS, PUNCTUATION

# not typing's: importing typing slows every client verb (docs/benchmarks.md, "Client start-up")
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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
    (argparse makes a parser, a formatter and gettext lookups for each: for all verbs, a cost
    paid by every shell script's `playspeak say`; docs/benchmarks.md, "Client start-up")."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        pass


def package_version() -> str:
    """The installed package's version (pyproject.toml's), or "unknown" outside an install."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("playspeak")
    except PackageNotFoundError:
        return "unknown"


class _Version(argparse.Action):
    """--version, looked up only when asked for: importlib.metadata costs every other
    command its imports (pathlib, zipfile, …)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"playspeak {package_version()}")  # on stdout, as argparse's own action does
        parser.exit()


Action = Callable[[argparse.Namespace], int]
DESCRIPTION = (
    "The `playspeak` command: run the daemon, talk to it, or run the local PlayAI-compatible "
    "server."
)


def build_parser(
    only: str | None = None, actions: Mapping[str, Action] | None = None
) -> argparse.ArgumentParser:
    """The whole command line; with `only`, the top level and that verb alone (the whole one
    when there is no such verb, so that the error lists them). Each verb's `func` is its entry
    in `actions` (None without: for completion and help)."""
    parser = argparse.ArgumentParser(
        prog="playspeak", description=DESCRIPTION, formatter_class=_Formatter
    )
    parser.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        default=argparse.SUPPRESS,
        help="show the package's version and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, socket: bool = True) -> Any:  # an ArgumentParser, or _Unbuilt
        if only is not None and name != only:
            return _Unbuilt()
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Formatter)
        p.set_defaults(func=(actions or {}).get(name))
        if socket:
            p.add_argument(
                "--socket",
                help="control socket (default: $PLAYSPEAK_SOCKET or "
                "$XDG_RUNTIME_DIR/playspeak.sock)",
            )
        return p

    run = add("run", "run the daemon")
    for p in (
        run,
        add("check-config", "validate and print the effective configuration (secrets redacted)"),
    ):
        p.add_argument(
            "--config",
            help="TOML file (default: $PLAYSPEAK_CONFIG, "
            "~/.config/playspeak/playspeak.toml, /etc/playspeak/playspeak.toml)",
        )
        p.add_argument("--device", help="output device: name, index or wav:PATH")
        p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    demo = add("demo", "start the daemon, speak a greeting, stop", socket=False)
    demo.add_argument("--config")
    demo.add_argument("--device")
    demo.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    demo.add_argument(
        "--wav",
        default="playspeak-greeting.wav",
        help="where the speech goes when there is no sound card",
    )
    demo.add_argument("text", nargs="?", help="what to say")

    say = add("say", "speak text (arguments, or standard input)")
    say.add_argument("text", nargs="*")
    say.add_argument(
        "--wait",
        action="store_true",
        help="return when it was heard; exit 1 if it failed or was cancelled",
    )
    say.add_argument("--voice")
    say.add_argument("--speed", type=float)
    say.add_argument("--model")
    say.add_argument("--priority", choices=PRIORITIES)
    say.add_argument("--volume", type=float, help="0–100 for this utterance")
    say.add_argument("--id", help="your id for this utterance")
    # The voice's settings: the speak's fields of the same names; a voice that cannot honour
    # one refuses the speak, naming why (its `refuses` in `playspeak voices`)
    say.add_argument("--pitch", type=float, help="-100–100, 0: the voice's own")
    say.add_argument(
        "--pitch-range", type=float, help="-100 (monotone) – 100 (twice the voice's own)"
    )
    say.add_argument("--punctuation", choices=PUNCTUATION, help="which is spoken by name")
    say.add_argument("--capitals", choices=CAPITALS, help="how a capital letter is marked")
    say.add_argument(
        "--spelling", action="store_true", default=None, help="say it letter by letter"
    )
    say.add_argument("--language", help="a voice of this language (de, fr, …) unless --voice")
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
        ("stop", "stop the utterance speaking now; the queue goes on (cancel: all)"),
        ("skip", "the same as stop"),
        ("pause", "pause speech"),
        ("resume", "resume speech"),
        ("ping", "check the daemon answers"),
        ("status", "show the state"),
    ):
        add(name, help)
    add("voices", "list the voices a speak may name (--voice ID)")
    cancel = add("cancel", "cancel an utterance by id, or all")
    cancel.add_argument("--id")
    cancel.add_argument("--mine", action="store_true", help=argparse.SUPPRESS)
    volume = add("volume", "get or set the volume")
    volume.add_argument("level", nargs="?", type=float, help="0–100")
    add("watch", "print every utterance's events")
    cache = add(
        "cache",
        "the phrase cache: stats, clear, or warm FILE (one phrase a line, fetched ahead)",
    )
    cache.add_argument("action", choices=("stats", "clear", "warm"))
    cache.add_argument("file", nargs="?", help="warm: the phrases, one a line (- for stdin)")
    cache.add_argument("--voice", help="warm: the voice (default: the configured one)")
    add("devices", "list output devices", socket=False)
    serve = add(
        "serve-local",
        "run the local PlayAI-compatible server (see serve-local --help)",
        socket=False,
    )
    serve.add_argument("rest", nargs=argparse.REMAINDER)
    if only is not None and only not in sub.choices:
        return build_parser(actions=actions)
    return parser
