"""The reference: Home Assistant's own Wyoming services (`wyoming-faster-whisper`, `wyoming-piper`) started from this
virtualenv on loopback with the SAME model files the appliance uses, offline, configured as Home Assistant's Whisper
add-on ships by default (model `tiny-int8`: int8 tiny.en here; `beam_size` 1; no initial prompt), and driven the
way Home Assistant's `assist_pipeline` drives them:

- `Transcribe` + `AudioStart`, then the audio after the wake word streamed in real time (1024-sample blocks, each
  sent once "captured"). HA's wake word is the same openWakeWord model as ours, so the stream starts where ours
  fired on that clip (the whole clip when ours missed);
- the command ends by HA's segmenter rules (0.3 s of speech starts it, it lasts >= 1.0 s, it ends after 0.7 s of
  silence — HA's "default" sensitivity — where silence accumulates until 1.0 s of continuous speech resets it) over
  10 ms VAD frames. Headline VAD: webrtcvad (aggressiveness 3), which lets the silence count start almost at once.
  HA's current VAD, microVAD (`pymicro-vad`, threshold 0.5), keeps voting "speech" for ~0.5 s after the voice stops;
  its endpoint on the same audio is reported beside it (`microvad_*`), never used for the ratio;
- then `AudioStop` and the full `Transcript`; then `Synthesize` and the time to its first `AudioChunk`.

Two Whisper servers hear the same stream at the same moments: the default one (the row the ratio is taken against)
and one started with `--initial-prompt` set to the appliance's own home prompt (HA users can set one). They only
buffer while audio streams; at the endpoint each transcribes in turn (the order alternates), never both at once.

End of speech is the scheduled capture time of the last speech sample on the streaming pace clock, as on our side.
Reference end-to-end = (endpoint − end of speech) + STT + TTS first chunk. HA's own intent handling and its audio
conversion before playback are not counted (both would only add to the reference)."""

from __future__ import annotations

import asyncio
import contextlib
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

from ..audio import RATE, silence
from ..models import model_dir
from .corpus import BenchError, CommandClip

WHISPER_REPO = "Systran/faster-whisper-tiny.en"  # what faster-whisper resolves the name "tiny.en" to
PIPER_VOICE = "en_US-joe-medium"
SEND_SAMPLES = 1024
VAD_SAMPLES = 160  # 10 ms


@dataclass(frozen=True)
class ReferenceConfig:
    """How one reference Whisper server is started. The defaults are Home Assistant's Whisper add-on defaults."""

    name: str = "default"
    beam_size: int = 1
    initial_prompt: str | None = None
    cpu_threads: int = 4  # the server's default (the add-on does not change it)

    def server_args(self) -> list[str]:
        args = ["--beam-size", str(self.beam_size), "--cpu-threads", str(self.cpu_threads)]
        return args + (["--initial-prompt", self.initial_prompt] if self.initial_prompt else [])

    def describe(self) -> str:
        prompt = "the appliance's home prompt" if self.initial_prompt else "no prompt"
        return f"tiny.en int8, beam {self.beam_size}, {prompt}, {self.cpu_threads} threads"


def reference_configs(home_prompt: str | None) -> tuple[ReferenceConfig, ...]:
    """The default reference (the ratio's denominator) and, when the appliance has one, the same with our prompt."""
    default = ReferenceConfig()
    if not home_prompt:
        return (default,)
    return default, ReferenceConfig(name="prompt", initial_prompt=home_prompt)


