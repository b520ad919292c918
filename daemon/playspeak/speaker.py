"""The speaker: takes utterances from the queue, requests them on the link, decodes the audio as
it arrives and feeds the player; sends each utterance's events.

Two tasks in one nursery: the requester sends the next request as soon as the previous reply
is complete (so the service works on it while the current one still plays: gapless), and the
feeder decodes replies strictly in order into the player.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import trio

from playspeak.audio.arrivals import ArrivalModel, ReplyTrace
from playspeak.audio.decoder import StreamDecoder, make_decoder
from playspeak.audio.replyaudio import ReplyAudio
from playspeak.audio.silence import UtteranceStart
from playspeak.cache.replies import AnyReply
from playspeak.chime import load_chime
from playspeak.config import Config
from playspeak.errors import AudioDeviceError, DecodeError, LinkError, ReplyTooLong
from playspeak.health import DeviceHealth
from playspeak.lifecycle import UtteranceState
from playspeak.playai.link import Reply
from playspeak.priorities import admit
from playspeak.schedule import to_monotonic
from playspeak.speech import EventHub, SpeechQueue, Utterance
from playspeak.timeline import Span, plan_cancel

log = logging.getLogger(__name__)

# Buffered beyond what the device takes at once when an utterance starts before its pre-roll:
# trio's scheduling and the decoder's frame granularity.
START_MARGIN_SECONDS = 0.010
# The longest reply an utterance may have when speech.max_reply_seconds is 0: a generous
# bound from its text (speech takes about 0.07 s a character at speed 1).
REPLY_BASE_SECONDS = 30.0
REPLY_SECONDS_PER_CHAR = 0.5


def reply_limit(u: Utterance, configured: float) -> float:
    """Seconds of audio `u`'s reply may bring: `configured`, or (0) a bound from its text."""
    if configured:
        return configured
    speed = float(u.params.get("speed") or 1.0)
    return (REPLY_BASE_SECONDS + REPLY_SECONDS_PER_CHAR * len(u.text)) / speed


