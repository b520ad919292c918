"""The commented example configuration (config/playspeak.toml), written from the schema: every
section with its doc, every key with its doc, what it allows, its environment variable and its
default. `python -m playspeak.config.example > config/playspeak.toml` rewrites the file; a test
fails when the file and the schema differ."""

from __future__ import annotations

import inspect
import sys
import textwrap

from playspeak.config.schema import Entry, entries_of
from playspeak.config.sections import ENV_CONFIG, SECTIONS, entries

WIDTH = 99


def _comment(text: str) -> list[str]:
    """`text` (paragraphs separated by blank lines) as comment lines of at most WIDTH."""
    lines: list[str] = []
    for paragraph in text.split("\n\n"):
        lines += ["#"] if lines else []
        lines += textwrap.wrap(
            " ".join(paragraph.split()),
            width=WIDTH,
            initial_indent="# ",
            subsequent_indent="# ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    return lines


def key_doc(entry: Entry) -> str:
    """The comment above a key: its doc, what it allows, its environment variable, whether a
    reload applies it."""
    text = entry.doc
    if entry.allowed:
        text += f" Allowed: {entry.allowed}."
    if entry.setting.env:
        text += f" ${entry.setting.env} overrides it."
    if entry.live:
        text += " `systemctl reload` (SIGHUP) applies it; other keys need a restart."
    return text


def _header() -> str:
    variables = ", ".join(dict.fromkeys(e.setting.env for e in entries() if e.setting.env))
    return (
        "playspeak configuration: every key, with its default.\n\n"
        f"Looked for at ${ENV_CONFIG}, ~/.config/playspeak/playspeak.toml (in $XDG_CONFIG_HOME "
        "when set), /etc/playspeak/playspeak.toml (or `playspeak run --config FILE`); the first "
        "found is read. `playspeak check-config` prints the effective settings. Environment "
        f"overrides: {variables}.\n\n"
        "Written from the schema (daemon/playspeak/config/sections.py) by `python -m "
        "playspeak.config.example`: change a setting there, then rewrite this file."
    )


def example_toml() -> str:
    """The whole example file."""
    lines = _comment(_header())
    for section, cls in SECTIONS.items():
        lines += ["", f"[{section}]"]
        lines += [*_comment(inspect.cleandoc(cls.__doc__ or "")), ""]
        for entry in entries_of(section, cls):
            lines += _comment(key_doc(entry))
            if entry.default is None:
                lines.append(f"# {entry.key} = {entry.setting.example}")
            else:
                lines.append(f"{entry.key} = {entry.toml(entry.default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(example_toml())
