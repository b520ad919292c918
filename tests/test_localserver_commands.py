"""Command validation: the pure parser, and error frames on a live connection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import trio_websocket

from playspeak.localserver import LocalServer, open_local_server
from playspeak.localserver.commands import Command, parse_command
from playspeak.localserver.models import MODELS_BY_APP, model_for_path
from playspeak.playai.wire import CommandRejected

from localserver_helpers import read_reply, speak, ws_url

MINI = MODELS_BY_APP["play3-mini"]
DIALOG = MODELS_BY_APP["playdialog"]
GOOD = {"text": "Hello.", "voice": "Angelo"}


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with open_local_server(first_byte_delay=0, realtime_factor=0, synth="generated") as s:
        yield s


def frame(**fields: object) -> str:
    return json.dumps(fields)


def test_defaults_fill_in_and_nulls_mean_default() -> None:
    nulls = dict.fromkeys(["output_format", "speed", "temperature", "sample_rate", "request_id"])
    for command in (
        parse_command(frame(**GOOD), MINI),
        parse_command(frame(**GOOD, **nulls), MINI),
    ):
        assert command == Command(text="Hello.", voice="Angelo")
        assert (command.output_format, command.sample_rate, command.speed) == ("mp3", 24000, 1.0)


def test_unknown_keys_and_known_optional_fields_are_accepted() -> None:
    extras = {"quality": "draft", "language": "english", "seed": 7, "voice_2": None, "x": [1]}
    command = parse_command(frame(**GOOD, **extras, output_format="FLAC", speed=2), MINI)
    assert command.output_format == "flac" and command.speed == 2.0


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"voice": "Angelo"}, "text"),
        ({"text": "", "voice": "Angelo"}, "text"),
        ({"text": 5, "voice": "Angelo"}, "text"),
        ({"text": "Hi"}, "voice"),
        ({**GOOD, "voice": 3}, "voice"),
        ({**GOOD, "speed": 2.5}, "speed"),
        ({**GOOD, "speed": "fast"}, "speed"),
        ({**GOOD, "speed": True}, "speed"),
        ({**GOOD, "temperature": 1.5}, "temperature"),
        ({**GOOD, "temperature": -0.1}, "temperature"),
        ({**GOOD, "sample_rate": 7999}, "sample_rate"),
        ({**GOOD, "sample_rate": 48001}, "sample_rate"),
        ({**GOOD, "sample_rate": 24000.5}, "sample_rate"),
        ({**GOOD, "output_format": "aac"}, "output_format"),
    ],
)
def test_bad_fields_are_named(fields: dict[str, object], named: str) -> None:
    with pytest.raises(CommandRejected, match=named) as error:
        parse_command(json.dumps({**fields, "request_id": ["r", 1]}), MINI)
    assert error.value.request_id == ["r", 1]


def test_text_limits_follow_the_model() -> None:
    long_text = "a" * 20_001
    with pytest.raises(CommandRejected, match="text is too long"):
        parse_command(frame(text=long_text, voice="v"), MINI)
    assert parse_command(frame(text=long_text, voice="v"), DIALOG).text == long_text
    assert parse_command(frame(text="a" * 50_000, voice="v"), DIALOG)
    with pytest.raises(CommandRejected, match="text is too long"):
        parse_command(frame(text="a" * 50_001, voice="v"), DIALOG)


def test_ssml_beside_the_words_is_checked_and_kept_as_espeak_ng_may_read_it() -> None:
    markup = '<speak>One <break time="1s"/> <b>two</b> <mark name="m"/>three.</speak>'
    command = parse_command(frame(**GOOD, ssml=markup), MINI)
    # only the allowed elements are kept; a mark is the client's (it cuts its own requests)
    assert command.ssml == '<speak>One  <break time="1s"/>  two  three.</speak>'
    assert parse_command(frame(**GOOD, ssml=None), MINI).ssml is None
    for bad, named in [
        (5, "ssml must be a string"),
        ("<speak>One <b>two</speak>", "ssml: malformed SSML"),
        ("<speak><break/></speak>", "no words"),
        ("<speak>" + "a" * 20_001 + "</speak>", "too long"),
        ("<prosody>" * 200 + "deep" + "</prosody>" * 200, "nests more than"),
    ]:
        with pytest.raises(CommandRejected, match=named):
            parse_command(frame(**GOOD, ssml=bad), MINI)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b'{"text": "hi", "voice": "v"}', "binary"),
        ("{not json", "invalid JSON"),
        ('{"text": "hi", "voice": "v", "speed": NaN}', "speed"),
        ('["text", "voice"]', "JSON object"),
        ("42", "JSON object"),
    ],
)
def test_frames_that_are_not_commands(raw: str | bytes, named: str) -> None:
    with pytest.raises(CommandRejected, match=named) as error:
        parse_command(raw, MINI)
    assert error.value.request_id is None


def test_models_are_found_by_app_path() -> None:
    assert model_for_path("/play3-mini/ws") is MINI
    assert model_for_path("/playdialog") is DIALOG
    assert model_for_path("/playdialog/other") is None
    assert model_for_path("/nope/ws") is None


BAD_ON_THE_WIRE: list[tuple[str | bytes, str]] = [
    (frame(voice="Angelo", request_id="r1"), "text"),
    (frame(text="Hi", request_id="r1"), "voice"),
    (frame(**GOOD, speed=0.1, request_id="r1"), "speed"),
    (frame(**GOOD, temperature=3, request_id="r1"), "temperature"),
    (frame(**GOOD, sample_rate=100, request_id="r1"), "sample_rate"),
    (frame(**GOOD, output_format="aac", request_id="r1"), "output_format"),
    (frame(text="x" * 20_001, voice="Angelo", request_id="r1"), "text"),
    ("{oops", "JSON"),
    ("[1, 2]", "object"),
    (b"\x00\x01binary", "binary"),
]


@pytest.mark.parametrize(("raw", "named"), BAD_ON_THE_WIRE)
async def test_a_bad_command_gets_an_error_frame_and_the_connection_carries_on(
    server: LocalServer, raw: str | bytes, named: str
) -> None:
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        await ws.send_message(raw)
        start, error, end = (await read_reply(ws)).messages
        assert (start["status"], error["type"], end["type"]) == (400, "error", "end")
        assert named in str(error["error"])
        assert error["request_id"] == ("r1" if isinstance(raw, str) and "r1" in raw else None)
        good = await speak(ws, request_id="after", output_format="raw")
        assert [m["type"] for m in good.messages] == ["start", "end"]
        assert good.audio


async def test_errors_keep_their_place_in_the_reply_order(server: LocalServer) -> None:
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        await ws.send_message(frame(**GOOD, request_id=1, output_format="raw"))
        await ws.send_message(frame(**GOOD, request_id=2, speed=9))
        await ws.send_message(frame(**GOOD, request_id=3, output_format="raw"))
        replies = [await read_reply(ws) for _ in range(3)]
    assert [r.messages[0].get("request_id") for r in replies] == [1, 2, 3]
    assert "speed" in str(replies[1].messages[1]["error"])


@pytest.mark.parametrize("request_id", ["abc", 17, 2.5, True, {"a": [1, None]}, [], ""])
async def test_request_id_is_echoed_exactly(server: LocalServer, request_id: object) -> None:
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        reply = await speak(ws, request_id=request_id, output_format="raw")
    assert reply.messages == [
        {"type": "start", "request_id": request_id, "status": 200},
        {"type": "end", "request_id": request_id, "status": 200},
    ]


async def test_request_id_is_null_when_absent_or_null(server: LocalServer) -> None:
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        absent = await speak(ws, output_format="raw")
        null = await speak(ws, output_format="raw", request_id=None)
    for reply in (absent, null):
        assert reply.messages == [
            {"type": "start", "request_id": None, "status": 200},
            {"type": "end", "request_id": None, "status": 200},
        ]


async def test_unknown_keys_and_nulls_are_accepted_on_the_wire(server: LocalServer) -> None:
    async with trio_websocket.open_websocket_url(await ws_url(server)) as ws:
        reply = await speak(
            ws,
            quality="draft",
            language="english",
            voice_guidance=None,
            speed=None,
            temperature=None,
            sample_rate=None,
            output_format=None,
        )
    assert reply.last["type"] == "end"
    assert reply.audio == await server.render(text="Hi there.", voice="Angelo")
