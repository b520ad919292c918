"""The daemon's root: one nursery owning the local server (when embedded), the player, the link,
the speaker and the control server, started in that order; READY once all are up."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import trio

from playspeak import __version__, systemd
from playspeak.audio.devicestate import DeviceState
from playspeak.cache.store import PhraseStore, default_cache_dir
from playspeak.chime import load_chime
from playspeak.commands import CommandHandler
from playspeak.config import Config
from playspeak.config.reload import reload_config
from playspeak.control.server import ControlServer, bind_unix_socket
from playspeak.engines import Synthesizer
from playspeak.errors import ConfigError
from playspeak.events import DeviceChanged, timestamp
from playspeak.fallback import FallbackVoice
from playspeak.health import Health
from playspeak.log import register_secret, setup_logging
from playspeak.playai.link import LinkPool, LinkSettings
from playspeak.schedule import ScheduleRules
from playspeak.sources import Sources
from playspeak.speaker import AudioSink, Speaker
from playspeak.speech import EventHub
from playspeak.userstate import FILE_NAME, StateKeeper, default_state_dir, load_state
from playspeak.utterances import UtteranceBuilder
from playspeak.voices import Voice, local_voices, service_voices

if TYPE_CHECKING:  # imported where used: the sound card's modules load only when needed
    from playspeak.audio.output import AudioOutput
    from playspeak.audio.wavfile import WavFilePlayer
    from playspeak.mqtt.bridge import MqttBridge

log = logging.getLogger(__name__)


def make_player(
    config: Config, on_change: Callable[[DeviceState, str], None]
) -> AudioOutput | WavFilePlayer:
    """The configured output: a WAV file for `wav:PATH`, else the sound card, whose losses and
    returns are reported to `on_change(state, error)`."""
    audio = config.audio
    if audio.device.startswith("wav:"):
        from playspeak.audio.wavfile import WavFilePlayer

        return WavFilePlayer(
            audio.device[4:], samplerate=audio.samplerate or 48000, channels=audio.channels
        )
    from playspeak.audio.output import AudioOutput
    from playspeak.audio.player import Player

    device: str | int | None = audio.device or None
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    player = Player(
        device=device,
        samplerate=audio.samplerate or None,
        channels=audio.channels,
        blocksize=round((audio.samplerate or 48000) * audio.blocksize_ms / 1000)
        if audio.samplerate
        else 0,
        latency=audio.latency,
        buffer_seconds=audio.buffer_seconds,
        stop_when_idle=audio.stop_when_idle,
        steady_latency=audio.steady_latency,
    )
    return AudioOutput(player, on_change=on_change)


@dataclass
class Daemon:
    """Handles to the running parts, for the CLI's demo and for tests."""

    config: Config
    socket_path: Path
    speaker: Speaker
    player: AudioSink
    links: LinkPool
    control: ControlServer
    handler: CommandHandler
    builder: UtteranceBuilder  # the defaults every front end's utterances are built with
    report: StatusReport
    local_server: Any = None

    mqtt: MqttBridge | None = None  # when [mqtt] is configured
    # While shutting down in finish mode: cancelled by a second SIGTERM/SIGINT (stop now).
    finishing: trio.CancelScope | None = None
    stopping: bool = False  # STOPPING=1 was sent

    def apply(self, new: Config) -> None:  # SIGHUP
        """Take the settings of `new` the schema declares reloadable (Reload.LIVE); name the
        changed ones that need a restart."""
        reloaded = reload_config(self.config, new)
        live, speaker = reloaded.config, self.speaker
        setup_logging(live.log.level)
        self.builder.api = live.api
        self.builder.default_priority = live.speech.default_priority
        speaker.max_age, speaker.max_attempts = live.speech.max_age, live.speech.max_attempts
        speaker.chime = load_chime(live.chime.sound, self.player.samplerate, self.player.channels)
        speaker.chime_priorities = live.chime.priorities
        if reloaded.need_restart:
            log.warning(
                "SIGHUP: reloaded; these changes need a restart: %s",
                ", ".join(reloaded.need_restart),
            )
        else:
            log.info("SIGHUP: configuration reloaded from %s", new.source or "defaults")
        self.config = live

    async def shutdown(self) -> None:
        """Refuse new speech; finish what is pending (speech.on_shutdown = "finish", bounded by
        speech.shutdown_timeout) or not; cancel the rest and give clients a moment to read it."""
        self.handler.stopping = True
        self.stopping = True
        systemd.notify("STOPPING=1")
        speech = self.config.speech
        if speech.on_shutdown == "finish":
            with trio.move_on_after(speech.shutdown_timeout) as self.finishing:
                await self.speaker.wait_idle()
            self.finishing = None
        self.speaker.cancel(lambda u: True, reason="daemon stopping")
        clients = list(self.control.clients)
        for client in clients:
            client.close_outbox()  # no more lines: each writer ends once it wrote them all
        with trio.move_on_after(1.0):
            for client in clients:
                await client.drained.wait()

    def hurry(self) -> None:
        """Stop waiting for pending speech to finish (a second SIGTERM during shutdown)."""
        if self.finishing is not None:
            log.info("not waiting for pending speech any longer")
            self.finishing.cancel()

    def status(self) -> dict[str, Any]:
        return self.report()

    def health(self) -> Health:
        """The parts' states, typed, for systemd (READY=1, WATCHDOG=1, STATUS=)."""
        speaking = self.speaker.speaking()
        return Health(
            links=self.links.health(),
            device=self.player.health,
            speaking=None if speaking is None else speaking.id,
            queued=len(self.speaker.queue),
            paused=self.speaker.paused,
        )


