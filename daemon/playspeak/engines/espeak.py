"""Speech from espeak-ng: PlayAI voice to espeak voice, text to 16-bit mono PCM."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from xml.sax.saxutils import escape

import numpy as np
import trio

from playspeak.style import Style
from playspeak.voices import ESPEAK, espeak_file

WAV_HEADER = 44

# A few PlayAI voices (by name or by the id in their manifest URL) and a stand-in for each.
_KNOWN_VOICES: dict[str, str] = {
    "angelo": "en-us+m3",
    "baf1ef41-36b6-428c-9bdf-50ba54682bd8": "en-us+m3",
    "deedee": "en-us+f3",
    "e040bd1b-f190-4bdb-83f0-75ef85b18f84": "en-us+f3",
    "jennifer": "en-gb+f3",
    "801a663f-efd0-4254-98d0-5c175514c3e8": "en-gb+f3",
    "briggs": "en-gb+m3",
    "71cdb799-1e03-41c6-8a05-f7cd55134b0b": "en-gb+m3",
    "samara": "en-us",
    "90217770-a480-4a91-b1ea-df00f4d4c29d": "en-us",
}
_FALLBACK_VOICES = ("en-us", "en-us+f3", "en-gb+m3", "en-gb+f3")


def espeak_available() -> bool:
    """Whether espeak-ng is on PATH."""
    return shutil.which(ESPEAK) is not None


def espeak_voice(voice: str) -> str:
    """What `-v` names for `espeak:<language>` (voices.py): a listed voice's file, else the
    name as given (espeak-ng chooses by name, file or language; `+variant` kept); or the
    voice standing in for a PlayAI voice id or name (deterministic)."""
    lowered = voice.strip().lower()
    if lowered.startswith("espeak:") and len(lowered) > 7:
        base, plus, variant = lowered.partition("+")
        return (espeak_file(base) or base[7:]) + plus + variant
    if lowered in _KNOWN_VOICES:
        return _KNOWN_VOICES[lowered]
    for key, mapped in _KNOWN_VOICES.items():
        if "-" in key and key in lowered:  # a voice id inside an s3://…/manifest.json URL
            return mapped
    digest = hashlib.sha256(voice.encode()).digest()
    return _FALLBACK_VOICES[digest[0] % len(_FALLBACK_VOICES)]


# SSIP's punctuation levels as espeak-ng's --punct: the characters spoken by name
_PUNCT = {
    "some": "--punct=#$%&*+/<=>@\\^_|~",
    "most": "--punct=\"#$%&'()*+-/<=>@[\\]^_`{|}~",
    "all": "--punct",
}
_CAPITALS = {"icon": "-k1", "spell": "-k2"}  # a click before a capital; the word "capital"


def style_args(style: Style) -> list[str]:
    """espeak-ng's options for a style: pitch -100..100 → -p 0..99 (50 is its default); SSML
    markup (`-m`) for SSML text and for a pitch range, which only markup sets (espeak_text)."""
    args = []
    if style.pitch:
        args.append(f"-p{min(99, max(0, round(50 + style.pitch / 2)))}")
    if style.punctuation in _PUNCT:
        args.append(_PUNCT[style.punctuation])
    if style.capitals in _CAPITALS:
        args.append(_CAPITALS[style.capitals])
    if style.ssml or style.pitch_range:
        args.append("-m")
    return args


def espeak_text(text: str, style: Style | None) -> bytes:
    """What espeak-ng reads on stdin for `text`: as it is; or as SSML (`-m`) when the text is
    SSML (ssml.render wrote it) or a pitch range is set, -100..100 → `<prosody range>` 0..200 %
    of the voice's own (espeak-ng has no option for it)."""
    if style is None or not (style.ssml or style.pitch_range):
        return text.encode()
    inner = text.removeprefix("<speak>").removesuffix("</speak>") if style.ssml else escape(text)
    if style.pitch_range:
        inner = f'<prosody range="{100 + style.pitch_range}%">{inner}</prosody>'
    return f"<speak>{inner}</speak>".encode()


def _command(voice: str, speed: float, style: Style | None = None) -> list[str]:
    wpm = round(175 * speed)
    extra = style_args(style) if style is not None else []
    return [ESPEAK, "--stdout", "--stdin", "-v", espeak_voice(voice), "-s", str(wpm), *extra]


Sink = Callable[[np.ndarray, int], Awaitable[None]]  # takes samples and their rate


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    wav = WavStream()
    pcm = wav.feed(data)
    if wav.rate == 0:
        raise RuntimeError("espeak-ng did not write a WAV stream")
    return pcm, wav.rate


class WavStream:
    """espeak-ng's WAV output read as it comes: the header first, then whole samples.

    espeak writes 0x7fffffff as its size fields, so only the fixed 44-byte layout is trusted."""

    def __init__(self) -> None:
        self.rate = 0  # known once the header has come
        self._pending = b""  # a header not yet whole, or the odd byte of a sample

    def feed(self, data: bytes) -> np.ndarray:
        """The whole samples that `data` completes (maybe none). Raises RuntimeError when
        the stream does not start as a WAV header."""
        data = self._pending + data
        if self.rate == 0:
            if len(data) < WAV_HEADER:
                self._pending = data
                return np.zeros(0, np.int16)
            if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
                raise RuntimeError("espeak-ng did not write a WAV stream")
            (self.rate,) = struct.unpack_from("<I", data, 24)
            data = data[WAV_HEADER:]
        whole = len(data) // 2 * 2
        self._pending = data[whole:]
        return np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)


