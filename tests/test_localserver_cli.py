"""``playspeak serve-local``: arguments, environment credentials, and a real run until SIGINT."""

from __future__ import annotations

import os

import httpx
import pytest

from playspeak.localserver.cli import parse_args
from playspeak.localserver.settings import LocalServerSettings

from localserver_helpers import serve_local


def test_arguments_and_environment_become_settings() -> None:
    argv = "--port 9000 --first-byte-delay 0.5 --realtime-factor 0 --token-lifetime 30"
    argv += " --connection-lifetime 2 --synth generated"
    settings = parse_args(argv.split(), {"PLAYAI_API_KEY": "k", "PLAYAI_USER_ID": "u"})
    assert (settings.port, settings.first_byte_delay, settings.realtime_factor) == (9000, 0.5, 0)
    assert (settings.token_lifetime, settings.connection_lifetime) == (30, 2)
    assert (settings.api_key, settings.user_id, settings.synth) == ("k", "u", "generated")
    defaults = parse_args([], {})
    assert (defaults.host, defaults.port, defaults.api_key, defaults.user_id) == (
        "127.0.0.1",
        8765,
        None,
        None,
    )


def test_realistic_turns_every_cost_on_and_a_cost_given_overrides_its_share() -> None:
    settings = parse_args(["--realistic", "--auth-delay", "0"], {})
    assert settings == LocalServerSettings.realistic(port=8765, auth_delay=0.0)
    assert parse_args([], {}) == LocalServerSettings(port=8765)


@pytest.mark.parametrize("argv", [["--synth", "festival"], ["--connection-lifetime", "0"]])
def test_bad_arguments_exit_with_usage(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv, {})
    assert exited.value.code == 2


def test_serve_local_runs_until_sigint_and_checks_env_credentials() -> None:
    env = {**os.environ, "PLAYAI_API_KEY": "cli-key", "PLAYAI_USER_ID": "cli-user"}
    with serve_local(["--port", "0", "--synth", "generated"], env) as base_url:
        url = base_url + "/api/v1/tts/websocket-auth"
        good = {"Authorization": "Bearer cli-key", "X-User-Id": "cli-user"}
        assert httpx.post(url, headers=good).status_code == 200
        wrong = {"Authorization": "Bearer other", "X-User-Id": "cli-user"}
        assert httpx.post(url, headers=wrong).status_code == 401
