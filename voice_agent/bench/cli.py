"""`voice-agent bench`: run the benchmark and report it.

Order: our pipeline first (models loaded, commands, listening CPU, peak RSS), then the reference servers, then the
optional measurements (--vad-sweep, --llm-sweep). Progress goes to stderr; `--json` prints one object
on stdout; `--update-readme` rewrites README's results table."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import VoiceAgentError
from . import corpus
from .pipeline import (LIMIT_S, PipelineRow, SttProbe, bench_config, expected_outcome, peak_rss_mib, private_broker,
                       run_commands, tts_rtf, wake_cpu)
from .report import human, summarize, update_readme


def _progress():
    t0 = time.monotonic()

    def say(msg: str) -> None:
        print(f"[bench {time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    return say


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}", "load_avg_at_start": list(os.getloadavg())}


async def _ours(cfg, clips, wake_seconds: float, limit_s: float, say) -> tuple[list[PipelineRow], dict, object]:
    from ..app import build_app, load_engines
    from ..audio_io import CollectingSpeaker

    t = time.monotonic()
    engines = load_engines(cfg, wake=True, progress=say)
    load_s = time.monotonic() - t
    probe = SttProbe(engines.stt)
    speaker = CollectingSpeaker(realtime=True, rate=engines.tts.rate)
    app = await build_app(cfg, engines, speaker, wake_enabled=True, use_mqtt=cfg.mqtt.enabled, use_llm=False,
                          use_mcp=False)
    try:
        if app.mqtt is not None:
            app.mqtt.wait_connected(5.0)
        say(f"our pipeline: {len(clips)} spoken commands, fed at microphone pace")
        rows = await run_commands(app, clips, say, probe, limit_s=limit_s)
        cpu = await wake_cpu(app, corpus.non_wake_audio(wake_seconds), say)
    finally:
        await app.aclose()
        probe.restore()
    extra = {**cpu, "peak_rss_mib": peak_rss_mib(), "models_load_s": round(load_s, 1),
             "tts_rtf": tts_rtf(engines.tts, [r.reply for r in rows])}
    return rows, extra, engines


def _understood(intents, wake_model: str, clip, transcript: str | None) -> bool:
    """Would our local parser do with the reference's transcript what the exact text asks?"""
    from ..intents import strip_wake_phrase

    if transcript is None:
        return False
    expected = expected_outcome(intents, clip.text)
    return bool(expected[0]) and expected_outcome(intents, strip_wake_phrase(transcript, wake_model)) == expected


async def _reference(cfg, engines, clips, rows: list[PipelineRow], say) -> tuple[list, dict, dict]:
    from .reference import WyomingReference, reference_configs

    replies = {r.id: r.reply for r in rows}
    woke_at = {r.id: r.wake_at_sample or 0 for r in rows}
    configs = reference_configs(engines.stt.prompt)
    out = []
    async with WyomingReference(configs, progress=say) as ref:
        for k, clip in enumerate(clips):
            say(f"reference [{k + 1}/{len(clips)}] {clip.id}")
            out.append(await ref.run(clip, replies.get(clip.id) or "Done.", woke_at.get(clip.id, 0)))
        info = {"versions": ref.versions, "vad": "webrtcvad aggressiveness 3 on HA's segmenter rules, 0.7 s silence",
                "stt": configs[0].describe(), "stt_rows": [asdict(c) for c in configs],
                "tts": "en_US-joe-medium, Synthesize -> first AudioChunk"}
    wake = cfg.wake.model
    extra = {"reference_intent_correct": sum(_understood(engines.intents, wake, c, r.transcript)
                                             for c, r in zip(clips, out)),
             "reference_prompt_intent_correct": sum(_understood(engines.intents, wake, c, r.prompt_transcript)
                                                    for c, r in zip(clips, out)) if len(configs) > 1 else None}
    return out, info, extra


async def _run(args, say) -> dict:
    from ..config import load_config

    quick = bool(getattr(args, "quick", False))
    limit_s = float(getattr(args, "limit_s", None) or LIMIT_S)
    clips = corpus.command_set(quick=quick)
    say(f"corpus: {len(clips)} spoken commands (cached in {corpus.cache_dir()})")
    user_cfg = load_config(getattr(args, "config", None))
    result: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="voice-agent-bench-data-") as data, private_broker() as mqtt_port:
        cfg = bench_config(user_cfg, data, mqtt_port)
        result["setup"] = {"mqtt": f"private mosquitto on 127.0.0.1:{mqtt_port}" if mqtt_port else "off",
                           "vad": f"{cfg.vad.engine} aggressiveness {cfg.vad.aggressiveness}, end silence "
                                  f"{cfg.vad.end_silence_ms} ms, early pause {cfg.vad.early_pause_ms} ms",
                           "stt": f"{cfg.stt.model} beam {cfg.stt.beam_size}, {cfg.stt.threads} threads"}
        rows, extra, engines = await _ours(cfg, clips, 8.0 if quick else 30.0, limit_s, say)
        ref_rows, ref_info = [], None
        if not getattr(args, "no_reference", False):
            ref_rows, ref_info, ref_extra = await _reference(cfg, engines, clips, rows, say)
            extra.update(ref_extra)
        result["summary"] = summarize(rows, ref_rows, extra, limit_s)
        result["rows"] = [asdict(r) for r in rows]
        result["reference"] = ref_info
        result["reference_rows"] = [asdict(r) for r in ref_rows]
        await _optional(args, cfg, engines, quick, result, say)
    result["machine"]["load_avg_at_end"] = list(os.getloadavg())
    return result


async def _optional(args, cfg, engines, quick: bool, result: dict, say) -> None:
    """The optional measurements; one failing never loses the main figures."""
    voices = corpus.QUICK_VOICES if quick else corpus.VOICES
    commands = corpus.QUICK_COMMANDS if quick else corpus.COMMANDS
    if getattr(args, "vad_sweep", False):
        from .sweeps import vad_sweep

        try:
            result["vad_sweep"] = await asyncio.to_thread(vad_sweep, engines.stt, engines.intents, voices, commands,
                                                          say)
        except Exception as exc:
            result["vad_sweep"] = {"error": f"{type(exc).__name__}: {exc}"}
    if getattr(args, "llm_sweep", False):
        from .sweeps import llm_sweep

        try:
            result["llm_sweep"] = await llm_sweep(cfg, engines, corpus.QUICK_VOICES if quick else corpus.VOICES[:2],
                                                  say)
        except Exception as exc:
            result["llm_sweep"] = {"error": f"{type(exc).__name__}: {exc}"}


def main(args) -> int:
    say = _progress()
    try:
        result = asyncio.run(_run(args, say))
    except VoiceAgentError as exc:
        print(f"error [{exc.code}]: {exc.message}" + (f"\n  fix: {exc.fix}" if exc.fix else ""), file=sys.stderr)
        return 2
    flat = {**result["summary"], "machine": result["machine"], "setup": result["setup"],
            "reference": result["reference"], "rows": result["rows"], "reference_rows": result["reference_rows"]}
    for k in ("stt_options", "vad_sweep", "llm_sweep"):
        if k in result:
            flat[k] = result[k]
    if getattr(args, "json", False):
        print(json.dumps(flat))
    else:
        print(human(result))
    if getattr(args, "update_readme", False):
        path = Path(__file__).resolve().parents[2] / "README.md"
        try:
            update_readme(result, path)
        except (VoiceAgentError, OSError) as exc:
            print(f"error: README not updated: {exc}", file=sys.stderr)
            return 2
        say(f"README results table rewritten: {path}")
    return 0
