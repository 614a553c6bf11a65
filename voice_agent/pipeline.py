"""The appliance in one room at run time: its microphone (`Listener`) -> speech recognition -> its `Conversation`
(understanding, confirmation, actions) -> its voice (`SpeechOutput`), plus announcements (`Announcer`).

One asyncio loop; model inference runs in worker threads. While the appliance speaks, the microphone is gated
(with a short tail) so its own voice can never answer a confirmation; with barge-in on, only the wake word is
listened for and it cuts playback at once."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from .announcements import AnnouncementRequest
from .announcer import Announcer
from .audio import AudioChunk
from .audio_io import AudioSource, Speaker
from .config import Config
from .conversation import NOT_UNDERSTOOD, Conversation
from .errors import SttError, VoiceAgentError
from .events import ErrorEvent, EventBus, Reply, StateChanged, Transcript, TurnEnd
from .intents import LocalIntents, strip_wake_phrase
from .listening import Listener, Utterance
from .speech import SpeechOutput
from .stt import SttResult, Transcriber
from .tts import Synthesizer
from .vad import FrameVad
from .wake import WakeWordDetector

log = logging.getLogger(__name__)


@dataclass
class Engines:
    """The models, loaded once and shared."""

    stt: Transcriber
    tts: Synthesizer
    intents: LocalIntents
    wake: WakeWordDetector | None
    vad: FrameVad | None = None


class Appliance:
    def __init__(self, cfg: Config, engines: Engines, speaker: Speaker, bus: EventBus, conversation: Conversation,
                 wake_enabled: bool = True) -> None:
        self.cfg, self.engines, self.bus, self.conversation = cfg, engines, bus, conversation
        conversation.say = self.say
        self.speech = SpeechOutput(engines.tts, speaker, bus, self._on_speaking)
        self.listener = Listener(cfg, bus, engines.stt, engines.wake, engines.vad, wake_enabled=wake_enabled,
                                 is_speaking=lambda: self.speech.busy, on_utterance=self._on_utterance,
                                 on_timeout=self._on_timeout, on_barge_in=self._barge_in)
        self.wake_enabled = self.listener.wake_enabled
        self.announcer = Announcer(bus, self.speech, self._in_conversation, self._next_turn,
                                   lambda: self.listener.gate(cfg.audio.gate_tail_ms / 1000))
        self.state = ""
        self._turn = 0
        self._turn_task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._ready.set()
        self._tasks: list[asyncio.Task] = []
        self.turns_completed = 0
        self._barged = False
        self._set_state("idle")

    @property
    def agent(self):
        return self.conversation.agent

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.speech.start()
        self._tasks.append(asyncio.create_task(self.announcer.run(), name="announcements"))

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
        if self.conversation.pending is not None:  # silence after a confirmation prompt cancels
            await self.conversation.respond_to_confirmation(None)
            await self.speech.wait_idle()

    async def wait_ready(self) -> None:
        """Until the appliance can take the next utterance (turn done, speech played, gate tail passed)."""
        await self._ready.wait()

    async def feed(self, chunk: AudioChunk) -> None:
        await self.listener.feed(chunk)

    # ---- what the listener hears -------------------------------------------------------------------------------
    def _on_utterance(self, utt: Utterance) -> None:
        self._begin_turn(utt)

    def _on_timeout(self) -> None:
        if self.conversation.pending is not None:  # silence answers the question: cancel
            self.listener.hold()
            self._begin_turn(None)
        else:
            self._back_to_idle()

    def _back_to_idle(self) -> None:
        self.listener.idle()
        self._set_state("idle")

    def _listen(self, timeout_s: float | None) -> None:
        self.listener.listen(timeout_s)
        self._set_state("awaiting_confirmation" if self.conversation.pending else "listening")

    def _barge_in(self) -> None:
        self.speech.interrupt()
        self.conversation.record_spoken(" ".join(self.speech.spoken_in_turn(self._turn)))
        if self._turn_task is not None and not self._turn_task.done():
            self._barged = True
            self._turn_task.cancel()
        self._listen(self.cfg.vad.no_speech_timeout_s)

    # ---- turns -----------------------------------------------------------------------------------------------
    def _next_turn(self) -> int:
        self._turn += 1
        return self._turn

    def _begin_turn(self, utt: Utterance | None) -> None:
        self._ready.clear()
        self._next_turn()
        self._turn_task = asyncio.create_task(self._run_turn(utt), name=f"turn-{self._turn}")

    async def _run_turn(self, utt: Utterance | None) -> None:
        try:
            self._set_state("thinking")
            text = None if utt is None else await self._transcribe(utt)
            if utt is None or text is not None:  # None: nothing usable was heard (already said so)
                await self.conversation.handle(text, (lambda: self._retranscribe(utt)) if utt else None)
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
        tail = self.cfg.audio.gate_tail_ms / 1000
        self.listener.gate(tail)
        pending = self.conversation.pending
        if pending is not None:
            self._listen(max(0.5, pending.expires_at - time.monotonic()))
        elif self.cfg.audio.follow_up_s > 0:
            self._listen(self.cfg.audio.follow_up_s)
        else:
            self._back_to_idle()
        asyncio.get_running_loop().call_later(tail, self._ready.set)

    async def _transcribe(self, utt: Utterance) -> str | None:
        try:
            result: SttResult = (await utt.early if utt.early is not None
                                 else await asyncio.to_thread(self.engines.stt.transcribe, utt.audio))
        except SttError as exc:
            self.bus.emit(ErrorEvent(exc.code, exc.message))
            self.say(NOT_UNDERSTOOD)
            return None
        text = self._clean(result.text)
        self.bus.emit(Transcript(text, int(result.seconds * 1000), utt.early is not None))
        if not text:
            self.bus.emit(ErrorEvent("stt-no-text-recognized", "no words were recognised"))
            self.say(NOT_UNDERSTOOD)
            return None
        return text

    async def _retranscribe(self, utt: Utterance) -> str | None:
        """The same audio without the home-biased prompt (for requests that go to the language model)."""
        result = await asyncio.to_thread(self.engines.stt.transcribe, utt.audio, False)
        text = self._clean(result.text)
        if text:
            self.bus.emit(Transcript(text, int(result.seconds * 1000), False))
        return text or None

    def _clean(self, text: str) -> str:
        return strip_wake_phrase(text, self.cfg.wake.model) if self.wake_enabled else text.strip()

    # ---- speaking --------------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if text.strip():
            self.bus.emit(Reply(text))
            self.speech.say(text, self._turn)

    def _on_speaking(self, speaking: bool) -> None:
        if speaking:
            self._set_state("speaking")
        elif self.listener.mode == "busy":
            self._set_state("thinking")

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.bus.emit(StateChanged(state))

    # ---- announcements ---------------------------------------------------------------------------------------
    def _in_conversation(self) -> bool:
        if self.listener.mode == "busy" or self.speech.busy:
            return True
        # listening after the wake word, for a follow-up or a confirmation, or the user is mid-sentence
        return self.listener.mode == "listen" and (self.wake_enabled or self.listener.in_speech)

    def announce(self, req: AnnouncementRequest) -> None:
        """Queue an announcement (thread-safe callers use loop.call_soon_threadsafe). It is only ever spoken."""
        self.announcer.announce(req)
