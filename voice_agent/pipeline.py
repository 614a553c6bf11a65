"""The appliance at run time: audio in -> wake word -> endpointing -> STT -> understanding -> actions -> speech.

One asyncio loop. Model inference runs in worker threads. While the appliance speaks, the microphone is gated
(with a short tail) so its own voice can never answer a confirmation; with barge-in on, only the wake word is
listened for and it cuts playback at once."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass

from .agent import STOP_STATUSES
from .announcements import AnnouncementRequest
from .audio import AudioChunk
from .audio_io import AudioSource, Speaker
from .audit import AuditLog
from .config import Config
from .errors import LlmError, SttError, VoiceAgentError
from .events import (Announcement, ErrorEvent, EventBus, IntentMatched, Reply, SpeechEnd, SpeechStart,
                     StateChanged, Transcript, TurnEnd, Wake)
from .executor import Executor
from .intents import LocalIntents, strip_wake_phrase
from .speech import SpeechOutput
from .stt import SttResult, Transcriber
from .tools.base import ToolCall, ToolResult
from .tts import Synthesizer
from .vad import Endpointer, FrameVad, Signal
from .wake import WakeWordDetector

log = logging.getLogger(__name__)

NO_LLM_REPLY = ("Sorry, my language model isn't reachable. I can still do home commands like lights, locks, the "
                "thermostat and timers.")  # a short first sentence: Piper speaks it while the rest is synthesised
WAKE_PRIME_MS = 800
NOT_UNDERSTOOD = "Sorry, I didn't catch that."


@dataclass
class Engines:
    """The models, loaded once and shared."""

    stt: Transcriber
    tts: Synthesizer
    intents: LocalIntents
    wake: WakeWordDetector | None
    vad: FrameVad | None = None


class Appliance:
    def __init__(self, cfg: Config, engines: Engines, speaker: Speaker, bus: EventBus, executor: Executor,
                 agent=None, audit: AuditLog | None = None, wake_enabled: bool = True) -> None:
        self.cfg, self.engines, self.bus, self.executor, self.agent, self.audit = cfg, engines, bus, executor, agent, audit
        self.wake_enabled = wake_enabled and engines.wake is not None
        self.speech = SpeechOutput(engines.tts, speaker, bus, self._on_speaking)
        self.endpointer = Endpointer(cfg.vad, vad=engines.vad)
        self._recent: collections.deque[bytes] = collections.deque(maxlen=WAKE_PRIME_MS // 80 + 1)
        self.state = ""
        self._mode = "wake" if self.wake_enabled else "listen"
        self._turn = 0
        self._turn_task: asyncio.Task | None = None
        self._early: tuple[asyncio.Task, int] | None = None
        self._fed: collections.deque[tuple[float, float]] = collections.deque(maxlen=400)
        self._ready = asyncio.Event()
        self._ready.set()
        self._gate_until = 0.0
        self._announcements: asyncio.Queue[AnnouncementRequest] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self.turns_completed = 0
        self._llm_turn: tuple[str, list[ToolResult]] = ("", [])
        self._barged = False
        self._set_state("idle")

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.speech.start()
        self._tasks.append(asyncio.create_task(self._announcement_loop(), name="announcements"))

    async def stop(self) -> None:
        if self._turn_task:
            self._turn_task.cancel()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.speech.stop()

    async def run(self, source: AudioSource) -> None:
        """Consume one audio source until it ends; then finish the turn in flight."""
        async for chunk in source.chunks():
            self.bus.start_clock()
            await self.feed(chunk)
        await self.wait_ready()
        if self.executor.pending is not None:  # silence after a confirmation prompt cancels
            await self._respond_to_confirmation(None)

    async def wait_ready(self) -> None:
        """Until the appliance can take the next utterance (turn done, speech played, gate tail passed)."""
        await self._ready.wait()

    # ---- audio -----------------------------------------------------------------------------------------------
    async def feed(self, chunk: AudioChunk) -> None:
        # The wake detector hears every chunk, whatever the mode, so its feature history is always current (a
        # stale history could re-trigger on the previous "hey jarvis" after a turn). ~3 ms per 80 ms chunk.
        det = None
        if self.wake_enabled or (self.cfg.audio.barge_in and self.engines.wake is not None):
            det = await asyncio.to_thread(self.engines.wake.process, chunk.audio)
        self._recent.append(chunk.audio)
        if self._mode == "busy" or self.speech.busy or time.monotonic() < self._gate_until:
            if det is not None and self.cfg.audio.barge_in and self.speech.busy:
                self._barge_in(det.model, det.score)
            return
        if self._mode == "wake":
            if det is not None:
                self.bus.emit(Wake(det.model, round(det.score, 3)))
                # the command often starts before the detector fires: keep what was just heard as pre-roll
                self._listen(self.cfg.vad.no_speech_timeout_s, prime=b"".join(self._recent))
            return
        # a microphone hands a chunk over once its last sample is captured: its first sample was heard earlier
        self._fed.append((self.endpointer.stream_ms, self.bus.now_ms() - chunk.duration_ms))
        for ep in self.endpointer.process(chunk.audio):
            self._on_endpoint(ep.signal, self._wall_ms(ep.stream_ms))

    def _wall_ms(self, stream_ms: float) -> float:
        """Wall-clock time (bus ms) at which the audio at endpointer position `stream_ms` was heard."""
        for start, wall in reversed(self._fed):
            if start <= stream_ms:
                return wall + (stream_ms - start)
        return self.bus.now_ms()

    def _listen(self, timeout_s: float | None, prime: bytes = b"") -> None:
        self._mode = "listen"
        self.endpointer.reset(timeout_s if timeout_s is not None else 0, prime=prime, prime_ms=WAKE_PRIME_MS)
        self._fed.clear()
        self._early = None
        self._set_state("awaiting_confirmation" if self.executor.pending else "listening")

    def _on_endpoint(self, signal: Signal, at_ms: float) -> None:
        if signal is Signal.SPEECH_START:
            self.bus.emit(SpeechStart())
        elif signal is Signal.PAUSE:
            audio = self.endpointer.speech_audio()
            self._early = (asyncio.create_task(asyncio.to_thread(self.engines.stt.transcribe, audio)), len(audio))
        elif signal is Signal.RESUME:
            self._early = None  # stale: the user kept talking
        elif signal is Signal.SPEECH_END:
            audio = self.endpointer.speech_audio()
            self.bus.emit(SpeechEnd(int(len(audio) / 32)), t_ms=min(at_ms, self.bus.now_ms()))
            early = self._early[0] if self._early and self._early[1] == len(audio) else None
            self._begin_turn(audio, early)
        elif signal is Signal.TIMEOUT:
            if self.executor.pending is not None:
                self._begin_turn(None, None)
            else:
                self._back_to_idle()

    def _back_to_idle(self) -> None:
        self._mode = "wake" if self.wake_enabled else "listen"
        if self._mode == "listen":
            self.endpointer.reset(0)
            self._fed.clear()
        if self.engines.wake is not None:
            self.engines.wake.reset()
        self._set_state("idle")

    def _barge_in(self, model: str, score: float) -> None:
        self.bus.emit(Wake(model, round(score, 3)))
        self.speech.interrupt()
        if self.agent is not None:
            self.agent.record_spoken(" ".join(self.speech.spoken_in_turn(self._turn)))
        if self._turn_task is not None and not self._turn_task.done():
            self._barged = True
            self._turn_task.cancel()
        self._listen(self.cfg.vad.no_speech_timeout_s)

    # ---- turns -----------------------------------------------------------------------------------------------
    def _begin_turn(self, audio: bytes | None, early: asyncio.Task | None) -> None:
        self._mode = "busy"
        self._ready.clear()
        self._turn += 1
        self._turn_task = asyncio.create_task(self._run_turn(audio, early), name=f"turn-{self._turn}")

    async def _run_turn(self, audio: bytes | None, early: asyncio.Task | None) -> None:
        try:
            self._set_state("thinking")
            self.executor.new_turn()
            if audio is None:
                await self._respond_to_confirmation(None)
            else:
                text = await self._transcribe(audio, early)  # None: nothing usable was heard (already said so)
                if text is not None and self.executor.pending is not None:
                    await self._respond_to_confirmation(text)
                elif text is not None:
                    await self._understand(text, audio)
            await self.speech.wait_idle()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one bad turn never kills the appliance
            log.exception("turn failed")
            code = exc.code if isinstance(exc, VoiceAgentError) else "internal-error"
            self.bus.emit(ErrorEvent(code, str(exc)))
        finally:
            self.bus.emit(TurnEnd())
            self.turns_completed += 1
            if self._barged:  # the user talked over us: we are already listening to them
                self._barged = False
                self._ready.set()
            else:
                asyncio.get_running_loop().call_soon(self._after_turn)

    def _after_turn(self) -> None:
        self._gate_until = time.monotonic() + self.cfg.audio.gate_tail_ms / 1000
        if self.executor.pending is not None:
            timeout = max(0.5, self.executor.pending.expires_at - time.monotonic())
            self._listen(timeout)
        elif self.cfg.audio.follow_up_s > 0:
            self._listen(self.cfg.audio.follow_up_s)
        else:
            self._back_to_idle()
        asyncio.get_running_loop().call_later(self.cfg.audio.gate_tail_ms / 1000, self._ready.set)

    async def _transcribe(self, audio: bytes, early: asyncio.Task | None) -> str | None:
        try:
            result: SttResult = await early if early is not None else await asyncio.to_thread(self.engines.stt.transcribe, audio)
        except SttError as exc:
            self.bus.emit(ErrorEvent(exc.code, exc.message))
            self.say(NOT_UNDERSTOOD)
            return None
        text = self._clean(result.text)
        self.bus.emit(Transcript(text, int(result.seconds * 1000), early is not None))
        if not text:
            self.bus.emit(ErrorEvent("stt-no-text-recognized", "no words were recognised"))
            self.say(NOT_UNDERSTOOD)
            return None
        return text

    def _clean(self, text: str) -> str:
        return strip_wake_phrase(text, self.cfg.wake.model) if self.wake_enabled else text.strip()

    async def _respond_to_confirmation(self, text: str | None) -> None:
        result = await self.executor.resolve(text)
        self.say(result.text)
        await self.speech.wait_idle()

    async def _understand(self, text: str, audio: bytes) -> None:
        t0 = time.perf_counter()
        local = self.engines.intents.understand(text)
        if local is None and self.agent is not None and self.engines.intents.mentions_home(text):
            # Not a home command, yet it names parts of the home: the home-biased prompt may have pulled words
            # toward device names, so the language model gets an unbiased transcription instead.
            result = await asyncio.to_thread(self.engines.stt.transcribe, audio, False)
            unbiased = self._clean(result.text)
            if unbiased and unbiased != text:
                text = unbiased
                self.bus.emit(Transcript(text, int(result.seconds * 1000), False))
            local = self.engines.intents.understand(text)
        if local is not None:
            self.bus.emit(IntentMatched(local.intent, "local", int((time.perf_counter() - t0) * 1000)))
            if local.intent == "AgentActivityToday":
                self.say(self.audit.summary_today() if self.audit else "I keep no record of my actions.")
                return
            if local.answer:
                self.say(local.answer)
                return
            replies = []
            for call in local.calls:
                result = await self.executor.execute(call, text)
                replies.append(result.text)
                if result.status in ("pending_confirmation", "denied"):
                    break
            self.say(" ".join(replies))
            return
        if self.agent is None:
            self.bus.emit(ErrorEvent("llm-not-configured", "no language model is configured"))
            self.say(NO_LLM_REPLY)
            return
        self.bus.emit(IntentMatched("llm", "llm", int((time.perf_counter() - t0) * 1000)))
        stops: list[ToolResult] = []
        self._llm_turn = (text, stops)
        said = 0
        try:
            async with contextlib.aclosing(self.agent.respond(text)) as sentences:  # a barge-in closes the stream
                async for sentence in sentences:
                    said += bool(sentence.strip())
                    self.say(sentence)
        except LlmError as exc:
            self.bus.emit(ErrorEvent(exc.code, exc.message))
            self.say(NO_LLM_REPLY if exc.code in ("llm-unreachable", "llm-timeout") else
                     "Sorry, my language model gave an answer I couldn't use, so I did nothing.")
            return
        for result in stops:
            self.say(result.text)
        if not said and not stops:  # the model ended without a word (e.g. after a failed tool call)
            self.say("Sorry, I couldn't do that.")

    async def execute_llm_call(self, call: ToolCall) -> ToolResult:
        """The LLM agent's way to act: through the executor, with the words of the turn in progress."""
        text, stops = self._llm_turn
        result = await self.executor.execute(call, text)
        if result.status in STOP_STATUSES:  # the agent ends its turn on these; we speak their text
            stops.append(result)
        return result

    # ---- speaking --------------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if text.strip():
            self.bus.emit(Reply(text))
            self.speech.say(text, self._turn)

    def _on_speaking(self, speaking: bool) -> None:
        if speaking:
            self._set_state("speaking")
        elif self._mode == "busy":
            self._set_state("thinking")

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.bus.emit(StateChanged(state))

    # ---- announcements ---------------------------------------------------------------------------------------
    def _in_conversation(self) -> bool:
        if self._mode == "busy" or self.speech.busy:
            return True
        # listening after the wake word, for a follow-up or a confirmation, or the user is mid-sentence
        return self._mode == "listen" and (self.wake_enabled or self.endpointer.in_speech)

    def announce(self, req: AnnouncementRequest) -> None:
        """Queue an announcement (thread-safe callers use loop.call_soon_threadsafe). It is only ever spoken."""
        self._announcements.put_nowait(req)

    async def _announcement_loop(self) -> None:
        while True:
            req = await self._announcements.get()
            if req.priority != "urgent":  # queued behind a conversation: never talk over the user
                while self._in_conversation():
                    await asyncio.sleep(0.05)
            self.bus.emit(Announcement(req.text, req.priority))
            self._turn += 1
            if req.chime:
                self.speech.chime(self._turn)
            self.speech.say(req.text, self._turn)
            await self.speech.wait_idle()
            self._gate_until = time.monotonic() + self.cfg.audio.gate_tail_ms / 1000

