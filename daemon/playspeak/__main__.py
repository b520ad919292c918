"""`python -m playspeak` is the same as the `playspeak` command."""

from playspeak.cli import main

raise SystemExit(main())