class AudioSink(Protocol):
    """What the speaker needs of a player (the sound card, or a WAV file)."""

    volume: float  # the software gain, 0..1

    @property
    def samplerate(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def losses(self) -> int: ...  # times the device was lost (audio/output.py); a file: 0
    @property
    def stats(self) -> dict[str, Any]: ...  # for `status`: the device, underruns, …
    @property
    def health(self) -> DeviceHealth: ...  # for systemd: open, lost…

    @property
    def prefill_seconds(self) -> float: ...  # taken from the buffer at once on starting
    @property
    def frames_written(self) -> int: ...
    @property
    def frames_read(self) -> int: ...  # taken by the device (heard, or about to be)
    async def play(self, pcm: np.ndarray) -> int: ...
    async def wait_played(self, position: int) -> bool: ...
    async def pad_until(self, when: float) -> int: ...  # silence up to a scheduled start
    async def wait_quiet(self) -> None: ...  # what the device held has left it
    async def wait_ready(self) -> None: ...
    def prepare(self) -> None: ...  # speech is on its way: open the device ahead
    def cancel(self) -> int: ...
    def skip_to(self, position: int) -> int: ...
    def truncate(self, position: int) -> int: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


class ReplySource(Protocol):
    """Where the speaker gets each utterance's audio (sources.Sources: the phrase cache, the
    fallback voice, the link or the local voice)."""

    async def open(
        self, u: Utterance, *, may_fall_back: bool = True, text: str | None = None
    ) -> AnyReply: ...  # raises LinkError


@dataclass(eq=False)
class Job:
    """One utterance from its request to its last sample leaving the device."""

    utterance: Utterance
    reply: Reply | AnyReply | None = None
    error: str = ""
    received: trio.Event = field(default_factory=trio.Event)  # final reply complete, or gave up
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    # the requester's wait for a connection to ask on: dropping the job cancels it, so that
    # a request nobody wants is not sent once the link is up (its reply would be streamed
    # in full before the next one's)
    asking: trio.CancelScope = field(default_factory=trio.CancelScope)
    start_pos: int | None = None  # the player's frame position of its first sample
    pad_pos: int | None = None  # where the silence before a scheduled start (`at`) begins
    end_pos: int | None = None  # ... after its last sample, once all is fed
    dropped: bool = False  # its audio was thrown away (cancelled or to be spoken again)
    device_generation: int = 0  # the audio output's loss count when its first audio went out
    # its `started`/`finished` announcers' scopes: cancelled with the job (its frame positions
    # may be written again by others after a cut)
    announcers: list[trio.CancelScope] = field(default_factory=list)
    start_announced: trio.Event = field(default_factory=trio.Event)  # `started` sent or skipped
    segment: int = 0  # which of the utterance's segments (marks.py) `reply` is for
    marks_due: tuple[str, ...] = ()  # announced from the next frame written (its segment's first)
    marks_told: trio.Event | None = None  # set once the last marks announced so far are told
    settled: trio.Event = field(default_factory=trio.Event)  # ended, or dropped: off the list


class Speaker:
    """Owns the speech queue and the path from link to player. Its methods run on trio's
    thread and never block; `run` lives in the daemon's root nursery."""

    def __init__(
        self,
        *,
        player: AudioSink,
        hub: EventHub,
        sources: ReplySource,
        max_queue: int,
        client_queue_bytes: int = 0,
        pipeline: bool = True,
        max_attempts: int = 3,
        max_reply_seconds: float = 0.0,
        chime: np.ndarray | None = None,
        chime_priorities: tuple[str, ...] = ("important",),
        max_age: float = 300.0,
        interrupt_reconnect: bool = True,
        preroll_seconds: float = 0.0,
        adaptive_preroll: bool = False,
        trim_leading_silence: bool = False,
    ) -> None:
        self.sources = sources  # the phrase cache, the fallback voice, then the link
        self.preroll_seconds = preroll_seconds
        self.adaptive_preroll = adaptive_preroll
        self.arrivals = ArrivalModel()  # the service's pace, learned from its replies
        self.trim_leading_silence = trim_leading_silence
        self.max_age = max_age
        self.interrupt_reconnect = interrupt_reconnect
        self.chime = chime
        self.chime_priorities = chime_priorities
        self.player = player
        self.hub = hub
        self.queue = SpeechQueue(max_queue, client_queue_bytes)
        self.pipeline = pipeline
        self.max_attempts = max_attempts
        self.max_reply_seconds = max_reply_seconds  # 0: from each utterance's text
        self.jobs: list[Job] = []  # requested and not ended, in request order
        self.feeding: Job | None = None  # the one the feeder is decoding into the player
        self.paused = False
        self._paused_jobs: list[Job] = []
        # Who holds which utterances back (an SSIP client's PAUSE): by holder, the selection
        # and those of them that were cut off while audible (to be told "paused", and
        # "resumed" on release).
        self._holds: dict[object, tuple[Callable[[Utterance], bool], list[Utterance]]] = {}
        self._told_paused: set[Utterance] = set()  # of those, the ones told "paused" so far
        self.queue.held = lambda u: any(select(u) for select, _ in self._holds.values())
        self._nursery: trio.Nursery | None = None

    @classmethod
    def from_config(
        cls, config: Config, *, player: AudioSink, hub: EventHub, sources: ReplySource
    ) -> Speaker:
        """With the [speech] section, the [audio] section's start of speech and the chime."""
        speech, audio = config.speech, config.audio
        return cls(
            player=player,
            hub=hub,
            sources=sources,
            max_queue=speech.max_queue,
            client_queue_bytes=speech.client_queue_bytes,
            pipeline=speech.pipeline,
            chime=load_chime(config.chime.sound, player.samplerate, player.channels),
            chime_priorities=config.chime.priorities,
            max_age=speech.max_age,
            max_attempts=speech.max_attempts,
            max_reply_seconds=speech.max_reply_seconds,
            interrupt_reconnect=speech.interrupt_reconnect,
            preroll_seconds=audio.preroll_ms / 1000,
            adaptive_preroll=audio.adaptive_preroll,
            trim_leading_silence=audio.trim_leading_silence,
        )

    # ---- commands -----------------------------------------------------------------------

    def submit(self, utterance: Utterance) -> None:
        """Admit an utterance by the priority rules, queue it (QueueFull when at the limit) and
        send its `queued` event, or `cancelled` when its priority drops it at once."""
        # Only the oldest in flight is heard (or fed to be heard first): the audio of later
        # ones waits in the buffer behind it, unheard, as a request sent ahead does.
        speaking = [j for j in self.jobs[:1] if self._speaking(j)]
        prefetched = [j for j in self.jobs if j not in speaking]
        decision = admit(
            utterance,
            [j.utterance for j in speaking],
            [j.utterance for j in prefetched],
            list(self.queue),
        )
        if not decision.accept:
            self.hub.queued(utterance, 0)
            self.hub.cancelled(utterance, decision.reason)
            return
        self.queue.put(utterance)
        self.hub.queued(utterance, self._position(utterance))
        doomed = {id(u) for u in decision.cancel}
        self.cancel(lambda u: id(u) in doomed, reason=f"interrupted by {utterance.id}")
        self._postpone([j for j in self.jobs if j.utterance in decision.postpone])

    def _speaking(self, job: Job) -> bool:
        return job.start_pos is not None or job is self.feeding

    def _position(self, utterance: Utterance) -> int:
        """1 for the next to speak."""
        ahead = list(self.queue).index(utterance) if utterance in self.queue else 0
        return len(self.jobs) + ahead + 1

    def stop(self, select: Callable[[Utterance], bool] | None = None) -> list[str]:
        """Stop the utterance speaking now (the oldest in flight) if `select` (default: any)
        picks it; the queue goes on."""
        now = [j for j in self.jobs[:1] if select is None or select(j.utterance)]
        return self.cancel_jobs(now, reason="stopped")

    def cancel(self, select: Callable[[Utterance], bool], reason: str = "cancelled") -> list[str]:
        """Cancel every utterance `select` picks, speaking or waiting. Returns their ids."""
        waiting = self.queue.remove(select)
        for u in waiting:
            self.hub.cancelled(u, reason)
        jobs = [j for j in self.jobs if select(j.utterance)]
        return self.cancel_jobs(jobs, reason) + [u.id for u in waiting]

    def cancel_jobs(self, selected: list[Job], reason: str = "cancelled") -> list[str]:
        """Cancel jobs in flight. Their buffered audio is dropped at once; every other job's
        audio plays on intact, or, if it lay behind a cancelled one and so was never heard, is
        asked for again (timeline.plan_cancel)."""
        if not selected:
            return []
        if self.interrupt_reconnect:
            # A reply still streaming in over a websocket: a fresh connection gets the next
            # request answered sooner than draining the rest (the reply's source decides).
            for job in selected:
                if job.reply is not None:
                    job.reply.abandon()
        self._cut(selected)
        for job in selected:
            self.hub.cancelled(job.utterance, reason)
        return [j.utterance.id for j in selected]

    def _cut(self, selected: list[Job]) -> None:
        """Drop the jobs and their buffered audio at once (their utterances' fate is the
        caller's); the other jobs' audio plays on, or is asked for again (plan_cancel)."""
        # a scheduled job's silence is its own: cut with it
        spans = [Span(j, _first(j.pad_pos, j.start_pos), j.end_pos) for j in self.jobs]
        plan = plan_cancel(spans, set(selected), self.player.frames_read)
        for job in selected:
            self._drop(job)  # first: a feeder writing its audio is cancelled before the cut
        if plan.drop_all:
            self.player.cancel()
        elif plan.skip_to is not None:
            self.player.skip_to(plan.skip_to)
        if plan.truncate_at is not None:
            self.player.truncate(plan.truncate_at)
        for planned in plan.respeak:
            assert isinstance(planned, Job)
            self._respeak(planned)

    def _postpone(self, jobs: list[Job]) -> None:
        """Cut the jobs and their buffered audio (_cut) and put them back in the queue, to be
        said again from their start."""
        self._cut(jobs)
        for job in jobs:
            job.utterance.attempts = 0
            self.queue.put(job.utterance, again=True)

    def hold(self, holder: object, select: Callable[[Utterance], bool]) -> None:
        """Hold back every utterance `select` picks, queued or arriving, until `release`;
        the others go on. One in flight is cut and waits in the queue, to be said again from
        its start; one that was audible is told `paused` once its sound has left the device.
        A second hold by the same holder replaces the first."""
        cut = [j for j in self.jobs if select(j.utterance)]
        audible = [j.utterance for j in cut if j.start_pos is not None and j.utterance.started]
        self._postpone(cut)
        _, before = self._holds.pop(holder, (select, []))
        self._holds[holder] = (select, before + audible)
        if audible:
            assert self._nursery is not None
            self._nursery.start_soon(self._announce_paused, audible)

    async def _announce_paused(self, utterances: list[Utterance]) -> None:
        await self.player.wait_quiet()
        # (one released meanwhile was told by release, `paused` before `resumed`)
        still = [cut for _, cut in self._holds.values()]
        self._tell_paused([u for u in utterances if any(u in cut for cut in still)])

    def _tell_paused(self, utterances: list[Utterance]) -> None:
        for u in utterances:
            if u not in self._told_paused and not u.ended:
                self._told_paused.add(u)
                self.hub.paused(u)

    def release(self, holder: object) -> bool:
        """End `holder`'s hold: its utterances take their turn again, and those told `paused`
        are told `resumed`. False when it held nothing."""
        held = self._holds.pop(holder, None)
        if held is None:
            return False
        self.queue.wake()
        self._tell_paused(held[1])  # released within the device's latency: not told yet
        for u in held[1]:
            self._told_paused.discard(u)
            if not u.ended:
                self.hub.resumed(u)
        return True

    def holding(self, holder: object) -> bool:
        return holder in self._holds

    async def wait_idle(self) -> None:
        """Wait until nothing is speaking or queued (new arrivals are waited for too)."""
        while self.jobs or len(self.queue):
            first = self.jobs[0].utterance if self.jobs else next(iter(self.queue))
            await first.done.wait()

    def pause(self) -> None:
        """Pause output mid-utterance; `resume` continues with the next sample."""
        if not self.paused:
            self.paused = True
            self.player.pause()
            # as hold(): one written but not heard yet is not told; it starts after resume
            self._paused_jobs = [j for j in self._audible() if j.utterance.started]
            for job in self._paused_jobs:
                self.hub.paused(job.utterance)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.player.resume()
            # Only those told "paused" hear "resumed" (one may have ended meanwhile).
            for job in self._paused_jobs:
                if not job.utterance.ended:
                    self.hub.resumed(job.utterance)
            self._paused_jobs = []

    def _audible(self) -> list[Job]:
        return [j for j in self.jobs if j.start_pos is not None][:1]

    def speaking(self) -> Utterance | None:
        """The utterance being heard now (its first frame is written), if any."""
        return next((j.utterance for j in self.jobs if j.start_pos is not None), None)

    def status(self) -> dict[str, Any]:
        now = self.speaking()
        return {
            "speaking": {"id": now.id, "text": now.text[:200]} if now else None,
            "paused": self.paused,
            "in_flight": [j.utterance.id for j in self.jobs],
            "queue": [{"id": u.id, "text": u.text[:80]} for u in self.queue],
            "counters": dict(self.hub.counters),
            "service_pace": self._service_pace(),
        }

    def _service_pace(self) -> dict[str, float] | None:
        """The learned arrival curve (audio/arrivals.py): why utterances start when they do."""
        curve = self.arrivals.curve
        if curve is None:
            return None
        return {
            "rate": round(curve.rate, 2),
            "burst_ms": round(curve.burst * 1000, 1),
            "replies": self.arrivals.replies,
        }

    # ---- tasks --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; cancellation ends every utterance in flight as `cancelled`."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                send, recv = trio.open_memory_channel[Job](0)
                nursery.start_soon(self._requester, send)
                nursery.start_soon(self._feeder, recv)
                task_status.started()
        finally:
            for job in list(self.jobs):
                self.hub.cancelled(job.utterance, "daemon stopping")
            for u in self.queue.remove(lambda u: True):
                self.hub.cancelled(u, "daemon stopping")

    async def _requester(self, send: trio.MemorySendChannel[Job]) -> None:
        async with send:
            while True:
                utterance = await self.queue.get()
                if utterance.ended:
                    continue
                job = Job(utterance)
                self.jobs.append(job)
                with job.asking:
                    await self._request(job)
                if job.dropped:
                    continue  # cancelled before it was asked for: its end is told
                await send.send(job)
                # Pipelining: the next request goes out once this reply is complete, so the
                # service synthesises it while this one still plays. Without, once this job
                # is off the list: ended, or dropped to be said again (held, or waiting for
                # the device), which only a next turn of this loop can do.
                await (job.received if self.pipeline else job.settled).wait()

    async def _request(self, job: Job) -> None:
        """Send the job's request; a failure is kept in the job for the feeder to report."""
        u = job.utterance
        u.attempts += 1
        text = u.segments[job.segment].text if u.segments else None
        if u.at is None:  # (a scheduled start opens its stream shortly before its instant)
            self.player.prepare()  # the stream opens while the audio is made
        try:
            # a retry after audio was heard stays with the service's voice
            job.reply = await self.sources.open(u, may_fall_back=job.start_pos is None, text=text)
            if job.dropped:  # cancelled while it was being asked for: nobody will read it,
                job.reply.discard()  # and an unread reply would hold up the link's reader
        except LinkError as e:
            job.reply, job.error = None, str(e)

    async def _feeder(self, recv: trio.MemoryReceiveChannel[Job]) -> None:
        async with recv:
            async for job in recv:
                self.feeding = job
                with job.scope:
                    try:
                        await self._feed(job)
                    except Exception as e:  # one utterance's bug must not silence the daemon
                        log.exception("utterance %s: unexpected error", job.utterance.id)
                        if job.reply is not None:
                            job.reply.discard()
                        self._fail(job, f"internal error: {e}")
                self.feeding = None
                job.received.set()
                if job.end_pos is None:  # never reached the player, or failed on the way
                    self._forget(job)

    async def _feed(self, job: Job) -> None:
        u = job.utterance
        await self.player.wait_ready()  # while the device is lost, speech waits (bounded below)
        waited = time.time() - u.created
        if waited > self.max_age and not u.ended:
            if job.reply is not None:
                job.reply.discard()
            self._fail(job, f"waited {waited:.0f} s for the audio device")
            return
        try:
            await self._feed_audio(job)
        except AudioDeviceError as e:
            if job.reply is not None:
                job.reply.discard()
            if u.state is not UtteranceState.SPEAKING and not u.ended:
                # nothing of it was heard (e.g. the sound server went away while the daemon
                # was idle): it waits for the device like the rest of the queue
                log.info("utterance %s: %s; it waits for the audio device", u.id, e)
                self._respeak_unheard()
                return
            self._fail(job, f"audio device lost: {e}", at_once=True)

    async def _feed_audio(self, job: Job) -> None:
        u = job.utterance
        if (chime := self._chime_for(u)) is not None:
            # The chime plays while the service synthesises the speech (already requested).
            await self._play(job, chime)
        # Segments between index marks are asked for one by one, each once the one before is
        # all received (most of it still to be heard: the request is not), and played back to
        # back; each one's marks are told as its first frame is heard.
        for index, segment in enumerate(u.segments or (None,)):
            if segment is not None and not segment.text:  # marks after the last word
                self._tell_marks(job, segment.marks, self.player.frames_written)
                break
            if index:
                job.segment = index
                await self._request(job)
            job.marks_due = segment.marks if segment else ()
            if not await self._feed_reply(job) or u.ended or job.dropped:
                return
        if job.start_pos is None:
            self._fail(job, "the service sent no audio")
            return
        job.end_pos = self.player.frames_written
        assert self._nursery is not None
        self._nursery.start_soon(self._announce_end, job)

    async def _feed_reply(self, job: Job) -> bool:
        """Play the job's reply (for its segment), asking again as often as allowed; False
        when the utterance failed."""
        u = job.utterance
        while not u.ended:
            if job.reply is None:
                self._fail(job, job.error or "request failed")
                return False
            try:
                await self._play_reply(job, job.reply)
                break
            except LinkError as e:
                retry = job.reply.retriable and u.attempts < self.max_attempts
                log.warning("utterance %s: %s%s", u.id, e, "; asking again" if retry else "")
                if not retry:
                    self._fail(job, str(e))
                    return False
                await self._request(job)  # replayed from its start
            except DecodeError as e:
                job.reply.discard()
                self._fail(job, f"undecodable audio: {e}")
                return False
            except ReplyTooLong as e:
                job.reply.abandon()  # one still streaming in: a fresh connection for the queue
                self._fail(job, str(e))
                return False
        return True

    def _chime_for(self, u: Utterance) -> np.ndarray | None:
        """The chime to play before `u`: the configured one for its priority, or for an
        explicit request (`say --chime`) that one, else the built-in."""
        if u.ended or u.chime is False:
            return None
        if u.chime:
            if self.chime is not None:
                return self.chime
            return load_chime("builtin", self.player.samplerate, self.player.channels)
        return self.chime if u.priority in self.chime_priorities else None

    async def _play_reply(self, job: Job, reply: Reply | AnyReply) -> None:
        """One reply through the pipeline: decoded as it arrives (ReplyAudio), its start held
        back or trimmed (UtteranceStart), written to the player; then the service's pace
        learned from it (_learn_pace). Raises DecodeError, ReplyTooLong or LinkError."""
        audio = ReplyAudio(
            lambda: self._decoder_for(job.utterance, reply),
            self.player.samplerate,
            reply_limit(job.utterance, self.max_reply_seconds),
        )
        start: UtteranceStart | None = None  # made at the first audio, when the device's
        # state is known: idle (trim the leading silence) or playing another utterance
        idle = False
        while True:
            hold = start.wait(audio.trace.elapsed(trio.current_time())) if start else math.inf
            with trio.move_on_after(hold) as holding:
                stamped = await reply.receive_stamped()
            if holding.cancelled_caught:
                # nothing new came, and what is held may now start without running dry
                if start is not None and (pcm := start.release()) is not None:
                    await self._play(job, pcm)
                continue
            if stamped is None:
                break
            blocks = audio.feed(*stamped)
            if blocks and start is None:
                start, idle = self._utterance_start(job)
            # one write per chunk, not per MP3 frame: fewer trips through trio's loop
            if start is not None:
                pcm = start.feed(blocks, audio.trace.elapsed(trio.current_time()))
                if pcm is not None:
                    await self._play(job, pcm)
        rest = audio.flush()
        if start is None:
            start, idle = self._utterance_start(job)
        if (pcm := start.finish(rest)) is not None:
            await self._play(job, pcm)
        if idle:
            self._learn_pace(job, reply, audio.trace)

    def _learn_pace(self, job: Job, reply: Reply | AnyReply, trace: ReplyTrace) -> None:
        """Learn the service's pace from a reply that began on an idle device: only such a one
        was read as it arrived (a queued one's chunks may have waited behind the one playing).
        Not from the cache, the fallback voice or the local voice (its PCM: `audio_format`)."""
        if _source(job) == "service" and not hasattr(reply, "audio_format"):
            self.arrivals.learn(trace)

    def _decoder_for(self, u: Utterance, reply: Reply | AnyReply) -> StreamDecoder:
        """A decoder for the reply's audio: the format the utterance asked for, or the one
        the reply names (the local voice's PCM: localvoice.py)."""
        fmt, in_rate = getattr(reply, "audio_format", None) or (
            u.output_format,
            int(u.params.get("sample_rate") or 24000),
        )
        return make_decoder(
            fmt, out_rate=self.player.samplerate, out_channels=self.player.channels, in_rate=in_rate
        )

    def _utterance_start(self, job: Job) -> tuple[UtteranceStart, bool]:
        """Leading silence is trimmed only when the utterance starts on an idle device: with
        another utterance (or its own chime) playing before it, that silence is the natural
        pause; and when it has a scheduled start (`at`): that instant is its first sound. Then
        audio is held back so that a small first chunk and a late second one do
        not run the device dry (an audible gap) at the start: as long as the service's recent
        pace requires (audio/arrivals.py), or the pre-roll until that is known. Also whether
        the device is idle: nothing of this or any other utterance has been played yet."""
        others = (j for j in self.jobs if j is not job)
        idle = job.start_pos is None and all(j.start_pos is None for j in others)
        scheduled = job.start_pos is None and job.utterance.at is not None
        start = UtteranceStart(
            self.player.samplerate,
            # a scheduled start is the start of its sound, whatever played before
            trim=(idle or scheduled) and self.trim_leading_silence,
            preroll_seconds=self.preroll_seconds,
            curve=self.arrivals.curve if self.adaptive_preroll else None,
            margin_seconds=self.player.prefill_seconds + START_MARGIN_SECONDS,
        )
        return start, idle

    async def _play(self, job: Job, pcm: np.ndarray) -> None:
        if len(pcm) == 0:
            return
        if job.utterance.gain != 1.0:
            pcm = pcm * np.float32(job.utterance.gain)
        losses = self.player.losses  # device generations (audio/output.py)
        if job.start_pos is None:
            await self.player.wait_ready()
            if job.utterance.at is not None:
                await self._wait_for_at(job, job.utterance.at)
            job.start_pos, job.device_generation = self.player.frames_written, losses
            # Announced by the sound card's clock from the start, not after this write: a
            # first write larger than the free space returns only once most of it played.
            before = [j for j in self.jobs if j is not job and j.start_pos is not None]
            assert self._nursery is not None
            self._nursery.start_soon(self._announce_started, job, before[-1] if before else None)
        elif losses != job.device_generation:
            # Its beginning was played on a device that is gone: the rest would be a fragment.
            raise AudioDeviceError("the audio device was lost while it was playing")
        if job.marks_due:
            marks, job.marks_due = job.marks_due, ()
            self._tell_marks(job, marks, self.player.frames_written + 1)
        await self.player.play(pcm)

    async def _wait_for_at(self, job: Job, at: float) -> None:
        """Silence until the scheduled instant: its first frame is heard at `at` (or, after
        another utterance that plays past it, right after that one)."""
        job.pad_pos = self.player.frames_written
        when = to_monotonic(at, time.time(), time.monotonic())
        late = await self.player.pad_until(when)
        if late:
            rate = self.player.samplerate
            log.info(
                "utterance %s: starts %.0f ms after its `at`", job.utterance.id, 1000 * late / rate
            )

    def _tell_marks(self, job: Job, marks: tuple[str, ...], heard_at: int) -> None:
        """Announce `marks` once frame position `heard_at` has been played, after the job's
        `started` and its earlier marks."""
        previous, job.marks_told = job.marks_told, trio.Event()
        assert self._nursery is not None
        self._nursery.start_soon(
            self._announce_marks, job, marks, heard_at, previous, job.marks_told
        )

    async def _announce_marks(
        self,
        job: Job,
        marks: tuple[str, ...],
        heard_at: int,
        previous: trio.Event | None,
        told: trio.Event,
    ) -> None:
        try:
            with self._announcer(job):  # a dropped job's marks are never told
                heard = await self.player.wait_played(heard_at)
                await job.start_announced.wait()
                if previous is not None:
                    await previous.wait()
                if heard is not False and not job.dropped and not job.utterance.ended:
                    for name in marks:
                        self.hub.mark(job.utterance, name)
        finally:
            told.set()

    async def _announce_started(self, job: Job, previous: Job | None) -> None:
        """`started` once the job's first frame leaves the device, and never before the
        previous utterance's ending (their frames touch: both are due in the same block)."""
        with self._announcer(job):
            try:
                heard: bool | None = False
                while job.start_pos is not None:
                    position = job.start_pos
                    heard = await self.player.wait_played(position + 1)
                    if job.start_pos == position:  # (moved: the device reopened first)
                        break
                if previous is not None:
                    await previous.settled.wait()
                # (one said again after a pause was told `started` the first time)
                if heard is not False and not job.dropped and not job.utterance.started:
                    self.hub.started(job.utterance, _source(job))
            finally:
                job.start_announced.set()

    async def _announce_end(self, job: Job, failure: str | None = None) -> None:
        """`finished` (or `failed` with `failure`) once the job's last frame was heard."""
        assert job.end_pos is not None
        with self._announcer(job):
            heard = await self.player.wait_played(job.end_pos)
            # A short utterance can be fed whole before its `started` task ran (trio runs new
            # tasks in any order): `started` must still come first.
            await job.start_announced.wait()
            if job.marks_told is not None:  # its marks before its end
                await job.marks_told.wait()
            if job.dropped:
                return
            if heard is False:
                reason = "audio device lost before it was heard"
                self.hub.failed(job.utterance, reason)
            elif failure is not None:
                self.hub.failed(job.utterance, failure)
            else:
                self.hub.finished(job.utterance, _source(job))
            self._forget(job)

    # ---- helpers ------------------------------------------------------------------------

    @staticmethod
    def _announcer(job: Job) -> trio.CancelScope:
        """A scope for one of the job's announcers, cancelled when the job is dropped."""
        scope = trio.CancelScope()
        job.announcers.append(scope)
        if job.dropped:
            scope.cancel()
        return scope

    def _fail(self, job: Job, reason: str, *, at_once: bool = False) -> None:
        """The feeder's report that the job's utterance failed, unless the job was dropped
        first: cancelled, or cut to be said again (held, postponed), its fate is another's.
        (A reply discarded while the feeder waited for it just ends: no checkpoint need
        come between that and the report for the drop's cancel to be delivered.)
        `at_once`: the device that would play what came is gone, so nothing waits for it."""
        if job.dropped:
            return
        if at_once or job.start_pos is None:
            self.hub.failed(job.utterance, reason)
            return
        # Some of it is in the device: what came is heard, and it fails as its last frame is
        # (as it would finish), not while it still plays.
        job.end_pos = self.player.frames_written
        assert self._nursery is not None
        self._nursery.start_soon(self._announce_end, job, reason)

    def _forget(self, job: Job) -> None:
        """Take the job off the list: it ended or was dropped (the next one may start)."""
        if job in self.jobs:
            self.jobs.remove(job)
        job.settled.set()

    def _drop(self, job: Job) -> None:
        """Throw a job's audio and request away (its utterance's fate is the caller's)."""
        job.dropped = True
        if job.reply is not None:
            job.reply.discard()
        job.asking.cancel()
        job.scope.cancel()
        for scope in job.announcers:
            scope.cancel()
        job.received.set()
        self._forget(job)

    def _respeak_unheard(self) -> None:
        """The device was lost: every job none of whose audio was heard is asked for again
        (the queue keeps their order), and waits for the device."""
        for job in [j for j in self.jobs if j.utterance.state is not UtteranceState.SPEAKING]:
            self._respeak(job)

    def _respeak(self, job: Job) -> None:
        """Its audio had to be dropped with a cancelled one: say it again from the start."""
        self._drop(job)
        job.utterance.attempts = 0
        self.queue.put(job.utterance, again=True)


def _first(*positions: int | None) -> int | None:
    return next((p for p in positions if p is not None), None)


def _source(job: Job) -> str:
    """Where the job's audio came from: "service", "cache" or "fallback" (a contract)."""
    return getattr(job.reply, "source", "service")
