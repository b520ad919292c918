"""The one guard for untrusted JSON (control lines, MQTT payloads, the service's frames):
every way Python's parser can fail on hostile input becomes a BadJsonError with a reason."""

from __future__ import annotations

import json
from typing import Any

from playspeak.errors import BadJsonError

NESTED = "invalid JSON: nested too deeply"


def load_json(data: str | bytes, *, want_object: bool = False) -> Any:
    """`data` parsed; bytes must be UTF-8 (json.loads alone would also guess UTF-16 and 32).
    With `want_object`, anything but a JSON object is refused too. Never blocks; raises only
    BadJsonError."""
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadJsonError(f"invalid UTF-8 at byte {e.start}") from None
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as e:
        raise BadJsonError(f"invalid JSON: {e.msg} at column {e.colno}") from None
    except RecursionError:
        raise BadJsonError(NESTED) from None
    except ValueError:  # Python's limit on the digits of an integer
        raise BadJsonError("invalid JSON: a number with too many digits") from None
    try:
        # A \u escape may name half a surrogate pair: valid JSON, but not a character, and
        # a reply or event repeating it could not be written as UTF-8.
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadJsonError("invalid JSON: a \\u escape names a lone surrogate") from None
    except RecursionError:
        raise BadJsonError(NESTED) from None
    if want_object and not isinstance(obj, dict):
        raise BadJsonError(f"a JSON object was expected, not {_kind(obj)}")
    return obj


def _kind(obj: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(obj), "a number")
