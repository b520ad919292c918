"""Bash completion: completions/playspeak.bash is what playspeak.completion writes from the
CLI's parsers, and real bash, with the script sourced, completes verbs, options and values."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from playspeak.cli_parser import build_parser
from playspeak.completion import bash_completion

SCRIPT = Path(__file__).resolve().parent.parent / "completions" / "playspeak.bash"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not found")


def complete(*words: str) -> list[str]:
    """What bash offers for the command line `words` (the last one is being typed)."""
    line = " ".join(f"'{w}'" for w in words)
    result = subprocess.run(
        [
            "bash",
            "--norc",
            "-c",
            f'source "$0"; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _playspeak; '
            'printf "%s\\n" "${COMPREPLY[@]}"',
            str(SCRIPT),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [w for w in result.stdout.splitlines() if w]


def test_the_script_is_the_one_the_parsers_write() -> None:
    assert SCRIPT.read_text() == bash_completion(), (
        "completions/playspeak.bash is stale: python -m playspeak.completion > "
        "completions/playspeak.bash"
    )


def test_it_lists_every_verb() -> None:
    subparsers = build_parser()._subparsers
    assert subparsers is not None
    verbs = set(subparsers._group_actions[0].choices)  # type: ignore[arg-type]
    offered = complete("playspeak", "")
    assert verbs <= set(offered) and {"say", "stop", "serve-local", "--version"} <= set(offered)
    assert complete("playspeak", "st") == ["stop", "status"]


def test_it_completes_options_and_their_values() -> None:
    assert "--priority" in complete("playspeak", "say", "--p")
    assert complete("playspeak", "say", "--priority", "") == [
        "important",
        "message",
        "text",
        "notification",
        "progress",
    ]
    assert complete("playspeak", "cache", "") == ["stats", "clear", "warm"]
    assert complete("playspeak", "serve-local", "--real") == ["--realtime-factor", "--realistic"]
    assert "--mine" not in complete("playspeak", "cancel", "--")  # a hidden option stays hidden
    assert complete("playspeak", "run", "--config", "") == []  # a file: bash's own completion
