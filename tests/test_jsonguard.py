"""The one guard for untrusted JSON: every failure of Python's parser is a BadJsonError."""

from __future__ import annotations

import pytest

from playspeak.errors import BadJsonError, ProtocolError
from playspeak.jsonguard import load_json


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"text": "\xff"}', "invalid UTF-8 at byte 10"),
        ('{"a": ', "invalid JSON: Expecting value at column 7"),
        ("[" * 5000 + "]" * 5000, "invalid JSON: nested too deeply"),
        ('{"a":' + "[" * 1000 + "]" * 1000 + "}", "invalid JSON: nested too deeply"),
        ("9" * 5000, "invalid JSON: a number with too many digits"),
        ('"\\udfff"', "invalid JSON: a \\u escape names a lone surrogate"),
        ('"\x00"'.encode("utf-16"), "invalid UTF-8 at byte 0"),  # json.loads would guess UTF-16
    ],
)
def test_every_parse_failure_is_one_error_with_its_reason(data: str | bytes, reason: str) -> None:
    with pytest.raises(BadJsonError) as caught:
        load_json(data)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ProtocolError)  # the doors' error for bad input


def test_an_object_can_be_required() -> None:
    assert load_json(b'{"a": [1]}', want_object=True) == {"a": [1]}
    assert load_json("[1]") == [1]
    for data, kind in [("[1]", "an array"), ('"x"', "a string"), ("3", "a number")]:
        with pytest.raises(BadJsonError, match=f"a JSON object was expected, not {kind}"):
            load_json(data, want_object=True)
