"""How the `playspeak` command ends: its exit codes and its error lines (shared by the client
verbs in cli.py and the daemon's in cli_daemon.py)."""

import sys

EXIT_FAILED, EXIT_CONFIG = 1, 2


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """Each line of `message` on stderr (a configuration may have several errors)."""
    for line in message.splitlines() or [""]:
        print(f"playspeak: {line}", file=sys.stderr)
    return code
