"""Our side of the benchmark: the spoken commands through the FULL in-process appliance (wake word on, audio fed at
microphone pace, the real speaker timing), with every figure read from the appliance's own event stream.

End of speech is the TRUE one (from the clean signal), on the feeder's pace clock: the scheduled capture time of
the last speech sample (`FileSource.clock_t0` + its offset), the same clock the reference uses. When the event loop
hands a chunk over late, that delay counts against us. The appliance's own `speech_end` stamp (its VAD's estimate)
is reported beside it.

Every command counts: one that produced no reply audio within the run's limit is a timeout, counted at the limit.
A command is "cut off" when the appliance ended the utterance before it had heard the last speech sample."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import CHUNK_SAMPLES, RATE, AudioChunk, AudioClip
from ..audio_io import FileSource
from ..config import Config
from ..events import FirstAudio, IntentMatched, Reply, SpeechEnd, StateChanged, ToolCallEvent, Transcript, Wake
from .corpus import CommandClip

Progress = Callable[[str], None]
LIMIT_S = 10.0  # a command with no reply audio this long after its end of speech is a timeout


@dataclass(frozen=True)
class PipelineRow:
    id: str
    voice: str
    noisy: bool
    text: str
    transcript: str
    expected_intent: str
    intent: str
    correct: bool  # the same intent and tool calls as the exact text gives
    woke: bool
    early_stt: bool  # the transcript from the first pause was kept
    e2e_ms: float | None  # TRUE end of speech -> first reply sample at the speaker (None: no reply audio)
    e2e_vad_ms: float | None  # the appliance's own speech_end stamp -> first reply sample
    endpoint_ms: float | None  # true end of speech -> turn starts (state "thinking")
    transcript_after_eos_ms: float | None  # true end of speech -> transcript available
    stt_ms: float | None
    stt_rtf: float | None
    understand_ms: float | None
    tts_first_ms: float | None  # reply text ready -> its first sample at the speaker
    reply: str
    stt_calls: int = 0  # transcriptions run during this turn (early ones included)
    stt_overlapped: bool = False  # two transcriptions ran at once
    timed_out: bool = False  # no reply audio within the run's limit: counted at the limit
    cut_off: bool = False  # the utterance was ended before its last speech sample was heard
    wake_at_sample: int | None = None  # clip audio handed over by the time the wake word fired


@dataclass
class _Clip:
    clock_t0: float | None = None  # the feeder's pace clock: clip sample n is captured at clock_t0 + n / RATE
    yields: list[float] = field(default_factory=list)  # when each chunk of the clip was handed over
    events: list[tuple[float, object]] = field(default_factory=list)  # (monotonic time, event)


def speech_end_at(clip: CommandClip, log: _Clip) -> float | None:
    """The scheduled capture time (monotonic) of the clip's last speech sample: the one clock for end of speech."""
    return None if log.clock_t0 is None else log.clock_t0 + clip.speech_end_ms / 1000.0


def e2e_counted(row: PipelineRow, limit_s: float = LIMIT_S) -> float:
    """The row's end-to-end latency as the percentiles count it: a timeout counts at the limit."""
    return 1000.0 * limit_s if row.timed_out or row.e2e_ms is None else min(row.e2e_ms, 1000.0 * limit_s)


class TimedSource:
    """The clips through FileSource (real-time pace, waits for the appliance between clips), remembering each
    clip's pace clock, when each chunk was handed over, and which clip is playing."""

    def __init__(self, clips: list[np.ndarray], appliance, progress: Callable[[int], None] = lambda i: None,
                 max_wait_s: float = LIMIT_S) -> None:
        self.clips, self.appliance, self.progress, self.max_wait_s = clips, appliance, progress, max_wait_s
        self.log = [_Clip() for _ in clips]
        self.current = -1

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        for k, pcm in enumerate(self.clips):
            self.current = k
            self.progress(k)
            feeder = FileSource([AudioClip(pcm)], tail_ms=300, ready=self.appliance.wait_ready)
            async for chunk in feeder.chunks():
                if self.log[k].clock_t0 is None:
                    self.log[k].clock_t0 = feeder.clock_t0
                self.log[k].yields.append(time.monotonic())
                yield chunk
            # A person stays quiet until the appliance has answered: while it still listens (its VAD has not found
            # the end yet), the microphone keeps delivering silence, up to max_wait_s.
            deadline = time.monotonic() + self.max_wait_s
            while self.appliance.state == "listening" and time.monotonic() < deadline:
                async for chunk in FileSource([AudioClip(np.zeros(CHUNK_SAMPLES * 4, np.int16))], tail_ms=0,
                                              ready=self.appliance.wait_ready).chunks():
                    yield chunk