@dataclass(frozen=True)
class ReferenceRow:
    id: str
    transcript: str  # default server
    endpoint_ms: float  # endpoint decision − true end of speech (the silence wait, as HA experiences it)
    stt_ms: float  # AudioStop sent → Transcript received (default server)
    tts_first_ms: float  # Synthesize sent → first AudioChunk received
    e2e_ms: float  # true end of speech → first reply audio chunk (default server)
    microvad_endpoint_ms: float | None = None  # the same, had the endpoint come from microVAD (HA's current VAD)
    microvad_e2e_ms: float | None = None
    prompt_transcript: str | None = None  # the server with our home prompt
    prompt_stt_ms: float | None = None
    prompt_e2e_ms: float | None = None
    start_ms: float = 0.0  # where in the clip the stream began (HA streams what follows the wake word)


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
    """Starts the servers, answers `run(clip, reply)`, stops them. Use as `async with WyomingReference() as ref`.
    One Whisper server per entry of `configs` (the first is the default row), one Piper server."""

    def __init__(self, configs: tuple[ReferenceConfig, ...] = (ReferenceConfig(),),
                 progress: Callable[[str], None] = lambda s: None, start_timeout_s: float = 180.0) -> None:
        self.configs = configs
        self.progress = progress
        self.start_timeout_s = start_timeout_s
        self.has_microvad = importlib.util.find_spec("pymicro_vad") is not None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._procs: list[tuple[str, subprocess.Popen, Path, int]] = []
        self.stt_ports: list[int] = []
        self.tts_port = 0
        self.versions: dict[str, str] = {}
        self._runs = 0

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
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        # Compute type int8: the type of HA's own tiny model (`tiny-int8`) and of the appliance.
        for cfg in self.configs:
            port = free_port()
            self.stt_ports.append(port)
            self._spawn(f"wyoming-faster-whisper-{cfg.name}", [
                "-m", "wyoming_faster_whisper", "--uri", f"tcp://127.0.0.1:{port}", "--model", "tiny.en",
                "--language", "en", "--data-dir", str(wdir), "--local-files-only", "--compute-type", "int8",
                *cfg.server_args()], env, root, port)
        self.tts_port = free_port()
        self._spawn("wyoming-piper", [
            "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{self.tts_port}", "--voice", PIPER_VOICE,
            "--data-dir", str(pdir), "--local-files-only"], env, root, self.tts_port)
        self.progress(f"reference: starting {len(self.configs)} wyoming-faster-whisper "
                      f"({'; '.join(c.describe() for c in self.configs)}) and wyoming-piper (same model files, offline)")
        await asyncio.gather(*(self._wait_ready(i) for i in range(len(self._procs))))
        await self._warm()

    def _spawn(self, name: str, args: list[str], env: dict, root: Path, port: int) -> None:
        log = root / f"{name}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen([sys.executable, *args], stdout=f, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL)
        self._procs.append((name, proc, log, port))

    async def _wait_ready(self, index: int) -> None:
        from wyoming.client import AsyncTcpClient
        from wyoming.info import Describe, Info

        name, proc, log, port = self._procs[index]
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
        for port in self.stt_ports:
            await self.transcribe(np.zeros(RATE, np.int16), port)
        await self.synthesize_first_chunk("Ready.")

    def stop(self) -> None:
        for _name, proc, _log, _port in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for _name, proc, _log, _port in self._procs:
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
    async def transcribe(self, pcm: np.ndarray, port: int | None = None) -> str:
        """Send all audio at once (warm-up only)."""
        from wyoming.asr import Transcribe, Transcript
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.client import AsyncTcpClient

        async with AsyncTcpClient("127.0.0.1", port or self.stt_ports[0]) as client:
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

    async def run(self, clip: CommandClip, reply: str, start_sample: int = 0, max_extra_s: float = 3.0) -> ReferenceRow:
        """One voice command: real-time stream (to every Whisper server at once) until HA's segmenter ends it
        (webrtcvad; microVAD's endpoint on the same audio is reported beside it), each server's full transcript in
        turn, then the reply's first audio chunk. Home Assistant streams what follows the wake word: `start_sample`
        is where the wake word fired in the clip (0: stream it whole)."""
        from wyoming.asr import Transcribe, Transcript
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.client import AsyncTcpClient

        start_sample = max(0, min(start_sample, int(clip.speech_end_ms * RATE / 1000) - RATE // 2))
        pcm = np.concatenate([clip.pcm[start_sample:], silence(max_extra_s * 1000)])
        speech_end_ms = clip.speech_end_ms - 1000 * start_sample / RATE
        end = endpoint_samples(pcm, "webrtc") or len(pcm) - len(pcm) % SEND_SAMPLES
        micro_end = endpoint_samples(pcm, "microvad") if self.has_microvad else None
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(AsyncTcpClient("127.0.0.1", port)) for port in self.stt_ports]
            for client in clients:
                await client.write_event(Transcribe(language="en").event())
                await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            t0 = time.monotonic()  # the pace clock: sample n is captured at t0 + n / RATE
            for start in range(0, end, SEND_SAMPLES):
                delay = t0 + (start + SEND_SAMPLES) / RATE - time.monotonic()  # a mic delivers a block once captured
                if delay > 0:
                    await asyncio.sleep(delay)
                block = AudioChunk(rate=RATE, width=2, channels=1, audio=pcm[start : start + SEND_SAMPLES].tobytes())
                for client in clients:
                    await client.write_event(block.event())
            t_end = time.monotonic()
            order = list(range(len(clients)))
            if self._runs % 2:
                order.reverse()  # neither server always goes first
            self._runs += 1
            results: dict[int, tuple[str, float]] = {}
            for i in order:
                t_stop = time.monotonic()
                await clients[i].write_event(AudioStop().event())
                text = await _read_transcript(clients[i], Transcript)
                results[i] = (text.strip(), (time.monotonic() - t_stop) * 1000)
        tts_ms = await self.synthesize_first_chunk(reply) * 1000
        endpoint_ms = (t_end - (t0 + speech_end_ms / 1000)) * 1000
        micro_ms = None if micro_end is None else 1000 * micro_end / RATE - speech_end_ms
        text, stt_ms = results[0]
        prompted = results.get(1)
        return ReferenceRow(
            clip.id, text, round(endpoint_ms, 1), round(stt_ms, 1), round(tts_ms, 1),
            round(endpoint_ms + stt_ms + tts_ms, 1),
            None if micro_ms is None else round(micro_ms, 1),
            None if micro_ms is None else round(micro_ms + stt_ms + tts_ms, 1),
            prompt_transcript=None if prompted is None else prompted[0],
            prompt_stt_ms=None if prompted is None else round(prompted[1], 1),
            prompt_e2e_ms=None if prompted is None else round(endpoint_ms + prompted[1] + tts_ms, 1),
            start_ms=round(1000 * start_sample / RATE, 1))


async def _read_transcript(client, transcript_type) -> str:
    while True:
        event = await asyncio.wait_for(client.read_event(), 120.0)
        if event is None:
            raise BenchError("wyoming-faster-whisper closed the connection before the transcript",
                             code="bench-reference-failed")
        if transcript_type.is_type(event.type):
            return transcript_type.from_event(event).text
