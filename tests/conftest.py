"""Test-wide set-up: a private PulseAudio null sink started before PortAudio is first loaded."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio.testing

from playspeak.audio.priority import raise_priority
from playspeak.config import AudioConfig
from playspeak.speech import EventHub

from soundcard import PulseNullSink, Recorder, SoundCardError

if TYPE_CHECKING:
    from playspeak.config import Config
    from playspeak.daemon import Daemon

# sounddevice initialises PortAudio, which lists the devices once, at import: the sink must
# be running and the environment pointing at it before anything imports sounddevice.
_card: PulseNullSink | None = None
_card_error = ""
_saved_env: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    global _card, _card_error
    # Compiled modules are kept (git ignores __pycache__), also where PYTHONDONTWRITEBYTECODE
    # is set, as some images do: else each worker compiled every test module again (collecting
    # took 6 s instead of 2.4 s) and each daemon the tests start compiled its package. Popped
    # here, in the controller, the workers and children start without it.
    sys.dont_write_bytecode = False
    EventHub.strict = True  # an utterance event out of order fails the test (lifecycle.py)
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        _saved_env["PYTHONDONTWRITEBYTECODE"] = os.environ.pop("PYTHONDONTWRITEBYTECODE")
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        return  # pytest-xdist's controller runs no test: each worker starts its own sink
    # The players this process runs in-process get the scheduling priority that `playspeak run`
    # gives the daemon (audio.nice; the daemons the tests start as children set their own):
    # tests of the audio path measure the product as it runs, also on a loaded machine.
    if priority := raise_priority(AudioConfig.nice):
        print(f"conftest: {priority}", file=sys.stderr)
    if os.environ.get("PLAYSPEAK_TEST_PULSE") == "external":
        _card = PulseNullSink.external(os.environ.get("PLAYSPEAK_TEST_SINK", "testsink"))
        return
    if "sounddevice" in sys.modules:
        _card_error = "sounddevice was imported before conftest could start the sound card"
        return
    card = PulseNullSink()
    try:
        card.start()
    except (SoundCardError, OSError) as e:
        _card_error = f"cannot start the private PulseAudio null sink: {e}"
        return
    for key, value in card.env.items():
        _saved_env[key] = os.environ.get(key)
        os.environ[key] = value
    _card = card


def pytest_unconfigure(config: pytest.Config) -> None:
    global _card
    if _card is not None:
        _card.stop()
        _card = None
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_env.clear()


@pytest.fixture(scope="session")
def sound_card() -> PulseNullSink:
    """The null sink every PortAudio stream in this test run plays into (its monitor records).

    Tests that need it fail, never skip, when it could not be started.
    """
    if _card is None:
        pytest.fail(_card_error or "no sound card", pytrace=False)
    return _card


@pytest.fixture
def daemon_config(tmp_path: Path, sound_card: PulseNullSink) -> Config:
    """The configuration the `daemon` fixture runs: the sound-card tests' own
    (daemon_helpers.sound_card_config). A test module that needs another overrides this
    fixture, and asks there for what its configuration needs (a service, the sink, ...)."""
    from daemon_helpers import sound_card_config

    return sound_card_config(tmp_path)


@pytest.fixture
async def daemon(daemon_config: Config) -> AsyncIterator[Daemon]:
    """The daemon, in the test's own trio run, on `daemon_config`."""
    # imported here: the daemon imports sounddevice, which must not load before the sink runs
    from playspeak.daemon import open_daemon

    async with open_daemon(daemon_config) as running:
        yield running


@pytest.fixture
def recorder(sound_card: PulseNullSink) -> Iterator[Recorder]:
    """The sink's monitor, recorded for the test (`recorder.mark`: where the test began)."""
    with sound_card.recorder() as rec:
        yield rec


@pytest.fixture
def batch_priority() -> Iterator[None]:
    """For a CPU-heavy test that plays nothing: its worker runs at nice 0 meanwhile, as batch
    work would, so that the players of the tests beside it (at audio.nice) are fed first."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    for thread_id in os.listdir("/proc/self/task"):  # each thread has its own nice value
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, int(thread_id), max(before, 0))
    try:
        yield
    finally:
        raise_priority(before)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Virtual time for tests that run the link and the local server in this process: it jumps
    once trio has waited 50 ms of real time for nothing but timers. Their loopback I/O is ready
    at once and nothing of theirs runs in a thread (under a MockClock the engines work inline),
    so no jump overtakes it; each jump costs those 50 ms (0.3 s made two files take 43 s)."""
    return trio.testing.MockClock(autojump_threshold=0.05)


@pytest.fixture(autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test's daemons (in process or children) keep their phrase cache apart: a phrase
    cached by one test must not spare another its service request."""
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    # and their saved state (the volume) likewise
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users may pass through (pytest's tmp_path is root's alone), for the
    tests of who may reach the daemon's sockets."""
    path = Path(tempfile.mkdtemp(prefix="playspeak-shared-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
