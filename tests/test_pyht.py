"""pyht 0.1.14, PlayAI's own SDK (LiveKit's PlayAI plugin is built on it), unmodified against
serve-local: pointed at it through its `advanced` options only, nothing patched.

pyht is synchronous (requests, websockets' sync client): each call runs in a worker thread
while the server runs in this test's trio loop, under a deadline, so that a pyht waiting for a
frame that never comes fails the test at once instead of hanging it (the thread is abandoned)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import trio

from playspeak.localserver import LocalServer, open_local_server

pyht_client = pytest.importorskip(
    "pyht.client", reason="pyht is in the [test] extra (scripts/setup installs it)"
)
from pyht.inference_coordinates import InferenceCoordinatesOptions  # noqa: E402

Client, TTSOptions, Format = pyht_client.Client, pyht_client.TTSOptions, pyht_client.Format
VOICE = "s3://voice-cloning-zero-shot/test/manifest.json"
DEADLINE = 10.0  # seconds for one pyht call; each takes ~0.01-0.1 s here


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with open_local_server(first_byte_delay=0, realtime_factor=0, synth="generated") as s:
        yield s


def pyht_for(server: LocalServer) -> Client:
    """A pyht client whose every URL is the server's (no call is made until the first tts)."""
    return Client(
        "test-user",
        "test-key",
        auto_connect=False,
        advanced=Client.AdvancedOptions(
            api_url=server.base_url + "/api",
            inference_coordinates_options=InferenceCoordinatesOptions(
                api_url=server.base_url + "/api/v4"
            ),
        ),
    )


async def in_thread(call: Callable[[], bytes]) -> bytes:
    with trio.fail_after(DEADLINE):
        return await trio.to_thread.run_sync(call, abandon_on_cancel=True)


def speaker(client: Client, text: str, fmt: object) -> Callable[[], bytes]:
    options = TTSOptions(voice=VOICE, format=fmt)
    return lambda: b"".join(client.tts(text, options, voice_engine="Play3.0-mini", protocol="ws"))


async def test_pyht_streams_wav_and_mp3_on_one_connection(server: LocalServer) -> None:
    client = pyht_for(server)
    asked = [
        ("Hello from pyht.", Format.FORMAT_WAV, "wav"),
        ("And now in MP3. Two sentences.", Format.FORMAT_MP3, "mp3"),
        ("Back to WAV.", Format.FORMAT_WAV, "wav"),
    ]
    for text, fmt, name in asked:
        audio = await in_thread(speaker(client, text, fmt))
        assert audio == await server.render(text=text, voice=VOICE, output_format=name)
        assert audio.startswith(b"RIFF" if name == "wav" else b"ID3")
    assert server.stats.auth_calls == 1  # POST /api/v4/sdk-auth
    assert (server.stats.connections, server.stats.requests) == (1, 3)


async def test_an_error_ends_pyhts_request_and_the_connection_goes_on(
    server: LocalServer,
) -> None:
    client = pyht_for(server)
    server.faults.error_on_text = "boom"
    assert await in_thread(speaker(client, "This goes boom.", Format.FORMAT_WAV)) == b""
    server.faults.error_on_text = None
    after = await in_thread(speaker(client, "Still here.", Format.FORMAT_MP3))
    assert after == await server.render(text="Still here.", voice=VOICE, output_format="mp3")
    assert server.stats.connections == 1


async def test_a_command_the_server_refuses_ends_pyhts_request(server: LocalServer) -> None:
    """pyht sends `text` as a list; an empty text is refused with a failing start, an error
    frame and the end: pyht returns no audio instead of waiting."""
    client = pyht_for(server)
    assert await in_thread(speaker(client, "   ", Format.FORMAT_WAV)) == b""
    assert await in_thread(speaker(client, "Fine again.", Format.FORMAT_WAV))