def expected_outcome(intents, text: str) -> tuple[str, tuple]:
    local = intents.understand(text)
    if local is None:
        return "", ()
    return local.intent, tuple((c.name, tuple(sorted(c.arguments.items()))) for c in local.calls)


@contextlib.contextmanager
def private_broker() -> Iterator[int | None]:
    """A mosquitto of our own on a free loopback port, so device commands succeed as in a real home (MQTT to the
    home's broker); None when mosquitto is not installed (device commands then answer that MQTT is off)."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if exe is None:
        yield None
        return
    from .reference import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="voice-agent-bench-mqtt-") as d:
        conf = Path(d) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def bench_config(cfg: Config, data_dir: str, mqtt_port: int | None) -> Config:
    """The user's config with a throwaway data dir (the benchmark never writes into the real audit log) and MQTT
    pointed at the private broker (or off)."""
    mqtt = (dataclasses.replace(cfg.mqtt, enabled=True, host="127.0.0.1", port=mqtt_port, username="", password="",
                                tls=False) if mqtt_port else dataclasses.replace(cfg.mqtt, enabled=False))
    return cfg.replace(appliance=dataclasses.replace(cfg.appliance, data_dir=data_dir), mqtt=mqtt)


async def run_commands(app, clips: list[CommandClip], progress: Progress,
                       probe: "SttProbe | None" = None, limit_s: float = LIMIT_S) -> list[PipelineRow]:
    bus = app.bus
    intents = app.appliance.engines.intents
    source = TimedSource([c.pcm for c in clips], app.appliance,
                         lambda k: progress(f"[{k + 1}/{len(clips)}] {clips[k].id}"), max_wait_s=limit_s)

    def listen(stamped) -> None:
        if source.current >= 0:
            source.log[source.current].events.append((time.monotonic(), stamped))

    bus.subscribe(listen)
    try:
        await app.appliance.run(source)
        await app.appliance.speech.wait_idle()
    finally:
        bus.listeners.remove(listen)
    rows = []
    for k, clip in enumerate(clips):
        row = _row(clip, source.log[k], bus, intents, limit_s)
        if probe is not None and source.log[k].yields:
            t1 = source.log[k + 1].yields[0] if k + 1 < len(clips) and source.log[k + 1].yields else float("inf")
            calls = probe.between(source.log[k].yields[0], t1)
            row = dataclasses.replace(row, stt_calls=len(calls), stt_overlapped=any(c[2] for c in calls))
        rows.append(row)
    return rows


def _row(clip: CommandClip, log: _Clip, bus, intents, limit_s: float = LIMIT_S) -> PipelineRow:
    eos = speech_end_at(clip, log)

    def first(kind, after: float | None = None):
        for t, s in log.events:
            if isinstance(s.event, kind) and (after is None or t >= after):
                return t, s
        return None, None

    def ms(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round((a - b) * 1000.0, 1)

    t_wake, _ = first(Wake)
    _, s_end = first(SpeechEnd)
    t_end_vad = None if s_end is None or bus.t0 is None else bus.t0 + s_end.t_ms / 1000.0
    t_think = next((t for t, s in log.events if isinstance(s.event, StateChanged) and s.event.state == "thinking"), None)
    t_text, s_text = first(Transcript)
    _, s_intent = first(IntentMatched)
    t_reply, s_reply = first(Reply)
    t_audio, _ = first(FirstAudio, after=t_reply) if t_reply is not None else (None, None)
    calls = tuple((s.event.name, tuple(sorted(s.event.arguments.items())))
                  for _, s in log.events if isinstance(s.event, ToolCallEvent))
    exp_intent, exp_calls = expected_outcome(intents, clip.text)
    got_intent = s_intent.event.name if s_intent else ""
    stt_ms = float(s_text.event.stt_ms) if s_text else None
    speech_s = s_end.event.duration_ms / 1000.0 if s_end else None
    e2e = ms(t_audio, eos)
    # Endpointing runs inside the feed of the chunk that decides it: the chunks handed over by then are all it heard.
    heard = sum(1 for y in log.yields if t_think is not None and y <= t_think) * CHUNK_SAMPLES
    woke_at = None if t_wake is None else sum(1 for y in log.yields if y <= t_wake) * CHUNK_SAMPLES
    return PipelineRow(
        id=clip.id, voice=clip.voice, noisy=clip.noisy, text=clip.text,
        transcript=s_text.event.text if s_text else "", expected_intent=exp_intent, intent=got_intent,
        correct=bool(exp_intent) and got_intent == exp_intent and calls == exp_calls, woke=t_wake is not None,
        early_stt=bool(s_text and s_text.event.early),
        e2e_ms=e2e, e2e_vad_ms=ms(t_audio, t_end_vad), endpoint_ms=ms(t_think, eos),
        transcript_after_eos_ms=ms(t_text, eos), stt_ms=stt_ms,
        stt_rtf=round(stt_ms / 1000.0 / speech_s, 3) if stt_ms is not None and speech_s else None,
        understand_ms=float(s_intent.event.understand_ms) if s_intent else None,
        tts_first_ms=ms(t_audio, t_reply), reply=s_reply.event.text if s_reply else "",
        timed_out=e2e is None or e2e > 1000.0 * limit_s,
        cut_off=t_think is not None and heard < clip.speech_end_ms * RATE / 1000.0, wake_at_sample=woke_at,
    )


async def wake_cpu(app, clips: list[np.ndarray], progress: Progress) -> dict:
    """CPU of the whole process (all threads) per wall second while the appliance only listens for the wake word."""
    wakes: list[float] = []

    def listen(stamped) -> None:
        if isinstance(stamped.event, Wake):
            wakes.append(stamped.t_ms)

    seconds = sum(len(c) for c in clips) / RATE
    progress(f"listening-CPU window: {seconds:.0f} s of speech and babble without the wake word")
    app.bus.subscribe(listen)
    source = TimedSource(clips, app.appliance)
    c0, w0 = time.process_time(), time.monotonic()
    try:
        await app.appliance.run(source)
    finally:
        app.bus.listeners.remove(listen)
    cpu, wall = time.process_time() - c0, time.monotonic() - w0
    return {"wake_cpu_percent": round(100.0 * cpu / wall, 1), "wake_window_s": round(wall, 1),
            "wake_audio_s": round(seconds, 1), "false_wakes": len(wakes)}


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def tts_rtf(tts, texts: list[str]) -> float | None:
    """Piper's synthesis time / audio length over the replies the appliance gave."""
    spent = audio = 0.0
    for text in dict.fromkeys(t for t in texts if t):
        t0 = time.perf_counter()
        pcm = tts.synthesize(text)
        spent += time.perf_counter() - t0
        audio += len(pcm) / tts.rate
    return round(spent / audio, 3) if audio else None


class SttProbe:
    """Wraps the appliance's transcriber (this process only, for measurement) to log every call's interval, so the
    report can say how many transcriptions ran per turn and whether they overlapped (two on 2 cores halve speed).
    The wrapper takes whatever the pipeline passes (audio, and whether to bias with the home prompt)."""

    def __init__(self, stt) -> None:
        self.stt, self.calls = stt, []
        self._orig = stt.transcribe
        self._active = 0

        def transcribe(pcm, *args, **kwargs):
            t0 = time.monotonic()
            self._active += 1
            overlapped = self._active > 1
            try:
                return self._orig(pcm, *args, **kwargs)
            finally:
                self._active -= 1
                seconds = (len(pcm) // 2 if isinstance(pcm, bytes) else len(pcm)) / RATE
                self.calls.append((t0, time.monotonic(), overlapped or self._active > 0, seconds))

        stt.transcribe = transcribe

    def restore(self) -> None:
        self.stt.transcribe = self._orig

    def between(self, t0: float, t1: float) -> list[tuple[float, float, bool, float]]:
        return [c for c in self.calls if t0 <= c[0] < t1]
