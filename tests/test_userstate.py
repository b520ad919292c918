"""The saved user state (the volume): where it lives, atomic writes, and bad files that cost
only a warning. Real files in tmp_path; the restart itself is tested in tests/test_mqtt.py."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from playspeak.userstate import default_state_dir, load_state, save_state


def test_the_state_directory_is_systemds_else_xdgs() -> None:
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/playspeak:/x"}) == Path(
        "/var/lib/playspeak"
    )
    assert default_state_dir({"XDG_STATE_HOME": "/h/s"}) == Path("/h/s/playspeak")
    assert default_state_dir({}) == Path.home() / ".local" / "state" / "playspeak"


def test_saved_state_reads_back_and_a_write_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state.json"
    assert load_state(path) == {}  # a first start
    save_state(path, {"volume": 40.0})
    save_state(path, {"volume": 45.0})
    assert load_state(path) == {"volume": 45.0}
    assert os.listdir(path.parent) == ["state.json"]
    assert path.parent.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "invalid JSON"),
        (b"[40]", "JSON object"),
        (b"\xff\xfe", "not UTF-8"),
        (b"x" * (65 << 10), "larger than"),
    ],
)
def test_a_bad_state_file_is_a_warning_and_the_defaults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, why: str
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert load_state(path) == {}
    assert why in caplog.text and "defaults apply" in caplog.text


def test_a_directory_where_the_state_file_should_be_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state.json").mkdir()
    assert load_state(tmp_path / "state.json") == {}
    assert "directory" in caplog.text
