"""Configuration: defaults, the example file, environment overrides and every error path."""

import os
import pwd
from pathlib import Path

import pytest

from playspeak.config import Config, default_config_paths, load_config
from playspeak.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config" / "playspeak.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "playspeak.toml"
    path.write_text(text)
    return path


def test_the_example_file_states_exactly_the_defaults() -> None:
    loaded = load_config(EXAMPLE, env={})
    assert loaded.api == Config().api and loaded.audio == Config().audio
    assert loaded.control == Config().control and loaded.speech == Config().speech
    assert loaded.local_server == Config().local_server and loaded.log == Config().log


def test_no_key_and_no_url_means_the_embedded_server() -> None:
    assert load_config(EXAMPLE, env={}).api.embedded


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "PLAYAI_API_KEY": "k-123",
        "PLAYAI_USER_ID": "user-9",
        "PLAYSPEAK_API_URL": "http://127.0.0.1:1",
        "PLAYSPEAK_SOCKET": str(tmp_path / "s"),
        "PLAYSPEAK_DEVICE": "pulse",
    }
    config = load_config(EXAMPLE, env=env)
    assert (config.api.api_key, config.api.user_id) == ("k-123", "user-9")
    assert config.api.effective_url == "http://127.0.0.1:1" and not config.api.embedded
    assert config.control.socket_path == tmp_path / "s"
    assert config.audio.device == "pulse"


def test_playspeak_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[log]\nlevel = "debug"\n')
    assert load_config(env={"PLAYSPEAK_CONFIG": str(path)}).log.level == "debug"


def test_a_user_without_a_home_gets_the_system_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # systemd's DynamicUser= sets no $HOME, and without libnss-systemd (Debian's default) the
    # passwd database does not know the uid. Faked, because making such a uid needs root.
    def unknown(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    for name in ("HOME", "XDG_CONFIG_HOME", "PLAYSPEAK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", unknown)
    assert default_config_paths() == [Path("/etc/playspeak/playspeak.toml")]
    assert isinstance(load_config(), Config)


def test_key_file_must_be_private(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("secret-key\n")
    os.chmod(key, 0o644)
    path = write(tmp_path, f'[api]\napi_key_file = "{key}"\nuser_id = "u"\n')
    with pytest.raises(ConfigError, match="readable by other users: run chmod 600"):
        load_config(path, env={})
    os.chmod(key, 0o600)
    assert load_config(path, env={}).api.api_key == "secret-key"


def test_systemd_credentials(tmp_path: Path) -> None:
    (tmp_path / "playai-api-key").write_text("cred-key")
    config = load_config(
        EXAMPLE, env={"CREDENTIALS_DIRECTORY": str(tmp_path), "PLAYAI_USER_ID": "u"}
    )
    assert config.api.api_key == "cred-key"


def test_a_credentials_directory_that_cannot_be_looked_in_is_a_config_error(
    tmp_path: Path,
) -> None:
    # as root no mode keeps a directory shut: a name too long for the kernel fails as well
    # (ENAMETOOLONG), on the same path as EACCES does for the service's user
    creds = tmp_path / ("x" * 300)
    with pytest.raises(ConfigError, match=r"systemd credential .*: File name too long"):
        load_config(EXAMPLE, env={"CREDENTIALS_DIRECTORY": str(creds), "PLAYAI_USER_ID": "u"})


def test_secrets_are_redacted_in_the_printed_configuration() -> None:
    config = load_config(EXAMPLE, env={"PLAYAI_API_KEY": "k-123", "PLAYAI_USER_ID": "user-9"})
    text = repr(config) + repr(config.redacted())
    assert "k-123" not in text and "user-9" not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[api\n", "playspeak.toml"),
        ("[nope]\n", "unknown section \\[nope\\]"),
        ("[api]\nfoo = 1\n", "line 2: unknown key api.foo"),
        ('[api]\nspeed = "fast"\n', "line 2: api.speed must be a number"),
        ("[api]\nspeed = 9\n", "api.speed must be 0.5–2"),
        ('[api]\nmodel = "two words"\n', "api.model must be a model name"),
        ("[api]\nsample_rate = 100\n", "api.sample_rate"),
        ('[api]\nurl = "http://x"\n', "no API key"),
        ('[api]\napi_key = "k"\n', "no user id"),
        ('[control]\nsocket_mode = "rw"\n', "octal"),
        ("[control]\nmax_line_bytes = 1\n", "max_line_bytes"),
        ("[audio]\nchannels = 3\n", "audio.channels"),
        ('[audio]\nlatency = "fast"\n', 'audio.latency must be "low", "high" or seconds'),
        ("[audio]\nlatency = -1\n", "audio.latency"),
        ("[speech]\npipeline = 1\n", "speech.pipeline must be true or false"),
        ('[log]\nlevel = "loud"\n', "log.level"),
        ('[local_server]\nsynth = "tts"\n', "local_server.synth"),
        ("api = 3\n", "api must be a table"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


@pytest.mark.parametrize("written, read", [("0.04", "0.04"), ("1", "1.0"), ('"0.05"', "0.05")])
def test_latency_in_seconds_as_a_number_or_text(tmp_path: Path, written: str, read: str) -> None:
    config = load_config(write(tmp_path, f"[audio]\nlatency = {written}\n"), env={})
    assert config.audio.latency == read


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", env={})


def test_local_server_costs_are_off_unless_realistic_and_keys_override_it(tmp_path: Path) -> None:
    from playspeak.localserver.settings import AuthRate, LocalServerSettings

    example = load_config(EXAMPLE, env={}).local_server
    plain = LocalServerSettings.from_section(example, api_key="k", user_id="u")
    assert plain == LocalServerSettings(api_key="k", user_id="u")
    text = (
        '[local_server]\nembedded = "server"\nrealistic = true\nauth_rate = "2/5"\n'
        "first_byte_delay = 0.2\n"
    )
    config = load_config(write(tmp_path, text), env={})
    settings = LocalServerSettings.from_section(config.local_server, api_key="k", user_id="u")
    assert settings == LocalServerSettings.realistic(
        api_key="k", user_id="u", first_byte_delay=0.2, auth_rate=AuthRate(2, 5.0)
    )
    single = load_config(
        write(tmp_path, '[local_server]\nembedded = "server"\nauth_status = 201\n'), env={}
    )
    assert LocalServerSettings.from_section(single.local_server).auth_status == 201


def test_a_cost_of_the_server_is_refused_for_the_direct_local_voice(tmp_path: Path) -> None:
    """The direct voice (the default) has no first-byte delay or pacing to set: asking for
    one names the setting and the way to get it, rather than being silently ignored."""
    with pytest.raises(ConfigError, match=r"line 2: local_server.first_byte_delay apply to"):
        load_config(write(tmp_path, "[local_server]\nfirst_byte_delay = 0.2\n"), env={})
    with pytest.raises(ConfigError, match='embedded = "server"'):
        from playspeak.config import LocalServerConfig

        LocalServerConfig(realistic=True).check()
    assert load_config(EXAMPLE, env={}).local_server.embedded == "voice"


@pytest.mark.parametrize(
    "text",
    [
        'auth_rate = "ten a minute"',
        'auth_rate = "0/60"',
        "auth_status = 404",
        "idle_timeout = -1",
        'realistic = "yes"',
    ],
)
def test_bad_local_server_costs_name_the_key(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"local_server\.") as info:
        load_config(write(tmp_path, f"[local_server]\n{text}\n"), env={})
    assert str(tmp_path) in str(info.value)
