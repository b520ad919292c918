"""`playspeak check-config`: the effective configuration with secrets redacted, and every
configuration error path through the CLI: exit status 2, and a message naming the key, the file
and, where the error is about one line, that line."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from playspeak.cli import main
from playspeak.config import Config

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "playspeak.toml"
PLAYSPEAK = str(Path(sys.executable).with_name("playspeak"))
ENVIRONMENT = (
    "PLAYAI_API_KEY",
    "PLAYAI_USER_ID",
    "PLAYSPEAK_API_URL",
    "PLAYSPEAK_CONFIG",
    "PLAYSPEAK_SOCKET",
    "PLAYSPEAK_DEVICE",
    "CREDENTIALS_DIRECTORY",
)


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no personal config file
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["check-config", *args])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "playspeak.toml"
    path.write_text(text)
    return path


# ---- the effective configuration -----------------------------------------------------------------


def test_the_example_file_is_valid_and_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check(capsys, "--config", str(EXAMPLE))
    assert code == 0
    printed = json.loads(out)
    assert printed["source"] == str(EXAMPLE)
    assert printed["control"]["socket_mode"] == "0660"
    assert printed["control"]["socket"] == str(tmp_path / "run" / "playspeak.sock")
    assert printed["log"]["level"] == "info"
    assert set(printed) == {field.name for field in dataclasses.fields(Config)}
    assert "configuration OK; speech from the embedded local server" in err


def test_the_settings_a_reload_applies_are_named_as_the_schema_declares_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """check-config and docs/operations.md name exactly the LIVE settings (config/schema)."""
    from playspeak.config.reload import live_names

    live = live_names()
    assert "api.voice" in live and "log.level" in live and "audio.device" not in live
    code, _, err = check(capsys, "--config", str(EXAMPLE))
    assert code == 0
    assert f"a reload (SIGHUP) applies {', '.join(live)}; any other change needs a restart" in err
    operations = (Path(__file__).parents[1] / "docs" / "operations.md").read_text()
    documented = operations.split("It applies these settings", 1)[1].split("Any other change", 1)[0]
    assert re.findall(r"`([a-z_]+\.[a-z_]+)`", documented) == live


def test_secrets_never_appear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAYAI_API_KEY", "sk-check-config-0123")
    monkeypatch.setenv("PLAYAI_USER_ID", "user-check-4567")
    code, out, err = check(capsys, "--config", str(EXAMPLE))
    assert code == 0
    assert "sk-check-config-0123" not in out + err and "user-check-4567" not in out + err
    api = json.loads(out)["api"]
    assert (api["api_key"], api["user_id"]) == ("<redacted>", "<redacted>")
    assert "speech from https://api.play.ai" in err


def test_a_systemd_credential_is_used_and_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "playai-api-key").write_text("sk-from-credential-89\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("PLAYAI_USER_ID", "user-1")
    code, out, _ = check(capsys, "--config", str(EXAMPLE))
    assert code == 0 and json.loads(out)["api"]["api_key"] == "<redacted>"
    assert "sk-from-credential-89" not in out


def test_an_empty_credential_means_the_embedded_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the system unit's SetCredential=playai-api-key:\\n fallback hands over."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "playai-api-key").write_text("\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    code, _, err = check(capsys, "--config", str(EXAMPLE))
    assert code == 0 and "the embedded local server" in err


def test_environment_and_options_are_part_of_the_effective_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAYSPEAK_SOCKET", str(tmp_path / "env.sock"))
    monkeypatch.setenv("PLAYSPEAK_CONFIG", str(write(tmp_path, '[log]\nlevel = "warning"\n')))
    code, out, _ = check(capsys, "--log-level", "debug", "--device", "wav:/tmp/x.wav")
    printed = json.loads(out)
    assert code == 0 and printed["source"] == str(tmp_path / "playspeak.toml")
    assert printed["control"]["socket"] == str(tmp_path / "env.sock")
    assert (printed["log"]["level"], printed["audio"]["device"]) == ("debug", "wav:/tmp/x.wav")


def test_the_cache_directory_is_shown_and_the_fallback_keys_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "systemd-cache"))
    monkeypatch.setenv("PLAYSPEAK_CONFIG", str(write(tmp_path, "[cache]\nmax_bytes = 1000\n")))
    code, out, _ = check(capsys)
    printed = json.loads(out)
    assert code == 0 and printed["cache"]["dir"] == str(tmp_path / "systemd-cache")
    assert printed["cache"]["max_bytes"] == 1000
    assert printed["fallback"] == {
        "enabled": True,
        "after": 2.0,
        "priorities": ["important", "message"],
    }
    path = write(tmp_path, '[fallback]\npriorities = ["loud"]\n')
    code, _, err = check(capsys, "--config", str(path))
    assert code == 2 and "fallback.priorities may hold only" in err and "line 2" in err


# ---- errors: exit status 2 and a message naming key, file, line ----------------------------------

LINE_ERRORS = [
    # (file text, what the message must say, the line it must name)
    ("[api\n", "Expected ']'", 1),
    ("[api]\nfoo = 1\n", "unknown key api.foo", 2),
    ('[api]\nmodel = "Play3.0-mini"\nspeed = "fast"\n', "api.speed must be a number", 3),
    ("[api]\nsample_rate = 1.5\n", "api.sample_rate must be a whole number", 2),
    ("[api]\nvoice = 3\n", "api.voice must be a string", 2),
    ('[api]\ntemperature = "hot"\n', "api.temperature must be a number", 2),
    ('[control]\nsocket_mode = "rw"\n', "control.socket_mode must be an octal string", 2),
    ("[speech]\npipeline = 1\n", "speech.pipeline must be true or false", 2),
    ("[log]\n\nlevel = 3\n", "log.level must be a string", 3),
    ('[chime]\npriorities = "important"\n', "chime.priorities must be a list of strings", 2),
]

FILE_ERRORS = [
    # (file text, what the message must say): errors about the file, a section or a value range
    ("[nope]\n", "unknown section [nope]"),
    ("api = 3\n", "api must be a table"),
    ("[api]\nspeed = 9\n", "api.speed must be 0.5–2"),
    ('[api]\nmodel = "two words"\n', "api.model must be a model name"),
    ('[api]\noutput_format = "aac"\n', "api.output_format must be one of"),
    ("[api]\nsample_rate = 100\n", "api.sample_rate must be 8000–48000"),
    ("[api]\ntemperature = 2\n", "api.temperature must be 0–1"),
    ("[audio]\nchannels = 3\n", "audio.channels must be 1 or 2"),
    ("[audio]\nbuffer_seconds = 0\n", "audio.buffer_seconds must be > 0"),
    ("[audio]\nsamplerate = -1\n", "audio.samplerate must be >= 0"),
    ("[control]\nmax_line_bytes = 1\n", "control.max_line_bytes must be >= 256"),
    ('[log]\nlevel = "loud"\n', "log.level must be one of"),
    ("[speech]\nmax_queue = 0\n", "speech.max_queue must be >= 1"),
    ('[speech]\ndefault_priority = "urgent"\n', "speech.default_priority must be one of"),
    ('[chime]\npriorities = ["urgent"]\n', "chime.priorities may hold only"),
    (
        '[local_server]\nsynth = "tts"\n',
        "local_server.synth must be one of auto, espeak, generated, piper",
    ),
    ('[api]\nurl = "http://x"\n', "api.url (PLAYSPEAK_API_URL) is set but no API key"),
    ('[api]\napi_key = "sk-in-file-2468"\n', "an API key is set but no user id"),
]


@pytest.mark.parametrize(("text", "message", "line"), LINE_ERRORS)
def test_errors_name_the_key_the_file_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str, line: int
) -> None:
    path = write(tmp_path, text)
    code, out, err = check(capsys, "--config", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"playspeak: {path}") and message in err and f"line {line}" in err


@pytest.mark.parametrize(("text", "message"), FILE_ERRORS)
def test_errors_name_the_key_and_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = write(tmp_path, text)
    code, out, err = check(capsys, "--config", str(path))
    assert (code, out) == (2, "")
    assert re.match(rf"playspeak: {re.escape(str(path))}(, line \d+)?: ", err), err
    assert message in err, err
    assert "sk-in-file-2468" not in err


def test_section_and_range_errors_also_name_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    without_line = []
    for text, _ in FILE_ERRORS[:-2]:  # the last two are about the whole configuration
        path = write(tmp_path, "# playspeak\n" + text)
        _, _, err = check(capsys, "--config", str(path))
        if not re.search(r"line [23]\b", err):
            without_line.append(err)
    assert not without_line


def test_every_error_is_reported_not_only_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        '[audio]\nvolum = 40\nchannels = 9\n[log]\nlevel = "loud"\n[nonsense]\nx = 1\n'
        "[control]\nmax_line_bytes = 4096\nmax_pending_bytes = 1024\n",
    )
    monkeypatch.setenv("PLAYSPEAK_DEVICE", "")  # empty: not an override
    monkeypatch.setenv("PLAYAI_API_KEY", "sk-in-env-1357")  # and no user id
    code, out, err = check(capsys, "--config", str(path))
    lines = err.splitlines()
    assert (code, out) == (2, "")
    assert all(line.startswith("playspeak: ") for line in lines), err
    for found in (
        f"{path}, line 2: unknown key audio.volum",
        f"{path}, line 3: audio.channels",
        f"{path}, line 5: log.level",
        f"{path}, line 6: unknown section [nonsense]",
        f"{path}, line 10: control.max_pending_bytes must be >= control.max_line_bytes",
        f"{path}: an API key is set but no user id",
    ):
        assert sum(found in line for line in lines) == 1, (found, err)
    assert len(lines) == 6 and "sk-in-env-1357" not in err


def test_a_device_run_would_refuse_is_refused(
    sound_card: object, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check(capsys, "--device", "no-such-card")
    assert (code, out) == (2, "")
    assert err.startswith("playspeak: audio.device: device 'no-such-card' matches no output")
    assert "available output devices:" in err


def test_the_device_of_the_sound_card_passes(
    sound_card: object, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = check(capsys, "--device", "pulse")  # PortAudio's ALSA pulse plugin
    assert code == 0 and json.loads(out.split("\n}\n")[0] + "}")["audio"]["device"] == "pulse"


def test_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.toml"
    code, _, err = check(capsys, "--config", str(missing))
    assert (
        code == 2
        and err == f"playspeak: {missing}: cannot read configuration: No such file or directory\n"
    )


def test_a_missing_file_named_by_playspeak_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAYSPEAK_CONFIG", str(tmp_path / "nowhere.toml"))
    code, _, err = check(capsys)
    assert code == 2 and f"{tmp_path / 'nowhere.toml'}: cannot read configuration" in err


def test_a_key_file_others_can_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "api-key"
    key.write_text("sk-readable-1357\n")
    os.chmod(key, 0o644)
    path = write(tmp_path, f'[api]\napi_key_file = "{key}"\nuser_id = "u"\n')
    code, _, err = check(capsys, "--config", str(path))
    assert code == 2 and f"api.api_key_file {key} is readable by other users" in err
    assert f"chmod 600 {key}" in err and "sk-readable-1357" not in err


def test_a_missing_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, f'[api]\napi_key_file = "{tmp_path / "nokey"}"\nuser_id = "u"\n')
    code, _, err = check(capsys, "--config", str(path))
    assert (
        code == 2
        and f"api.api_key_file {tmp_path / 'nokey'}: cannot read the secret: No such file" in err
    )


def not_utf8(path: Path) -> str:
    path.write_bytes(b"[speech]\n# caf\xe9\n")
    return "line 2: configuration is not UTF-8 (column 6)"


def a_directory(path: Path) -> str:
    path.mkdir()
    return "cannot read configuration: it is a directory, not a regular file"


def a_fifo(path: Path) -> str:
    os.mkfifo(path)  # nobody writes it: a blocking open would wait for ever
    return "cannot read configuration: it is a FIFO (named pipe), not a regular file"


def too_large(path: Path) -> str:
    path.write_text("# " + "x" * (1 << 20) + "\n")
    return "cannot read configuration: larger than 1048576 bytes"


BAD_FILES = [not_utf8, a_directory, a_fifo, too_large]


@pytest.mark.parametrize("make", BAD_FILES)
def test_a_configuration_file_that_cannot_be_read_is_named_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any
) -> None:
    path = tmp_path / "playspeak.toml"
    why = make(path)
    code, _, err = check(capsys, "--config", str(path))
    assert (code, err) == (2, f"playspeak: {path}{',' if why.startswith('line') else ':'} {why}\n")


@pytest.mark.parametrize("make", BAD_FILES)
def test_secret_files_go_through_the_same_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any
) -> None:
    key, password = tmp_path / "api-key", tmp_path / "mqtt-password"
    why = make(key).replace("configuration", "the secret").replace("1048576", "65536")
    if key.is_file():
        key.chmod(0o600)
    path = write(tmp_path, f'[api]\napi_key_file = "{key}"\nuser_id = "u"\n')
    code, _, err = check(capsys, "--config", str(path))
    assert code == 2 and f"api.api_key_file {key}" in err and why in err, err
    make(password)
    if password.is_file():
        password.chmod(0o600)
    path = write(tmp_path, f'[mqtt]\nbroker = "mqtt://localhost"\npassword_file = "{password}"\n')
    code, _, err = check(capsys, "--config", str(path))
    assert code == 2 and f"mqtt.password_file {password}" in err and why in err, err


def test_playspeak_run_with_a_file_that_is_not_utf8_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "playspeak.toml"
    why = not_utf8(path)
    env = {**os.environ, "PLAYSPEAK_SOCKET": str(tmp_path / "playspeak.sock")}
    done = subprocess.run(
        [PLAYSPEAK, "run", "--config", str(path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and f"{path}, {why}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_key_from_the_environment_without_a_user_id(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAYAI_API_KEY", "sk-env-only-9753")
    code, _, err = check(capsys, "--config", str(EXAMPLE))
    assert code == 2 and f"{EXAMPLE}: an API key is set but no user id: set PLAYAI_USER_ID" in err
    assert "sk-env-only-9753" not in err


def test_the_installed_command_exits_2(tmp_path: Path) -> None:
    """The console script itself, as a unit's ExecStartPre= or an admin would run it."""
    path = write(tmp_path, "[audio]\nchannels = 3\n")
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    result = subprocess.run(
        [PLAYSPEAK, "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"playspeak: {path}, line 2: audio.channels must be 1 or 2, not 3\n"


def test_the_link_section_is_printed_and_an_idle_close_too_long_is_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check(capsys, "--config", str(EXAMPLE))
    assert code == 0 and json.loads(out)["link"] == {"idle_close": 20.0, "warm_up": False}
    assert "note:" not in err
    path = write(
        tmp_path,
        '[local_server]\nembedded = "server"\nrealistic = true\n[link]\nidle_close = 40.0\n',
    )
    code, out, err = check(capsys, "--config", str(path))
    assert code == 0
    assert "link.idle_close (40 s) is not below the embedded server's idle timeout (30 s)" in err
    code, out, err = check(capsys, "--config", str(write(tmp_path, "[link]\nidle_close = -1\n")))
    assert code == 2 and "link.idle_close must be seconds >= 0" in err


def test_every_setting_is_printed_as_the_schema_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed sections and keys are the schema's; file modes are octal strings in every
    section, and each printed value, written back to a file, reads as the same setting."""
    from playspeak.config.sections import SECTIONS, entries

    code, out, _ = check(capsys, "--config", str(EXAMPLE))
    printed = json.loads(out)
    assert code == 0
    assert {s: set(printed[s]) for s in SECTIONS} == {
        s: {e.key for e in entries() if e.section == s} for s in SECTIONS
    }
    assert (printed["control"]["socket_mode"], printed["ssip"]["socket_mode"]) == ("0660", "0600")
    for entry in entries():
        value = printed[entry.section][entry.key]
        if value is not None and entry.key not in ("socket", "dir"):  # shown resolved
            assert entry.read(value) == entry.default, entry.name
