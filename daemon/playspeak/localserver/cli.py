"""``playspeak serve-local``: run the local PlayAI-compatible server until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import signal

import trio

from playspeak.config.load import credential_api_key
from playspeak.config.sections import SYNTH_MODES
from playspeak.errors import ConfigError, leaves
from playspeak.localserver.server import LocalServer
from playspeak.localserver.settings import (
    REALISTIC,
    AuthRate,
    LocalServerSettings,
    service_costs,
)

log = logging.getLogger("playspeak.localserver")


def parse_args(argv: list[str], environ: dict[str, str] | None = None) -> LocalServerSettings:
    """Settings from the command line, and credentials from PLAYAI_API_KEY / PLAYAI_USER_ID
    (the key also from systemd's LoadCredential=playai-api-key, as for the daemon)."""
    env = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {k: getattr(args, k) for k in REALISTIC if getattr(args, k) is not None}
    costs = service_costs(realistic=args.realistic, given=given)
    try:
        return LocalServerSettings(
            host=args.host,
            port=args.port,
            api_key=env.get("PLAYAI_API_KEY") or credential_api_key(env) or None,
            user_id=env.get("PLAYAI_USER_ID") or None,
            token_lifetime=args.token_lifetime,
            connection_lifetime=args.connection_lifetime,
            first_byte_delay=args.first_byte_delay,
            realtime_factor=args.realtime_factor,
            synth=args.synth,
            certfile=args.certfile,
            keyfile=args.keyfile,
            client_auth_rate=args.client_auth_rate,
            client_connections=args.client_connections,
            client_requests=args.client_requests,
            **costs,
        )
    except (ValueError, ConfigError) as e:
        parser.error(str(e))


def build_parser() -> argparse.ArgumentParser:
    """serve-local's command line (also read by playspeak.completion)."""
    defaults = LocalServerSettings()
    parser = argparse.ArgumentParser(
        prog="playspeak serve-local", description="Run a local PlayAI-compatible TTS server."
    )
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--first-byte-delay", type=float, default=defaults.first_byte_delay)
    parser.add_argument("--realtime-factor", type=float, default=defaults.realtime_factor)
    parser.add_argument("--token-lifetime", type=float, default=defaults.token_lifetime)
    parser.add_argument("--connection-lifetime", type=float, default=defaults.connection_lifetime)
    parser.add_argument("--synth", choices=SYNTH_MODES, default="auto")
    _add_house_server(parser)
    _add_service_costs(parser)
    return parser


def _auth_rate(text: str) -> AuthRate:
    try:
        return AuthRate.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_house_server(parser: argparse.ArgumentParser) -> None:
    """TLS and the bounds on each client (by address), for a server beyond loopback (which
    needs PLAYAI_API_KEY and PLAYAI_USER_ID)."""
    group = parser.add_argument_group("a voice server for the house (docs/local-server.md)")
    group.add_argument("--certfile", metavar="PEM", help="serve TLS: https and wss URLs")
    group.add_argument("--keyfile", metavar="PEM", help="the certificate's key, if not in it")
    group.add_argument(
        "--client-auth-rate",
        type=_auth_rate,
        metavar="N/SECONDS",
        help="answer 429 with Retry-After past N auth calls from one client in SECONDS",
    )
    group.add_argument(
        "--client-connections",
        type=_count,
        default=0,
        metavar="N",
        help="refuse (429) a websocket past N open from one client; 0: no bound",
    )
    group.add_argument(
        "--client-requests",
        type=_count,
        default=0,
        metavar="N",
        help="read no more commands from a client with N unanswered; 0: no bound",
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"a count, 0 or more, not {text!r}")
    return value


def _add_service_costs(parser: argparse.ArgumentParser) -> None:
    """The flags that make the server cost what a paid service costs; all off by default."""
    r = REALISTIC
    group = parser.add_argument_group(
        "behave like a paid service (each off by default; --realistic turns them all on)"
    )
    group.add_argument(
        "--realistic",
        action="store_true",
        help="all of the below at the values in brackets; single flags still override",
    )
    group.add_argument(
        "--auth-delay",
        type=float,
        metavar="S",
        help=f"answer auth after S seconds [{r['auth_delay']}]",
    )
    group.add_argument(
        "--connect-delay",
        type=float,
        metavar="S",
        help=f"answer a websocket handshake after S seconds [{r['connect_delay']}]",
    )
    group.add_argument(
        "--idle-timeout",
        type=float,
        metavar="S",
        help=f"close a websocket idle for S seconds, 0: never [{r['idle_timeout']:g}]",
    )
    group.add_argument(
        "--auth-rate",
        type=_auth_rate,
        metavar="N/SECONDS",
        help=f"answer 429 with Retry-After past N auth calls in SECONDS [{r['auth_rate']}]",
    )
    group.add_argument(
        "--auth-status",
        type=int,
        metavar="CODE",
        help="every auth answer's status: a 2xx succeeds, a 4xx (401, 403) refuses every "
        f"call [{r['auth_status']}]",
    )


async def _serve(server: LocalServer) -> None:
    async with trio.open_nursery() as nursery:
        base_url = await nursery.start(server.run)
        settings = server.settings
        checked = "the configured" if settings.api_key or settings.user_id else "any"
        log.info(
            "local PlayAI server on %s (synth: %s; accepting %s credentials)",
            base_url,
            server.synth,
            checked,
        )
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("local PlayAI server stopping on %s", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _os_error(exc: BaseException) -> OSError | None:
    return next((e for e in leaves(exc) if isinstance(e, OSError)), None)


def main(argv: list[str]) -> int:
    """Run the server in the foreground; blocks until Ctrl-C or SIGTERM, then returns 0."""
    settings = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        trio.run(_serve, LocalServer(settings))
    except ConfigError as e:
        log.error("%s", e)
        return 2
    except (OSError, BaseExceptionGroup) as e:
        error = _os_error(e)
        if error is None:
            raise
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, error)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the signal receiver was in place
        pass
    return 0
