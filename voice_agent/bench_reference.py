"""The reference: Home Assistant's own Wyoming services (`wyoming-faster-whisper`, `wyoming-piper`) started from this
virtualenv on loopback with the SAME model files the appliance uses, offline, and driven the way Home Assistant's
`assist_pipeline` drives them:

- `Transcribe` + `AudioStart`, then audio streamed in real time (1024-sample blocks, each sent once "captured");
- the command ends by HA's segmenter rules (0.3 s of speech starts it, it lasts ≥ 1.0 s, it ends after 0.7 s of
  silence — HA's "default" sensitivity — where silence accumulates until 1.0 s of continuous speech resets it) over
  10 ms VAD frames. Headline VAD: webrtcvad (aggressiveness 3), which lets the silence count start almost at once.
  HA's current VAD, microVAD (`pymicro-vad`, threshold 0.5), keeps voting "speech" for ~0.5 s after the voice stops;
  its endpoint on the same audio is reported beside it (`microvad_*`), never used for the ratio;
- then `AudioStop` and the full `Transcript`; then `Synthesize` and the time to its first `AudioChunk`.

Reference end-to-end = (endpoint − true end of speech) + STT + TTS first chunk. HA's own intent handling and its
audio conversion before playback are not counted (both would only add to the reference)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import RATE, silence
from .bench_corpus import BenchError, CommandClip
from .models import model_dir

WHISPER_REPO = "Systran/faster-whisper-tiny.en"  # what faster-whisper resolves the name "tiny.en" to
PIPER_VOICE = "en_US-joe-medium"
SEND_SAMPLES = 1024
VAD_SAMPLES = 160  # 10 ms


@dataclass(frozen=True)
class ReferenceRow:
    id: str
    transcript: str
    endpoint_ms: float  # endpoint decision − true end of speech (the silence wait, as HA experiences it)
    stt_ms: float  # AudioStop sent → Transcript received
    tts_first_ms: float  # Synthesize sent → first AudioChunk received
    e2e_ms: float  # true end of speech → first reply audio chunk
    microvad_endpoint_ms: float | None = None  # the same, had the endpoint come from microVAD (HA's current VAD)
    microvad_e2e_ms: float | None = None


class HaSegmenter:
    """Home Assistant's VoiceCommandSegmenter rules (default sensitivity), written for this benchmark."""

    def __init__(self, silence_s: float = 0.7, speech_s: float = 0.3, command_s: float = 1.0,
                 reset_s: float = 1.0, timeout_s: float = 15.0) -> None:
        self.silence_s, self.speech_s, self.command_s, self.reset_s = silence_s, speech_s, command_s, reset_s
        self.timeout_left = timeout_s
        self.in_command = False
        self.speech_left = speech_s
        self.command_left = command_s - speech_s
        self.silence_left = silence_s
        self.reset_left = reset_s

    def process(self, seconds: float, is_speech: bool) -> bool:
        """False once the command is over (or timed out)."""
        self.timeout_left -= seconds
        if self.timeout_left <= 0:
            return False
        if not self.in_command:
            if is_speech:
                self.reset_left = self.reset_s
                self.speech_left -= seconds
                if self.speech_left <= 0:
                    self.in_command = True
                    self.command_left = self.command_s - self.speech_s
                    self.silence_left = self.silence_s
            else:
                self.reset_left -= seconds
                if self.reset_left <= 0:
                    self.speech_left, self.reset_left = self.speech_s, self.reset_s
            return True
        self.command_left -= seconds
        if is_speech:
            self.reset_left -= seconds
            if self.reset_left <= 0:
                self.silence_left, self.reset_left = self.silence_s, self.reset_s
            return True
        self.reset_left = self.reset_s
        self.silence_left -= seconds
        return not (self.silence_left <= 0 and self.command_left <= 0)


def frame_decisions(pcm: np.ndarray, vad: str) -> list[bool]:
    """Per 10 ms frame: is it speech? `microvad`: pymicro-vad (HA's current VAD) at threshold 0.5; `webrtc`:
    webrtcvad at aggressiveness 3."""
    raw = pcm.tobytes()
    frames = [raw[i : i + VAD_SAMPLES * 2] for i in range(0, len(raw) - VAD_SAMPLES * 2 + 1, VAD_SAMPLES * 2)]
    if vad == "microvad":
        from pymicro_vad import MicroVad

        m = MicroVad()
        return [m.process_10ms(f) > 0.5 for f in frames]
    import webrtcvad

    w = webrtcvad.Vad(3)
    return [w.is_speech(f, RATE) for f in frames]


