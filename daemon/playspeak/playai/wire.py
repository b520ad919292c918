"""The PlayAI wire, shared by the client (playai/) and the local server (localserver/); no I/O.

Commands (client → server), reply frames (server → client) and auth answers as types. Parsing
is tolerant (the variants in docs/local-server.md: `text` as a string or a list of
strings, nulls as absent, unknown keys kept, `status` in start/end), encoding is strict and
always the one shape every known client reads. `route` holds the client's rules for matching
reply frames to requests, as a pure function.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from playspeak.errors import AuthError, BadJsonError
from playspeak.jsonguard import load_json

# ---- commands ---------------------------------------------------------------------------


class CommandRejected(Exception):
    """A command frame that is not a TTS command; the message names the field. `request_id`
    is the frame's own, when it had one, so that the error can name it."""

    def __init__(self, message: str, request_id: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class TtsCommand:
    """One TTS command. `request_id` is any JSON value (a server echoes it exactly); `extra`
    holds the other fields (language, seed, quality, voice_2, …) as sent, none of them null."""

    text: str
    voice: str
    request_id: object = None
    output_format: str | None = None
    sample_rate: int | None = None
    speed: float | None = None
    temperature: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> TtsCommand:
        """The command in a decoded JSON object; raises CommandRejected naming the field.
        `text` may be a list of strings (pyht sends one): they are joined with spaces."""
        request_id = fields.get("request_id")
        extra = {k: v for k, v in fields.items() if k not in _COMMAND_KEYS and v is not None}
        try:
            return cls(
                text=_text(fields.get("text")),
                voice=_voice(fields.get("voice")),
                request_id=request_id,
                output_format=_optional_str(fields, "output_format"),
                sample_rate=_optional_int(fields, "sample_rate"),
                speed=_optional_number(fields, "speed"),
                temperature=_optional_number(fields, "temperature"),
                extra=extra,
            )
        except CommandRejected as e:
            e.request_id = request_id
            raise

    def to_json(self) -> str:
        """The frame to send: snake_case, no null fields, `text` always a string."""
        fields: dict[str, Any] = {**self.extra, "text": self.text, "voice": self.voice}
        for name in ("request_id", "output_format", "sample_rate", "speed", "temperature"):
            if (value := getattr(self, name)) is not None:
                fields[name] = value
        return json.dumps(fields)


_COMMAND_KEYS = frozenset(
    {"text", "voice", "request_id", "output_format", "sample_rate", "speed", "temperature"}
)


def parse_command(message: str | bytes) -> TtsCommand:
    """The command in one websocket frame (untrusted); raises CommandRejected."""
    if isinstance(message, bytes | bytearray):
        raise CommandRejected(
            "binary frames are not accepted: send each command as a JSON text frame"
        )
    try:
        fields = load_json(message)
    except BadJsonError as e:
        raise CommandRejected(e.reason) from None
    if not isinstance(fields, dict):
        raise CommandRejected(f"a command must be a JSON object, got {_kind(fields)}")
    return TtsCommand.from_fields(fields)


def _text(value: object) -> str:
    if value is None:
        raise CommandRejected("text is required")
    if isinstance(value, list):
        if not all(isinstance(part, str) for part in value):
            raise CommandRejected("text must be a string or a list of strings")
        value = " ".join(part.strip() for part in value)
    if not isinstance(value, str):
        raise CommandRejected(f"text must be a string or a list of strings, got {_kind(value)}")
    if not value.strip():
        raise CommandRejected("text must not be empty")
    return value


def _voice(value: object) -> str:
    if value is None:
        raise CommandRejected("voice is required")
    if not isinstance(value, str) or not value.strip():
        raise CommandRejected("voice must be a non-empty string")
    return value


def _optional_str(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise CommandRejected(f"{name} must be a string, got {_kind(value)}")
    return value


def _optional_int(fields: Mapping[str, Any], name: str) -> int | None:
    value = fields.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise CommandRejected(f"{name} must be an integer, got {value!r}"[:120])
    return value


def _optional_number(fields: Mapping[str, Any], name: str) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CommandRejected(f"{name} must be a number, got {value!r}"[:120])
    return float(value)


def _kind(value: object) -> str:
    names = {list: "a list", dict: "an object", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number")


# ---- reply frames -------------------------------------------------------------------------


def _ok(status: int | None) -> bool:
    return status is None or 200 <= status <= 299


@dataclass(frozen=True)
class Start:
    """A reply begins. A non-2xx `status` (with a `message`) reports its failure instead."""

    request_id: object = None
    status: int | None = None
    message: str | None = None

    @property
    def failed(self) -> bool:
        return not _ok(self.status)


@dataclass(frozen=True)
class End:
    """A reply is over (after its audio, or after its error)."""

    request_id: object = None
    status: int | None = None

    @property
    def failed(self) -> bool:
        return not _ok(self.status)


@dataclass(frozen=True)
class ErrorFrame:
    """A request failed: any frame with an `error` key or `"type": "error"`."""

    message: str
    request_id: object = None
    status: int | None = None


@dataclass(frozen=True)
class OtherFrame:
    """A text frame of another (or no) type, e.g. metrics: a client ignores it."""

    type: object


Frame = Start | End | ErrorFrame | OtherFrame


def parse_frame(message: str) -> Frame:
    """One text frame from a service (untrusted); raises BadJsonError (jsonguard's)."""
    fields = load_json(message, want_object=True)
    request_id = fields.get("request_id")
    status = fields.get("status")
    status = status if isinstance(status, int) and not isinstance(status, bool) else None
    said = fields.get("message")
    kind = fields.get("type")
    if kind == "error" or fields.get("error") is not None:
        text = said or fields.get("error") or "unspecified error"
        return ErrorFrame(str(text), request_id, status)
    if kind == "start":
        return Start(request_id, status, None if said is None else str(said))
    if kind == "end":
        return End(request_id, status)
    return OtherFrame(kind)


def encode_frame(frame: Start | End | ErrorFrame) -> str:
    """The frame as a server sends it: always `type`, `request_id` and `status`; an error
    carries its text as both `error` (what most clients look for) and `message`."""
    if isinstance(frame, ErrorFrame):
        return json.dumps(
            {
                "type": "error",
                "request_id": frame.request_id,
                "status": frame.status or 500,
                "error": frame.message,
                "message": frame.message,
            }
        )
    fields: dict[str, object] = {
        "type": "start" if isinstance(frame, Start) else "end",
        "request_id": frame.request_id,
        "status": frame.status or 200,
    }
    if isinstance(frame, Start) and frame.message is not None:
        fields["message"] = frame.message
    return json.dumps(fields)


# ---- the client's matching rules -------------------------------------------------------


class PendingReply(Protocol):
    """What `route` reads of a client's pending reply."""

    @property
    def request_id(self) -> str: ...
    @property
    def started(self) -> bool: ...
    @property
    def echoed(self) -> bool: ...


R = TypeVar("R", bound=PendingReply)


class Action(Enum):
    START = "start"  # `reply` streams from now on
    END = "end"  # `reply` is complete
    FAIL = "fail"  # `reply` failed: the service said so (`message`)
    SETTLE = "settle"  # the error or end of a reply that already failed: nothing to do
    IGNORE = "ignore"  # a frame for no known request (`message` says which)


@dataclass(frozen=True)
class Route(Generic[R]):
    """What a frame means for the client's pending replies."""

    action: Action
    reply: R | None = None
    # START or FAIL by a start frame: the reply that was streaming and whose end never came
    abandoned: R | None = None
    message: str = ""


def failure_key(request_id: object) -> str | None:
    """How a failed reply is remembered until its end: its id, None when the service sent a
    null one (`route`'s `failed`)."""
    return None if request_id is None else str(request_id)


def route(
    frame: Start | End | ErrorFrame,
    pending: Sequence[R],
    current: R | None,
    failed: Collection[str | None] = (),
) -> Route[R]:
    """Which of `pending` (in request order; `current` is the one streaming) a frame belongs
    to, and what it does to it. `failed` holds the `failure_key`s of replies failed by the
    service whose end has not come yet. Rules: a frame names its reply by request id; a start
    with a null id is the next reply not started (a service that does not echo ids); an end
    or error with a null id is the streaming reply, only if its own start had a null id too.
    A frame naming no pending reply is ignored, quietly when it is the error or end of a
    reply that failed already. No I/O."""
    if isinstance(frame, Start):
        return _route_start(frame, pending, current)
    reply = _closing(frame.request_id, pending, current)
    if reply is None:
        if failure_key(frame.request_id) in failed:
            return Route(Action.SETTLE)
        kind = "end" if isinstance(frame, End) else "error"
        return Route(Action.IGNORE, message=f"{kind} frame for no known request")
    if isinstance(frame, ErrorFrame):
        return Route(Action.FAIL, reply, message=frame.message)
    if frame.failed:
        return Route(Action.FAIL, reply, message=f"the reply ended with status {frame.status}")
    return Route(Action.END, reply)


def _route_start(frame: Start, pending: Sequence[R], current: R | None) -> Route[R]:
    if frame.request_id is None:
        reply = next((r for r in pending if not r.started), None)
    else:
        reply = _by_id(frame.request_id, pending)
    if reply is None or reply.started:
        return Route(Action.IGNORE, message="start frame for no known request")
    abandoned = current if current is not None and current is not reply else None
    if frame.failed:
        said = frame.message or f"the reply failed with status {frame.status}"
        return Route(Action.FAIL, reply, abandoned, said)
    return Route(Action.START, reply, abandoned)


def _by_id(request_id: object, pending: Sequence[R]) -> R | None:
    wanted = str(request_id)
    return next((r for r in pending if r.request_id == wanted), None)


def _closing(request_id: object, pending: Sequence[R], current: R | None) -> R | None:
    if request_id is not None:
        return _by_id(request_id, pending)
    return current if current is not None and not current.echoed else None


# ---- auth answers ---------------------------------------------------------------------------


class AuthShape(Enum):
    """The shapes of a websocket-auth answer, with their sources (docs/local-server.md, "The wire
    variants")."""

    V1 = "v1"  # {"webSocketUrls": {model: url}, "expiresAt": …}: api v1, the 2025 demo
    V4 = "v4"  # {"websocket_urls": {model: url}, "expires_at": …}: api v4, Pipecat
    SDK = "sdk"  # {model: {"websocket_url", "http_streaming_url"}, "expires_at"}: pyht
    V3 = "v3"  # {"websocket_url": url, "expires_at": …}: api v3, one URL for every model


# Served by the local server; a client uses AUTH_PATH.
AUTH_PATHS: Mapping[str, AuthShape] = {
    "/api/v1/tts/websocket-auth": AuthShape.V1,
    "/api/v1/websocket-auth": AuthShape.V1,
    "/api/v4/websocket-auth": AuthShape.V4,
    "/api/v4/sdk-auth": AuthShape.SDK,
}
AUTH_PATH = "/api/v1/tts/websocket-auth"
ANY_MODEL = "*"  # the model key of a V3 answer's one URL


class ModelNotOffered(AuthError):
    """The auth answer names no websocket for the model asked for."""


@dataclass(frozen=True)
class AuthAnswer:
    """Websocket URLs by model (each with its secret token: never log one unredacted) and
    when they expire (epoch seconds, None when the answer did not say)."""

    websocket_urls: Mapping[str, str]
    expires_at: float | None = None
    # pyht's per-model HTTP streaming URLs (AuthShape.SDK only)
    http_urls: Mapping[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()  # model names whose entries were not usable (for a log line)

    def url_for(self, model: str) -> str:
        if model in self.websocket_urls:
            return self.websocket_urls[model]
        if ANY_MODEL in self.websocket_urls:
            return self.websocket_urls[ANY_MODEL]
        raise ModelNotOffered(
            f"the service offers no websocket for model {model!r} "
            f"(it offers: {', '.join(sorted(self.websocket_urls))})"
        )

    def encode(self, shape: AuthShape) -> dict[str, object]:
        """The answer's body in `shape`; V3 carries the first model's URL. Strict: an expiry
        is required."""
        if self.expires_at is None:
            raise ValueError("an auth answer to send needs its expiry")
        expires = _iso_utc(self.expires_at)
        urls = dict(self.websocket_urls)
        if shape is AuthShape.V1:
            return {"webSocketUrls": urls, "expiresAt": expires}
        if shape is AuthShape.V4:
            return {"websocket_urls": urls, "expires_at": expires}
        if shape is AuthShape.V3:
            return {"websocket_url": next(iter(urls.values())), "expires_at": expires}
        body: dict[str, object] = {
            model: {"websocket_url": url, "http_streaming_url": self.http_urls.get(model, "")}
            for model, url in urls.items()
        }
        body["expires_at"] = expires
        return body


def _iso_utc(epoch: float) -> str:
    """`2024-12-11T22:17:37.429Z`: what every client parses (pyht's strptime needs the
    fraction)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _is_ws_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("ws://", "wss://"))


def parse_auth_answer(body: object) -> AuthAnswer:
    """Any of AuthShape's answers (and 2024's `{model: {"webSocketUrl": …}}`). Unusable
    entries are skipped (one bad entry must not cost every model its connection) and named
    in `skipped`; raises AuthError when no URL is left."""
    if not isinstance(body, dict):
        raise AuthError("the auth answer is not a JSON object")
    expires = _parse_time(body.get("expiresAt") or body.get("expires_at"))
    urls = body.get("webSocketUrls") or body.get("websocket_urls")
    good: dict[str, str] = {}
    http: dict[str, str] = {}
    skipped: list[str] = []
    if isinstance(urls, dict):
        for model, url in urls.items():
            if model and _is_ws_url(url):
                good[str(model)] = url
            else:
                skipped.append(str(model))
    else:
        for model, entry in body.items():
            if not isinstance(entry, dict):
                continue
            url = entry.get("websocket_url") or entry.get("webSocketUrl")
            if model and isinstance(url, str) and _is_ws_url(url):
                good[model] = url
                if isinstance(streaming := entry.get("http_streaming_url"), str):
                    http[model] = streaming
            else:
                skipped.append(model)
    if good:
        return AuthAnswer(good, expires, http, tuple(skipped))
    single = body.get("websocket_url") or body.get("webSocketUrl")
    if isinstance(single, str) and _is_ws_url(single):
        return AuthAnswer({ANY_MODEL: single}, expires, skipped=tuple(skipped))
    raise AuthError(f"the auth answer has no websocket URLs (keys: {', '.join(sorted(body))})")
