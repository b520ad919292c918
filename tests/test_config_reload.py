"""Reloadability is declared once, at each setting (Reload.LIVE or RESTART), and a reload
takes exactly the LIVE settings of the new configuration."""

from __future__ import annotations

import dataclasses

from playspeak.config import Config
from playspeak.config.reload import reload_config
from playspeak.config.schema import Reload
from playspeak.config.sections import entries

# What SIGHUP has applied live since it was added; any change here is a change of behaviour.
LIVE = {
    "api.voice",
    "api.output_format",
    "api.sample_rate",
    "api.speed",
    "api.temperature",
    "speech.default_priority",
    "speech.max_age",
    "speech.max_attempts",
    "chime.sound",
    "chime.priorities",
    "log.level",
}


def test_every_setting_declares_its_reloadability() -> None:
    assert all(isinstance(e.setting.reload, Reload) for e in entries())
    assert {e.name for e in entries() if e.live} == LIVE


def _every_setting_changed(old: Config) -> Config:
    """`old` with each setting replaced by a value of its own (reload_config only compares)."""
    sections = {}
    for section in {e.section for e in entries()}:
        values = getattr(old, section)
        keys = [e.key for e in entries() if e.section == section]
        sections[section] = dataclasses.replace(values, **{k: ("new", k) for k in keys})
    return dataclasses.replace(old, source="new.toml", **sections)


def test_a_reload_takes_exactly_the_live_settings() -> None:
    old = Config(source="old.toml")
    reloaded = reload_config(old, _every_setting_changed(old))
    for e in entries():
        value = getattr(getattr(reloaded.config, e.section), e.key)
        assert value == (("new", e.key) if e.live else e.default), e.name
    assert reloaded.need_restart == [e.name for e in entries() if not e.live]
    assert reloaded.config.source == "old.toml"


def test_an_unchanged_configuration_needs_no_restart() -> None:
    reloaded = reload_config(Config(), Config(source="same.toml"))
    assert reloaded.config == Config() and reloaded.need_restart == []
