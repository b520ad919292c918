"""Bash completion for `playspeak`, written from the command line's own parsers (cli_parser and
serve-local's), so that it cannot drift from them: `python -m playspeak.completion` prints the
script that completions/playspeak.bash holds (a test holds the two to the same text). No I/O
but that print."""

from __future__ import annotations

import argparse

from playspeak.cli_parser import build_parser
from playspeak.localserver.cli import build_parser as build_serve_local_parser

HEADER = """\
# bash completion for playspeak: verbs, their options, and the values an option or argument
# allows. Written by `python -m playspeak.completion` from the CLI's parsers: do not edit.
# Install: copy to ~/.local/share/bash-completion/completions/playspeak (or
# /usr/share/bash-completion/completions/playspeak), or source it from ~/.bashrc.
"""


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option a user may type (hidden ones left out), in the parser's order."""
    return [
        option
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for option in action.option_strings
    ]


def _values(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """The options that take a value: their choices ([] for free text or a file name)."""
    return {
        option: [str(c) for c in action.choices or ()]
        for action in parser._actions
        if action.option_strings and action.nargs != 0
        for option in action.option_strings
    }


def _argument_choices(parser: argparse.ArgumentParser) -> list[str]:
    """The choices of the first positional argument, if it has any (cache's action)."""
    for action in parser._actions:
        if (
            not action.option_strings
            and action.choices
            and not isinstance(action, argparse._SubParsersAction)
        ):
            return [str(c) for c in action.choices]
    return []


def _verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    verbs = dict(subparsers.choices)
    verbs["serve-local"] = build_serve_local_parser()  # its own parser reads what follows it
    return verbs


def bash_completion() -> str:
    """The completion script's text."""
    parser = build_parser()
    verbs = _verbs(parser)
    top = " ".join([*verbs, *_options(parser)])
    options_cases, values_cases, arguments_cases = [], [], []
    for name, sub in verbs.items():
        options_cases.append(f'        {name}) words="{" ".join(_options(sub))}" ;;')
        for option, choices in _values(sub).items():
            values_cases.append(f'        "{name} {option}") words="{" ".join(choices)}" ;;')
        if choices := _argument_choices(sub):
            arguments_cases.append(f'        {name}) words="{" ".join(choices)}" ;;')
    return (
        HEADER
        + f"""
_playspeak() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD - 1]}}
    local verb=${{COMP_WORDS[1]}} words=
    COMPREPLY=()
    if ((COMP_CWORD == 1)); then
        mapfile -t COMPREPLY < <(compgen -W "{top}" -- "$cur")
        return
    fi
    # an option's value: its choices, else nothing (bash completes file names)
    case "$verb $prev" in
{chr(10).join(values_cases)}
        *) words=- ;;
    esac
    if [ "$words" != - ]; then
        [ -n "$words" ] && mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
        return
    fi
    words=
    if [[ $cur == -* ]]; then
        case $verb in
{chr(10).join(options_cases)}
        esac
    elif ((COMP_CWORD == 2)); then
        case $verb in
{chr(10).join(arguments_cases)}
        esac
    fi
    [ -n "$words" ] && mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
}}
complete -o default -F _playspeak playspeak
"""
    )


if __name__ == "__main__":
    print(bash_completion(), end="")
