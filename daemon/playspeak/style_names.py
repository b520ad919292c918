"""The style settings' values, in one place that costs nothing to import (the CLI's `say` path
reads them before its line goes out; style.py has what they mean)."""

PUNCTUATION = ("none", "some", "most", "all")  # which punctuation is spoken by name
CAPITALS = ("none", "spell", "icon")  # how a capital letter is marked
PITCH = (-100, 100)  # pitch and pitch range alike
