"""The PlayAI wire (playai/wire.py): tolerant parsing, strict encoding, the matching rules.
Pure functions: no socket, no clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pytest

from playspeak.errors import AuthError, BadJsonError
from playspeak.playai.wire import (
    AUTH_PATHS,
    Action,
    AuthAnswer,
    AuthShape,
    CommandRejected,
    End,
    ErrorFrame,
    OtherFrame,
    Start,
    TtsCommand,
    encode_frame,
    failure_key,
    parse_auth_answer,
    parse_command,
    parse_frame,
    route,
)

# ---- commands ----------------------------------------------------------------------------


def test_text_may_be_a_list_of_strings_as_pyht_sends_it() -> None:
    command = parse_command(json.dumps({"text": ["Hello there.", " How are you?"], "voice": "v"}))
    assert command.text == "Hello there. How are you?"
    assert json.loads(command.to_json())["text"] == "Hello there. How are you?"


def test_pyhts_command_with_its_nulls_and_unknown_keys_is_accepted() -> None:
    sent = {
        "text": ["Hi."],
        "voice": "s3://voice/manifest.json",
        "output_format": "wav",
        "speed": 1.0,
        "sample_rate": None,
        "voice_engine": "Play3.0-mini",
        "language": None,
        "version": "v3",
        "voice_2": None,
        "num_candidates": None,
    }
    command = parse_command(json.dumps(sent))
    assert (command.output_format, command.sample_rate, command.request_id) == ("wav", None, None)
    assert command.extra == {"voice_engine": "Play3.0-mini", "version": "v3"}
    assert json.loads(command.to_json()) == {
        "text": "Hi.",
        "voice": "s3://voice/manifest.json",
        "output_format": "wav",
        "speed": 1.0,
        "voice_engine": "Play3.0-mini",
        "version": "v3",
    }


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"voice": "v"}, "text is required"),
        ({"text": [], "voice": "v"}, "must not be empty"),
        ({"text": ["a", 1], "voice": "v"}, "list of strings"),
        ({"text": {"a": 1}, "voice": "v"}, "got an object"),
        ({"text": "hi"}, "voice is required"),
        ({"text": "hi", "voice": "v", "speed": "fast"}, "speed"),
        ({"text": "hi", "voice": "v", "sample_rate": 1.5}, "sample_rate"),
        ({"text": "hi", "voice": "v", "output_format": 3}, "output_format"),
    ],
)
def test_a_bad_command_names_its_field_and_keeps_its_request_id(
    fields: dict[str, object], named: str
) -> None:
    with pytest.raises(CommandRejected, match=named) as error:
        parse_command(json.dumps({**fields, "request_id": {"n": 1}}))
    assert error.value.request_id == {"n": 1}


def test_a_frame_nested_too_deeply_is_that_frames_error() -> None:
    with pytest.raises(CommandRejected, match="nested too deeply"):
        parse_command("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CommandRejected, match="binary"):
        parse_command(b'{"text": "hi", "voice": "v"}')


def test_the_client_sends_strict_frames_without_nulls() -> None:
    command = TtsCommand.from_fields({"text": "Hi", "voice": "v", "temperature": None, "seed": 3})
    assert json.loads(command.to_json()) == {"text": "Hi", "voice": "v", "seed": 3}


# ---- frames --------------------------------------------------------------------------------


def test_frames_are_parsed_tolerantly() -> None:
    assert parse_frame('{"type": "start", "request_id": "a", "status": 200, "x": 1}') == Start(
        "a", 200
    )
    assert parse_frame('{"type": "end", "request_id": null, "status": true}') == End(None, None)
    assert parse_frame('{"error": "bad voice", "request_id": 3}') == ErrorFrame("bad voice", 3)
    typed = parse_frame('{"type": "error", "message": "no", "status": 400}')
    assert typed == ErrorFrame("no", None, 400)
    assert parse_frame('{"type": "metrics"}') == OtherFrame("metrics")
    assert parse_frame('{"request_id": 1}') == OtherFrame(None)
    failing = parse_frame('{"type": "start", "status": 503, "message": "busy"}')
    assert isinstance(failing, Start) and failing.failed and failing.message == "busy"
    with pytest.raises(BadJsonError):
        parse_frame("[1]")
    with pytest.raises(BadJsonError, match="nested too deeply"):
        parse_frame("{" + '"a":{' * 50_000 + "}" * 50_001)


def test_frames_are_encoded_in_the_one_shape_every_client_reads() -> None:
    assert json.loads(encode_frame(Start("r"))) == {
        "type": "start",
        "request_id": "r",
        "status": 200,
    }
    assert json.loads(encode_frame(End(None))) == {"type": "end", "request_id": None, "status": 200}
    error = json.loads(encode_frame(ErrorFrame("boom", 7)))
    assert error == {
        "type": "error",
        "request_id": 7,
        "status": 500,
        "error": "boom",
        "message": "boom",
    }
    for frame in (Start("r", 400, "why"), End(1, 500), ErrorFrame("boom", [1], 400)):
        assert parse_frame(encode_frame(frame)) == frame


# ---- matching ------------------------------------------------------------------------------


@dataclass
class Pending:
    request_id: str
    started: bool = False
    echoed: bool = True


def test_frames_find_their_reply_by_id() -> None:
    a, b = Pending("a"), Pending("b")
    assert route(Start("b"), [a, b], None) == route(Start("b"), [a, b], None)
    step = route(Start("b"), [a, b], None)
    assert (step.action, step.reply, step.abandoned) == (Action.START, b, None)
    a.started = True
    assert route(End("a"), [a, b], a).reply is a
    assert route(Start("a"), [a, b], a).action is Action.IGNORE  # started already
    assert route(End("zzz"), [a, b], a).action is Action.IGNORE


def test_a_start_for_the_next_reply_abandons_the_one_never_ended() -> None:
    a, b = Pending("a", started=True), Pending("b")
    step = route(Start("b"), [a, b], a)
    assert (step.action, step.reply, step.abandoned) == (Action.START, b, a)


def test_null_ids_follow_the_order_only_for_a_service_that_never_echoes() -> None:
    a, b = Pending("a"), Pending("b")
    assert route(Start(None), [a, b], None).reply is a
    a.started, a.echoed = True, False
    assert route(End(None), [a, b], a).reply is a
    echoed = Pending("c", started=True, echoed=True)
    assert route(End(None), [echoed], echoed).action is Action.IGNORE  # never a guess
    assert route(ErrorFrame("x", None), [echoed], echoed).action is Action.IGNORE


def test_errors_and_failing_statuses_fail_their_reply() -> None:
    a = Pending("a")
    failed_start = route(Start("a", 503, "overloaded"), [a], None)
    assert failed_start.action is Action.FAIL and failed_start.message == "overloaded"
    assert route(ErrorFrame("bad voice", "a"), [a], None).message == "bad voice"
    assert "status 502" in route(Start("a", 502), [a], None).message
    a.started = True
    assert route(End("a", 500), [a], a).action is Action.FAIL


def test_the_error_and_end_of_a_failed_reply_settle_quietly() -> None:
    """Our server answers a failed request with a failing start, an error, then its end."""
    assert route(ErrorFrame("boom", "a"), [], None, ["a"]).action is Action.SETTLE
    assert route(End("a", 500), [], None, [failure_key("a")]).action is Action.SETTLE
    assert route(End(None), [], None, [failure_key(None)]).action is Action.SETTLE
    assert route(End("b"), [], None, ["a"]).action is Action.IGNORE


# ---- auth answers --------------------------------------------------------------------------

URLS = {"Play3.0-mini": "ws://h/play3-mini/ws?fal_jwt_token=t", "PlayDialog": "ws://h/pd/ws?t=1"}
WHEN = 1733955457.429  # 2024-12-11T22:17:37.429Z


@pytest.mark.parametrize("shape", list(AuthShape))
def test_every_auth_shape_round_trips(shape: AuthShape) -> None:
    answer = AuthAnswer(URLS, WHEN, {"Play3.0-mini": "http://h/play3-mini/stream"})
    body = answer.encode(shape)
    parsed = parse_auth_answer(json.loads(json.dumps(body)))
    assert parsed.expires_at == pytest.approx(WHEN)
    assert parsed.url_for("Play3.0-mini") == URLS["Play3.0-mini"]
    if shape is not AuthShape.V3:
        assert parsed.websocket_urls == URLS


def test_the_shapes_are_the_ones_their_clients_read() -> None:
    answer = AuthAnswer(URLS, WHEN, {"Play3.0-mini": "http://h/s"})
    assert set(answer.encode(AuthShape.V1)) == {"webSocketUrls", "expiresAt"}
    assert set(answer.encode(AuthShape.V4)) == {"websocket_urls", "expires_at"}  # Pipecat
    sdk = answer.encode(AuthShape.SDK)  # pyht: strptime with a fraction, both URLs per model
    assert datetime.strptime(str(sdk["expires_at"]), "%Y-%m-%dT%H:%M:%S.%fZ")
    assert sdk["Play3.0-mini"] == {
        "websocket_url": URLS["Play3.0-mini"],
        "http_streaming_url": "http://h/s",
    }
    assert AUTH_PATHS["/api/v4/sdk-auth"] is AuthShape.SDK
    assert AUTH_PATHS["/api/v4/websocket-auth"] is AuthShape.V4
    assert answer.encode(AuthShape.V1)["expiresAt"] == "2024-12-11T22:17:37.429Z"


def test_older_auth_answers_are_understood() -> None:
    v2024 = parse_auth_answer({"PlayDialog": {"webSocketUrl": "wss://a"}, "expiresAt": None})
    assert v2024.url_for("PlayDialog") == "wss://a" and v2024.expires_at is None
    v3 = parse_auth_answer({"websocket_url": "wss://c", "expires_at": "2024-12-11T22:17:37Z"})
    assert v3.url_for("anything") == "wss://c" and v3.expires_at == pytest.approx(WHEN - 0.429)
    v4 = parse_auth_answer({"websocket_urls": {"PlayDialog": "wss://b"}, "expires_at": None})
    assert v4.url_for("PlayDialog") == "wss://b" and v4.expires_at is None
    with pytest.raises(AuthError, match="no websocket for model"):
        v2024.url_for("Play3.0-mini")
    with pytest.raises(AuthError, match="no websocket URLs"):
        parse_auth_answer({"PlayDialog": {"websocket_url": "http://not-ws"}})
    with pytest.raises(AuthError, match="no websocket URLs"):
        parse_auth_answer({"nothing": 1})
    with pytest.raises(AuthError, match="not a JSON object"):
        parse_auth_answer([])