class StatusReport:
    """The daemon's state for `status`, MQTT and systemd: each part's own status, merged in
    the order the parts were added. The root adds each part once it is made, so that a part
    that reports the status (the command handler, the MQTT bridge) is made before the status
    shows it, with no reference back to the daemon."""

    def __init__(self) -> None:
        self._parts: list[Callable[[], Mapping[str, Any]]] = []

    def add(self, part: Callable[[], Mapping[str, Any]]) -> None:
        self._parts.append(part)

    def __call__(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for part in self._parts:
            merged.update(part())
        return merged


def speaks_directly(config: Config) -> bool:
    """Whether the local voice speaks directly (no service configured, and not through the
    embedded server: [local_server] embedded)."""
    return config.api.embedded and config.local_server.embedded == "voice"


def make_sources(config: Config, links: LinkPool) -> Sources:
    """The local voice when it speaks directly; else the phrase cache and the fallback voice,
    as configured ([cache], [fallback])."""
    synth = Synthesizer(config.local_server.synth)
    if speaks_directly(config):
        return Sources(links, model=config.api.model, store=None, fallback=None, local=synth)
    cache, fallback = config.cache, config.fallback
    store = None
    if cache.enabled:
        directory = Path(cache.dir) if cache.dir else default_cache_dir()
        store = PhraseStore(directory, cache.max_bytes)
    voice = FallbackVoice(after=fallback.after, priorities=fallback.priorities, synth=synth)
    return Sources(
        links, model=config.api.model, store=store, fallback=voice if fallback.enabled else None
    )


def local_engines(config: Config, sources: Sources) -> Synthesizer:
    """The local voice's engines: those the direct voice or the fallback voice already has
    (make_sources builds them from the same setting), else new ones (the embedded server's
    choice, with the fallback off)."""
    if sources.local is not None:
        return sources.local
    if sources.fallback is not None:
        return sources.fallback.synth
    return Synthesizer(config.local_server.synth)


def list_voices(config: Config, sources: Sources) -> list[Voice]:
    """What `voices` lists: the local engines' voices, or the configured service's. Blocks
    (runs espeak-ng --voices once)."""
    if not config.api.embedded:
        return service_voices(config.api.voice)
    return local_voices(local_engines(config, sources))


def voice_warnings(config: Config, sources: Sources) -> list[str]:
    """What a missing espeak-ng costs this configuration, said at start and in `status`."""
    found: list[str] = []
    fallback = sources.fallback
    if fallback is not None and fallback.synth.warning(""):
        found.append(
            "espeak-ng is not installed: there is no fallback voice; when the TTS service "
            "cannot speak, utterances fail with the reason (apt-get install espeak-ng)"
        )
    if config.api.embedded and (murmur := local_engines(config, sources).warning("")):
        found.append(murmur)
    return found


def _control_socket(config: Config) -> tuple[Any, Path | None]:
    """The socket systemd passed us, else our own bound at the configured path."""
    inherited = systemd.listen_sockets()
    if inherited:
        log.info("using the control socket passed by systemd (its unit sets mode and group)")
        return inherited[0], None
    path = config.control.socket_path
    return bind_unix_socket(path, config.control.socket_mode, config.control.socket_group), path


@asynccontextmanager
async def open_daemon(config: Config) -> AsyncIterator[Daemon]:
    """Start every part; yields once the control socket serves. Leaving cancels them all."""
    sock, path = _control_socket(config)  # first: a daemon already running stops us at once
    shown_path = path or Path(sock.getsockname() or "<inherited>")
    try:
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            local_server, base_url, key, user = await _start_service(config, nursery)
            service = not speaks_directly(config)  # else no link is ever used
            ready_when = config.systemd.ready_when if service else "socket"
            hub = EventHub()
            # device lost / back: told to the subscribers
            player = make_player(
                config, lambda state, error: hub.broadcast(DeviceChanged(timestamp(), state, error))
            )
            await nursery.start(player.run)
            keeper = await _keep_state(player, nursery)
            settings = LinkSettings.from_config(
                config.api, config.link, base_url=base_url, api_key=key, user_id=user
            )
            # ready_when = "link" waits for a connection: it must be opened at start
            warm_up = service and (settings.warm_up or ready_when == "link")
            links = LinkPool(dataclasses.replace(settings, warm_up=warm_up), http)
            await nursery.start(links.run)
            sources = make_sources(config, links)
            await nursery.start(sources.run)
            speaker = Speaker.from_config(config, player=player, hub=hub, sources=sources)
            await nursery.start(speaker.run)
            started = trio.current_time()
            report = StatusReport()
            report.add(
                lambda: {
                    **speaker.status(),
                    "links": links.status(),
                    "device": player.stats,
                    "volume": round(player.volume * 100, 1),
                }
            )
            voices = await trio.to_thread.run_sync(list_voices, config, sources)
            refusal = sources.local.refusal if sources.local is not None else None
            builder = UtteranceBuilder(
                config.api, config.speech.default_priority, voices, refusal=refusal
            )
            handler = CommandHandler(speaker, hub, builder, report)
            handler.state_changed = keeper.changed
            handler.schedule = ScheduleRules.from_section(config.speech)
            control = ControlServer.from_section(
                config.control, sock, handler, path=path, on_close=handler.forget
            )
            warnings = voice_warnings(config, sources)
            for warning in warnings:
                log.warning("%s", warning)
            report.add(
                lambda: {
                    "warnings": warnings,
                    "clients": len(control.clients),
                    "embedded_server": local_server is not None,
                    "local_voice": sources.local is not None,
                    **sources.status(),
                    "uptime": round(trio.current_time() - started, 1),
                }
            )
            daemon = Daemon(
                config,
                shown_path,
                speaker,
                player,
                links,
                control,
                handler,
                builder,
                report,
                local_server,
            )
            await nursery.start(control.run)
            log.info("listening on %s", shown_path)
            if config.ssip.socket:  # Speech Dispatcher's clients (spd-say, speechd) speak here too
                # lazy: off by default, and resident memory once imported (docs/benchmarks.md,
                # "Memory")
                from playspeak.ssip.server import SsipServer

                await nursery.start(SsipServer.open(config, speaker, builder).run)
            if config.mqtt.broker:  # many rooms: lazy, so that paho loads only when configured
                from playspeak.mqtt.bridge import MqttBridge

                bridge = MqttBridge(
                    config.mqtt,
                    handler,
                    report,
                    config.control.client_buffer,
                    __version__,
                    max_payload=config.control.max_line_bytes,
                )
                report.add(lambda: {"mqtt": bridge.status()})
                await nursery.start(bridge.run)
                daemon.mqtt = bridge
            notifier = systemd.Notifier(daemon, ready_when=ready_when)
            await nursery.start(notifier.run)  # READY=1, STATUS, WATCHDOG
            yield daemon
            if not daemon.stopping:
                systemd.notify("STOPPING=1")
            nursery.cancel_scope.cancel()
    finally:
        sock.close()
        if path is not None:  # ours: a start that failed half-way leaves no socket file behind
            path.unlink(missing_ok=True)


async def _keep_state(player: AudioSink, nursery: trio.Nursery) -> StateKeeper:
    """The saved volume applied to `player`; a keeper that saves it when it is set."""
    path = default_state_dir() / FILE_NAME
    saved = await trio.to_thread.run_sync(load_state, path)
    volume = saved.get("volume")
    if isinstance(volume, int | float) and not isinstance(volume, bool) and 0 <= volume <= 100:
        player.volume = volume / 100
        log.info("volume %s, as it was set before the restart", volume)
    elif volume is not None:
        log.warning("state file %s: volume %r is not 0–100: not used", path, volume)
    keeper = StateKeeper(path, lambda: {"volume": round(player.volume * 100, 1)})
    await nursery.start(keeper.run)
    return keeper


async def _start_service(config: Config, nursery: trio.Nursery) -> tuple[Any, str, str, str]:
    """The TTS service to use: the configured one, or the embedded local server."""
    api = config.api
    if not api.embedded:
        return None, api.effective_url, api.api_key, api.user_id
    config.local_server.check()  # a cost of the server asked for the direct voice: refused
    if speaks_directly(config):
        log.info("no API key configured: speaking with the local voice")
        return None, "", "", ""
    from playspeak.localserver import LocalServer
    from playspeak.localserver.settings import LocalServerSettings

    key, user = secrets.token_urlsafe(24), secrets.token_urlsafe(8)
    register_secret(key)
    register_secret(user)
    server = LocalServer(
        LocalServerSettings.from_section(config.local_server, api_key=key, user_id=user)
    )
    base_url = await nursery.start(server.run)
    log.info(
        "no API key configured: speaking through the embedded local PlayAI-compatible server at %s",
        base_url,
    )
    return server, base_url, key, user


_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def run_until_signal(config: Config, reload: Callable[[], Config] | None = None) -> None:
    """`playspeak run`: serve until SIGTERM or SIGINT, then shut down cleanly (exit 0).
    SIGHUP reloads the configuration with `reload` (queued utterances are kept). A second
    SIGTERM or SIGINT while finishing what is pending (speech.on_shutdown = "finish") stops
    at once, still cleanly; signals that arrive while the daemon closes are ignored."""
    # trio re-raises the signals still pending when its receiver closes, with the handlers it
    # found: let those be no-ops, so that a late SIGTERM cannot turn exit 0 into death by it.
    previous = {signum: signal.signal(signum, _late_signal) for signum in _SIGNALS}
    try:
        with trio.open_signal_receiver(*_SIGNALS) as signals:
            async with open_daemon(config) as daemon, trio.open_nursery() as nursery:
                stop = trio.Event()
                nursery.start_soon(_on_signals, signals, daemon, reload, stop)
                await stop.wait()
                await daemon.shutdown()
                nursery.cancel_scope.cancel()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _late_signal(signum: int, frame: object) -> None:
    log.debug("%s while closing: ignored", signal.Signals(signum).name)


async def _on_signals(
    signals: AsyncIterator[int],
    daemon: Daemon,
    reload: Callable[[], Config] | None,
    stop: trio.Event,
) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            if stop.is_set():
                log.info("SIGHUP while shutting down: ignored")
            else:
                _reload(daemon, reload)
        elif not stop.is_set():
            log.info("%s: shutting down", name)
            stop.set()
        else:
            log.info("%s again: stopping now", name)
            daemon.hurry()


def _reload(daemon: Daemon, reload: Callable[[], Config] | None) -> None:
    if reload is None:
        log.warning("SIGHUP: no configuration to reload")
        return
    systemd.notify("RELOADING=1")  # `systemctl reload` waits for the READY=1 below
    try:
        daemon.apply(reload())
    except ConfigError as e:
        log.error("SIGHUP: configuration not reloaded, kept the old configuration: %s", e)
    finally:
        systemd.notify("READY=1")
