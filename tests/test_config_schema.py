"""The configuration schema: every setting declared once (config/sections.py), and what is
derived from it — the example file, each value's check and its message, the environment
variables, check-config's values — kept in step with it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from playspeak.config import Config, load_config
from playspeak.config.example import example_toml, key_doc
from playspeak.config.schema import Entry
from playspeak.config.sections import SECTIONS, entries
from playspeak.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "playspeak.toml"
KEY = re.compile(r"# \w+ = ")  # a key shown commented out
ENTRIES = {entry.name: entry for entry in entries()}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "playspeak.toml"
    path.write_text(text)
    return path


# ---- the example file ----------------------------------------------------------------------------


def test_the_example_file_is_the_one_the_schema_writes() -> None:
    assert EXAMPLE.read_text() == example_toml(), (
        "config/playspeak.toml differs from the schema: "
        "run .venv/bin/python -m playspeak.config.example > config/playspeak.toml"
    )


def _comment_above(lines: list[str], index: int) -> str:
    """The comment lines directly above line `index` (up to a key shown commented out), joined
    into one line of words."""
    start = index
    while start > 0 and lines[start - 1].startswith("#") and not KEY.match(lines[start - 1]):
        start -= 1
    return " ".join(line.lstrip("#").strip() for line in lines[start:index]).strip()


def test_the_example_file_holds_every_key_with_its_default_and_its_doc() -> None:
    """Read as a user reads it (not through the writer): the sections and keys are exactly the
    schema's, each value is the default, each key's doc is the comment above it, and a key with
    no default is shown commented out."""
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    lines = text.splitlines()
    assert list(data) == list(SECTIONS)
    for section in SECTIONS:
        in_schema = [e for e in entries() if e.section == section]
        assert list(data[section]) == [e.key for e in in_schema if e.default is not None]
        for entry in in_schema:
            if entry.default is None:
                line = f"# {entry.key} = {entry.setting.example}"
            else:
                assert entry.read(data[section][entry.key]) == entry.default, entry.name
                line = f"{entry.key} = {entry.toml(entry.default)}"
            index = lines.index(line, lines.index(f"[{section}]"))
            assert _comment_above(lines, index) == " ".join(key_doc(entry).split()), entry.name
            assert entry.doc in _comment_above(lines, index), entry.name


def test_the_example_file_loads_as_exactly_the_defaults() -> None:
    assert load_config(EXAMPLE, env={}) == Config(source=str(EXAMPLE))


# ---- the schema itself ---------------------------------------------------------------------------


@pytest.mark.parametrize("entry", entries(), ids=lambda e: e.name)
def test_each_default_round_trips_and_passes_its_own_check(entry: Entry) -> None:
    assert entry.doc.strip() and entry.doc.rstrip().endswith((".", ")")), entry.name
    if entry.default is None:
        assert entry.setting.example, "a setting with no default shows an example"
        entry.read(tomllib.loads(f"v = {entry.setting.example}")["v"])
        return
    entry.check(entry.default)
    written = tomllib.loads(f"v = {entry.toml(entry.default)}")["v"]
    assert entry.read(written) == entry.default
    assert type(entry.read(written)) is type(entry.default)


def test_every_section_has_a_doc_of_its_own() -> None:
    for name, cls in SECTIONS.items():
        assert cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("), name


def test_the_environment_variables_are_the_contracted_ones() -> None:
    """Names scripts, units and tests outside the project rely on."""
    assert {e.setting.env: e.name for e in entries() if e.setting.env} == {
        "PLAYSPEAK_API_URL": "api.url",
        "PLAYAI_API_KEY": "api.api_key",
        "PLAYAI_USER_ID": "api.user_id",
        "PLAYSPEAK_SOCKET": "control.socket",
        "PLAYSPEAK_DEVICE": "audio.device",
        "PLAYSPEAK_SSIP_SOCKET": "ssip.socket",
        "PLAYSPEAK_MQTT_BROKER": "mqtt.broker",
    }


@pytest.mark.parametrize(
    ("variable", "value", "section", "key"),
    [
        ("PLAYSPEAK_DEVICE", "pulse", "audio", "device"),
        ("PLAYSPEAK_SSIP_SOCKET", "/run/x/speechd.sock", "ssip", "socket"),
        ("PLAYSPEAK_MQTT_BROKER", "mqtt://10.0.0.2:1884", "mqtt", "broker"),
        ("PLAYSPEAK_SOCKET", "/run/x/playspeak.sock", "control", "socket"),
    ],
)
def test_a_variable_overrides_the_file_and_an_empty_one_does_not(
    tmp_path: Path, variable: str, value: str, section: str, key: str
) -> None:
    path = write(tmp_path, f'[{section}]\n{key} = "from-file"\n')
    if section == "mqtt":
        path = write(tmp_path, f'[{section}]\n{key} = "mqtt://from-file"\n')
    assert getattr(getattr(load_config(path, env={variable: value}), section), key) == value
    kept = getattr(getattr(load_config(path, env={variable: ""}), section), key)
    assert kept.endswith("from-file")


# ---- every kind of message: the file, the line, the key, the bad value, what is allowed ---------

MESSAGES = [
    # (file text, the whole message after "FILE, line N: ")
    ("[speech]\npipeline = 1\n", "speech.pipeline must be true or false, not 1"),
    ("[api]\nsample_rate = 1.5\n", "api.sample_rate must be a whole number (8000–48000), not 1.5"),
    ('[api]\nspeed = "fast"\n', "api.speed must be a number (0.5–2), not 'fast'"),
    ("[api]\nvoice = 3\n", "api.voice must be a string, not 3"),
    ('[api]\ntemperature = "hot"\n', "api.temperature must be a number (0–1), not 'hot'"),
    (
        '[chime]\npriorities = "important"\n',
        "chime.priorities must be a list of strings "
        "(any of important, message, text, notification, progress), not 'important'",
    ),
    (
        '[control]\nallow_uids = ["root"]\n',
        "control.allow_uids must be a list of whole numbers, not ['root']",
    ),
    (
        '[control]\nsocket_mode = "rw"\n',
        "control.socket_mode must be an octal string like \"0660\", not 'rw'",
    ),
    (
        "[audio]\ndevice = true\n",
        "audio.device must be a string (a device name) or a whole number (its index), not True",
    ),
    (
        "[audio]\nlatency = []\n",
        'audio.latency must be a string ("low", "high") or a number '
        '(seconds) ("low", "high" or seconds (a number >= 0)), not []',
    ),
    (
        '[audio]\nlatency = "fast"\n',
        'audio.latency must be "low", "high" or seconds (a number >= 0), not \'fast\'',
    ),
    ("[api]\nspeed = 9\n", "api.speed must be 0.5–2, not 9"),
    ("[api]\nconnect_timeout = 0\n", "api.connect_timeout must be > 0, not 0"),
    ("[control]\nmax_line_bytes = 1\n", "control.max_line_bytes must be >= 256, not 1"),
    ("[link]\nidle_close = -1\n", "link.idle_close must be seconds >= 0, not -1"),
    ("[audio]\nsteady_latency = 2\n", "audio.steady_latency must be seconds in [0, 2), not 2"),
    (
        "[local_server]\nauth_delay = inf\n",
        "local_server.auth_delay must be seconds >= 0 and finite, not inf",
    ),
    ("[fallback]\nafter = nan\n", "fallback.after must be seconds > 0 and finite, not nan"),
    ("[local_server]\nauth_status = 404\n", "local_server.auth_status must be 200–299, not 404"),
    ("[audio]\nchannels = 3\n", "audio.channels must be 1 or 2, not 3"),
    ("[audio]\nnice = 30\n", "audio.nice must be from -20 to 19, not 30"),
    (
        '[local_server]\nsynth = "tts"\n',
        "local_server.synth must be one of auto, espeak, generated, piper, not 'tts'",
    ),
    ('[log]\nlevel = "loud"\n', "log.level must be one of debug, info, warning, error, not 'loud'"),
    (
        '[fallback]\npriorities = ["message", "loud"]\n',
        "fallback.priorities may hold only "
        "important, message, text, notification, progress, not 'loud'",
    ),
    (
        '[api]\nmodel = "two words"\n',
        "api.model must be a model name (e.g. one of Play3.0-mini, "
        "PlayDialog, PlayDialogMultilingual, PlayDialogArabic), not 'two words'",
    ),
    (
        '[local_server]\nauth_rate = "0/60"\n',
        'local_server.auth_rate must be "" or "N/SECONDS", as in "10/60", not \'0/60\'',
    ),
    ("[api]\nsped = 1.0\n", "unknown key api.sped (did you mean api.speed?)"),
    ("[api]\nzzz = 1\n", "unknown key api.zzz"),
    (
        "[control]\nmax_pending_bytes = 1000\n",
        "control.max_pending_bytes must be >= control.max_line_bytes (65536), not 1000",
    ),
]


@pytest.mark.parametrize(("text", "message"), MESSAGES)
def test_each_message_names_the_file_the_line_the_key_the_value_and_what_is_allowed(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "# a comment\n" + text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}, line 3: {message}"


def test_an_unknown_section_names_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "[nope]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (
        str(info.value) == f"{path}, line 1: unknown section [nope] (known: {', '.join(SECTIONS)})"
    )


def test_a_device_index_written_as_a_number_reads_as_text(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "[audio]\ndevice = 7\n"), env={}).audio.device == "7"


def test_a_value_from_the_environment_is_checked_and_the_message_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No variable's setting has a rule today (any text is a device, a path or a URL); one that
    had would be checked like a value from the file."""
    import dataclasses

    from playspeak.config import load

    strict = dataclasses.replace(
        ENTRIES["audio.device"],
        setting=dataclasses.replace(
            ENTRIES["audio.device"].setting, check=lambda v: v != "bad", allowed="not bad"
        ),
    )
    monkeypatch.setattr(load, "entries", lambda: [strict])
    empty = write(tmp_path, "")
    assert load_config(empty, env={"PLAYSPEAK_DEVICE": "good"}).audio.device == "good"
    with pytest.raises(ConfigError) as info:
        load_config(empty, env={"PLAYSPEAK_DEVICE": "bad"})
    assert str(info.value) == "PLAYSPEAK_DEVICE: audio.device must be not bad, not 'bad'"