async def espeak_pcm(
    text: str, voice: str, speed: float, style: Style | None = None
) -> tuple[np.ndarray, int]:
    """Run espeak-ng in a subprocess (cancellable); returns (int16 samples, sample rate)."""
    result = await trio.run_process(
        _command(voice, speed, style), stdin=espeak_text(text, style), capture_stdout=True
    )
    return _parse_wav(result.stdout)


def espeak_pcm_blocking(
    text: str, voice: str, speed: float, style: Style | None = None
) -> tuple[np.ndarray, int]:
    """The same as espeak_pcm, blocking the calling thread (for use under a mock clock)."""
    result = subprocess.run(
        _command(voice, speed, style),
        input=espeak_text(text, style),
        capture_output=True,
        check=True,
    )
    return _parse_wav(result.stdout)


class EspeakSpares:
    """espeak-ng processes started ahead of need, one per (voice, speed) lately used.

    A fresh espeak-ng loads its voice and phoneme data before it reads any text, which takes
    longer than synthesising a sentence (docs/benchmarks.md, "The local voice and the embedded
    server"): a spare has done that while idle, so a
    sentence costs its synthesis alone. Each spare speaks once (text on stdin, then EOF); after
    it spoke, `run` starts the next one, off the path of the reply that is streaming. Without
    `run` (or before it is started) every call starts its own process, as espeak_pcm does. The
    output is byte for byte what a fresh process writes.

    Owned by the trio thread: `run`'s task (LocalServer.run's nursery) starts and ends the
    spares; `pcm` takes one. A spare that outlives us reads EOF on its stdin and exits."""

    def __init__(self, limit: int = 2) -> None:
        self.used = 0  # sentences spoken by a spare
        self._limit = limit
        self._spares: OrderedDict[tuple[str, ...], trio.Process] = OrderedDict()
        self._wanted: list[list[str]] = []  # commands to start a spare for, in order
        self._wake: trio.Event | None = None  # run() waits on it; None when it does not run

    async def pcm(
        self, text: str, voice: str, speed: float, style: Style | None = None
    ) -> tuple[np.ndarray, int]:
        """Like espeak_pcm, on a spare when one is ready; then a new spare is asked for."""
        parts: list[np.ndarray] = []

        async def collect(pcm: np.ndarray, rate: int) -> None:
            parts.append(pcm)

        rate = await self.stream(text, voice, speed, style, collect)
        return (np.concatenate(parts) if parts else np.zeros(0, np.int16)), rate

    async def stream(
        self, text: str, voice: str, speed: float, style: Style | None, sink: Sink
    ) -> int:
        """Hand `text`'s samples to `sink` as espeak-ng writes them (in 4 KiB pieces: its
        first arrive before it has made the rest), on a spare when one is ready; then a new
        spare is asked for. Returns their sample rate."""
        command = _command(voice, speed, style)
        spare = self._spares.pop(tuple(command), None)
        if spare is None:
            spare = await _open(command)
        else:
            self.used += 1
        wav = WavStream()

        async def decode(data: bytes) -> None:
            if len(pcm := wav.feed(data)):
                await sink(pcm, wav.rate)

        try:
            await _speak_once(spare, espeak_text(text, style), decode)
        finally:
            # The next spare is started only now: starting it (a fork, then loading its data
            # on a core) while this one speaks delays this one's first audio.
            if self._wake is not None:
                self._wanted.append(command)
                self._wake.set()
        if wav.rate == 0:
            raise RuntimeError("espeak-ng did not write a WAV stream")
        return wav.rate

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the spares `pcm` asks for until cancelled; then end them all."""
        try:
            self._wake = trio.Event()
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._wanted:
                    command = self._wanted.pop(0)
                    if tuple(command) not in self._spares:
                        await self._start(command)
        finally:
            self._wake, self._wanted = None, []
            spares, self._spares = list(self._spares.values()), OrderedDict()
            for spare in spares:
                await _reap(spare)

    async def _start(self, command: list[str]) -> None:
        self._spares[tuple(command)] = await _open(command)
        while len(self._spares) > self._limit:
            _, oldest = self._spares.popitem(last=False)
            await _reap(oldest)


async def _open(command: list[str]) -> trio.Process:
    return await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )


async def _speak_once(
    process: trio.Process, text: bytes, out: Callable[[bytes], Awaitable[None]]
) -> None:
    """Write `text` to a waiting espeak-ng and hand its WAV to `out` as it comes, to the end
    (killed if cancelled, or when `out` raises)."""
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout
    try:

        async def write() -> None:
            # concurrently with the reading: a long text would fill both pipes otherwise
            async with stdin:
                await stdin.send_all(text)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            while chunk := await stdout.receive_some():
                await out(bytes(chunk))
        code = await process.wait()
    except BaseException:
        await _reap(process)
        raise
    await stdout.aclose()
    if code != 0:
        raise subprocess.CalledProcessError(code, process.args)


async def _reap(process: trio.Process) -> None:
    """Kill `process` if it still runs and wait for it (also when cancelled)."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.kill()
        await process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                await pipe.aclose()
