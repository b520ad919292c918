"""The audio output's state as a type (audio/output.py keeps it). I/O-free.

Its values are what `status` ("device": {"state": …}) and the `device` event report.
"""

from __future__ import annotations

from enum import StrEnum


class DeviceState(StrEnum):
    CLOSED = "closed"  # not opened yet
    OPEN = "open"
    LOST = "lost"  # went away; reopened with backoff while speech waits