def endpoint_samples(pcm: np.ndarray, vad: str) -> int | None:
    """Where HA's segmenter ends the command, rounded up to the 1024-sample block whose arrival decides it."""
    seg = HaSegmenter()
    for i, speech in enumerate(frame_decisions(pcm, vad)):
        if not seg.process(VAD_SAMPLES / RATE, speech):
            n = (i + 1) * VAD_SAMPLES
            return -(-n // SEND_SAMPLES) * SEND_SAMPLES
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _whisper_data_dir(root: Path) -> Path:
    """A Hugging Face cache holding our tiny.en files under the name faster-whisper looks up for `tiny.en`."""
    src = model_dir("whisper-tiny-en")
    repo = root / ("models--" + WHISPER_REPO.replace("/", "--"))
    commit = "0" * 40
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for f in src.iterdir():
        if f.is_file() and not (snap / f.name).exists():
            (snap / f.name).symlink_to(f)
    return root


def _piper_data_dir(root: Path) -> Path:
    src = model_dir("piper-joe-medium")
    for name in (f"{PIPER_VOICE}.onnx", f"{PIPER_VOICE}.onnx.json"):
        if not (root / name).exists():
            (root / name).symlink_to(src / name)
    return root


class WyomingReference:
    """Starts both servers, answers `run(clip, reply)`, stops them. Use as `async with WyomingReference() as ref`."""

    def __init__(self, progress: Callable[[str], None] = lambda s: None, start_timeout_s: float = 180.0) -> None:
        self.progress = progress
        self.start_timeout_s = start_timeout_s
        self.has_microvad = importlib.util.find_spec("pymicro_vad") is not None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._procs: list[tuple[str, subprocess.Popen, Path]] = []
        self.stt_port = self.tts_port = 0
        self.versions: dict[str, str] = {}

    async def __aenter__(self) -> "WyomingReference":
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop()

    async def start(self) -> None:
        for mod in ("wyoming_faster_whisper", "wyoming_piper"):
            try:
                __import__(mod)
            except ImportError as exc:
                raise BenchError(f"the reference needs {mod.replace('_', '-')} ({exc})", code="bench-no-reference",
                                 fix="pip install -e '.[bench]'  (make bench does it), or pass --no-reference") from exc
        from importlib.metadata import version

        self.versions = {p: version(p) for p in ("wyoming-faster-whisper", "wyoming-piper", "wyoming")}
        self._tmp = tempfile.TemporaryDirectory(prefix="voice-agent-bench-")
        root = Path(self._tmp.name)
        (root / "whisper").mkdir()
        wdir = _whisper_data_dir(root / "whisper")
        (root / "piper").mkdir()
        pdir = _piper_data_dir(root / "piper")
        self.stt_port, self.tts_port = free_port(), free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        # Server defaults everywhere (beam size 5 on x86, 4 CPU threads) except compute type: int8, the type of HA's
        # own tiny model (`tiny-int8`) and of the appliance, so both sides run the same arithmetic.
        self._spawn("wyoming-faster-whisper", [
            "-m", "wyoming_faster_whisper", "--uri", f"tcp://127.0.0.1:{self.stt_port}", "--model", "tiny.en",
            "--language", "en", "--data-dir", str(wdir), "--local-files-only", "--compute-type", "int8"], env, root)
        self._spawn("wyoming-piper", [
            "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{self.tts_port}", "--voice", PIPER_VOICE,
            "--data-dir", str(pdir), "--local-files-only"], env, root)
        self.progress("reference: starting wyoming-faster-whisper and wyoming-piper (same model files, offline)")
        await asyncio.gather(self._wait_ready(self.stt_port, 0), self._wait_ready(self.tts_port, 1))
        await self._warm()

    def _spawn(self, name: str, args: list[str], env: dict, root: Path) -> None:
        log = root / f"{name}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen([sys.executable, *args], stdout=f, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL)
        self._procs.append((name, proc, log))

    async def _wait_ready(self, port: int, index: int) -> None:
        from wyoming.client import AsyncTcpClient
        from wyoming.info import Describe, Info

        name, proc, log = self._procs[index]
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-1500:]
                raise BenchError(f"{name} exited with code {proc.returncode} while starting:\n{tail}",
                                 code="bench-reference-failed")
            try:
                async with AsyncTcpClient("127.0.0.1", port, connect_timeout=1.0) as client:
                    await client.write_event(Describe().event())
                    while True:
                        event = await asyncio.wait_for(client.read_event(), 5.0)
                        if event is None:
                            break
                        if Info.is_type(event.type):
                            return
            except (OSError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.3)
        raise BenchError(f"{name} did not answer on port {port} within {self.start_timeout_s:.0f} s "
                         f"(log: {log.read_text(errors='replace')[-800:]})", code="bench-reference-timeout")

    async def _warm(self) -> None:
        """One throwaway request each, so the first measured one does not pay for lazy loading."""
        await self.transcribe(np.zeros(RATE, np.int16))
        await self.synthesize_first_chunk("Ready.")

    def stop(self) -> None:
        for _name, proc, _log in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for _name, proc, _log in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # ---- requests, as Home Assistant makes them ----------------------------------------------------------------
    async def transcribe(self, pcm: np.ndarray) -> str:
        """Send all audio at once (warm-up only)."""
        from wyoming.asr import Transcribe, Transcript
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.client import AsyncTcpClient

        async with AsyncTcpClient("127.0.0.1", self.stt_port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=pcm.tobytes()).event())
            await client.write_event(AudioStop().event())
            return await _read_transcript(client, Transcript)

    async def synthesize_first_chunk(self, text: str) -> float:
        """Seconds from sending Synthesize to the first AudioChunk; reads the rest of the audio too."""
        from wyoming.audio import AudioChunk, AudioStop
        from wyoming.client import AsyncTcpClient
        from wyoming.tts import Synthesize, SynthesizeVoice

        async with AsyncTcpClient("127.0.0.1", self.tts_port) as client:
            t0 = time.monotonic()
            await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=PIPER_VOICE)).event())
            first = None
            while True:
                event = await asyncio.wait_for(client.read_event(), 60.0)
                if event is None:
                    raise BenchError("wyoming-piper closed the connection mid-reply", code="bench-reference-failed")
                if first is None and AudioChunk.is_type(event.type):
                    first = time.monotonic() - t0
                if AudioStop.is_type(event.type):
                    break
            if first is None:
                raise BenchError(f"wyoming-piper sent no audio for {text!r}", code="bench-reference-failed")
            return first

    async def run(self, clip: CommandClip, reply: str, max_extra_s: float = 3.0) -> ReferenceRow:
        """One voice command: real-time stream until HA's segmenter ends it (webrtcvad; microVAD's endpoint on the
        same audio is reported beside it), full transcript, then the reply's first audio chunk."""
        from wyoming.asr import Transcribe, Transcript
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.client import AsyncTcpClient

        pcm = np.concatenate([clip.pcm, silence(max_extra_s * 1000)])
        end = endpoint_samples(pcm, "webrtc") or len(pcm) - len(pcm) % SEND_SAMPLES
        micro_end = endpoint_samples(pcm, "microvad") if self.has_microvad else None
        async with AsyncTcpClient("127.0.0.1", self.stt_port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            t0 = time.monotonic()
            for start in range(0, end, SEND_SAMPLES):
                delay = t0 + (start + SEND_SAMPLES) / RATE - time.monotonic()  # a mic delivers a block once captured
                if delay > 0:
                    await asyncio.sleep(delay)
                block = pcm[start : start + SEND_SAMPLES]
                await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=block.tobytes()).event())
            t_end = time.monotonic()
            await client.write_event(AudioStop().event())
            text = await _read_transcript(client, Transcript)
            t_text = time.monotonic()
        tts_s = await self.synthesize_first_chunk(reply)
        endpoint_ms = (t_end - (t0 + clip.speech_end_ms / 1000)) * 1000
        stt_ms = (t_text - t_end) * 1000
        micro_ms = None if micro_end is None else 1000 * micro_end / RATE - clip.speech_end_ms
        return ReferenceRow(clip.id, text.strip(), round(endpoint_ms, 1), round(stt_ms, 1), round(tts_s * 1000, 1),
                            round(endpoint_ms + stt_ms + tts_s * 1000, 1),
                            None if micro_ms is None else round(micro_ms, 1),
                            None if micro_ms is None else round(micro_ms + stt_ms + tts_s * 1000, 1))


async def _read_transcript(client, transcript_type) -> str:
    while True:
        event = await asyncio.wait_for(client.read_event(), 120.0)
        if event is None:
            raise BenchError("wyoming-faster-whisper closed the connection before the transcript",
                             code="bench-reference-failed")
        if transcript_type.is_type(event.type):
            return transcript_type.from_event(event).text
