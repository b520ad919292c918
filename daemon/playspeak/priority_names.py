"""The five priorities' names, in one place that costs nothing to import (the CLI's `say`
path imports it before its line goes out; priorities.py has what they mean)."""

PRIORITIES = ("important", "message", "text", "notification", "progress")
