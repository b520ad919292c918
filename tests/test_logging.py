"""Logging: `<N>` prefixes and no timestamps when stderr is the journal, timestamps otherwise, the
level, redaction of secrets, and one line per utterance."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from playspeak.log import (
    URL_TOKENS_KEPT,
    redact,
    register_secret,
    register_url_tokens,
    setup_logging,
    stream_is_journal,
    utterance_event,
)
from playspeak.speech import Utterance

TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR) ")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """setup_logging replaces the root handlers (pytest's capture among them): put them back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def identity(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}"


def log_to(path: Path, level: str = "debug") -> logging.Logger:
    stream = path.open("a", buffering=1)
    setup_logging(level, stream)
    return logging.getLogger("playspeak.test")


def test_journal_lines_have_priority_prefixes_and_no_timestamps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "stderr"
    out.touch()
    monkeypatch.setenv("JOURNAL_STREAM", identity(out))
    log = log_to(out)
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert out.read_text().splitlines() == [
        "<7>playspeak.test: d",
        "<6>playspeak.test: i",
        "<4>playspeak.test: w",
        "<3>playspeak.test: e",
        "<2>playspeak.test: c",
    ]


def test_every_line_of_a_traceback_is_prefixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "stderr"
    out.touch()
    monkeypatch.setenv("JOURNAL_STREAM", identity(out))
    log = log_to(out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("it failed")
    lines = out.read_text().splitlines()
    assert lines[0] == "<3>playspeak.test: it failed" and len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)


def test_elsewhere_lines_start_with_a_timestamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = tmp_path / "stderr"
    log_to(out).info("hello")
    (line,) = out.read_text().splitlines()
    assert TIMESTAMPED.match(line) and line.endswith(" INFO playspeak.test: hello")


def test_an_inherited_journal_stream_for_another_file_is_not_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program started by a service inherits JOURNAL_STREAM even when its stderr was
    redirected to a file: that file gets timestamps, not `<N>` prefixes."""
    journal, redirected = tmp_path / "journal", tmp_path / "redirected"
    journal.touch()
    monkeypatch.setenv("JOURNAL_STREAM", identity(journal))
    log_to(redirected).info("hello")
    assert TIMESTAMPED.match(redirected.read_text())


@pytest.mark.parametrize("value", ["", "garbage", "1:", ":2", "1:2:3"])
def test_malformed_journal_stream_is_ignored(tmp_path: Path, value: str) -> None:
    with (tmp_path / "f").open("w") as stream:
        assert not stream_is_journal(stream, {"JOURNAL_STREAM": value})


def test_the_level_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = tmp_path / "stderr"
    log = log_to(out, "warning")
    log.info("not shown")
    log.warning("shown")
    (line,) = out.read_text().splitlines()
    assert line.endswith("WARNING playspeak.test: shown")
    # Libraries that log URLs stay at warning even when we debug.
    log_to(out, "debug")
    assert logging.getLogger("httpx").level == logging.WARNING


def test_secrets_and_url_tokens_are_redacted(tmp_path: Path) -> None:
    register_secret("sk-live-0123456789")
    out = tmp_path / "stderr"
    log = log_to(out)
    log.info("key %s", "sk-live-0123456789")
    log.info("GET wss://api/ws?fal_jwt_token=abc.def&x=1 with Bearer eyJhbGci")
    try:
        raise ValueError("rejected sk-live-0123456789")
    except ValueError:
        log.exception("auth")
    text = out.read_text()
    assert "sk-live-0123456789" not in text and "abc.def" not in text and "eyJhbGci" not in text
    assert "key <redacted>" in text and "fal_jwt_token=<redacted>&x=1" in text


# ---- one line per utterance ----------------------------------------------------------------------


def lifecycle(caplog: pytest.LogCaptureFixture, events: list[tuple[str, dict]]) -> list[str]:
    utterance = Utterance("The front door is open", {}, id="u42", priority="important")
    with caplog.at_level(logging.DEBUG, logger="playspeak.utterance"):
        for event, fields in events:
            utterance_event(utterance, event, fields)
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO]


def test_a_finished_utterance_is_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    (line,) = lifecycle(caplog, [("queued", {"position": 1}), ("started", {}), ("finished", {})])
    assert re.fullmatch(
        r"INFO utterance u42 finished: 22 chars 'The front door is open', priority important, "
        r"waited \d+\.\d\d s, played \d+\.\d\d s",
        line,
    )


def test_a_cancelled_utterance_says_it_never_played(caplog: pytest.LogCaptureFixture) -> None:
    (line,) = lifecycle(caplog, [("queued", {}), ("cancelled", {"reason": "stop"})])
    assert line.startswith("INFO utterance u42 cancelled (stop): ") and "never played" in line


def test_a_failed_utterance_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    (line,) = lifecycle(caplog, [("started", {}), ("failed", {"reason": "link lost"})])
    assert line.startswith("WARNING utterance u42 failed (link lost): ")


def test_queued_and_started_are_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    assert lifecycle(caplog, [("queued", {}), ("started", {})]) == []
    assert [r.getMessage() for r in caplog.records] == [
        "utterance u42 queued",
        "utterance u42 started",
    ]


def test_url_tokens_are_bounded_and_ordinary_words_stay() -> None:
    """Tokens from auth answers' URLs: only those long enough to be secrets, and only the most
    recent (an older one has expired); the registry no longer grows with every auth answer."""
    register_url_tokens("wss://api/ws?a=utterance&fal_jwt_token=" + "t" * 40)
    assert redact("the utterance ended") == "the utterance ended"
    assert redact("echoed " + "t" * 40) == "echoed <redacted>"
    tokens = [f"{n:04d}-" + secrets.token_hex(16) for n in range(10_000)]
    for token in tokens:
        register_url_tokens(f"wss://api/ws?key={token}")
    assert redact(f"echoed {tokens[-1]}") == "echoed <redacted>"
    assert redact(f"echoed {tokens[0]}") == f"echoed {tokens[0]}"  # long expired
    kept = [t for t in tokens if redact(t) == "<redacted>"]
    assert kept == tokens[-URL_TOKENS_KEPT:]
