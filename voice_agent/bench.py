"""`voice-agent bench`: latency, CPU and memory of the whole appliance, against Home Assistant's own Wyoming services
(wyoming-faster-whisper + wyoming-piper, same model files, same machine, same run).

Order: our pipeline first (models loaded, commands, listening CPU, peak RSS), then the reference servers, then the
optional sweeps (--vad-sweep, --llm-sweep). Progress goes to stderr; `--json` prints one object on stdout."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import bench_corpus as corpus
from .bench_pipeline import (PipelineRow, SttProbe, bench_config, peak_rss_mib, private_broker, run_commands,
                             tts_rtf, wake_cpu)
from .errors import VoiceAgentError

README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
TARGETS = {"e2e_p50_ms": 500, "ratio_to_reference": 0.5, "wake_cpu_percent": 10.0, "peak_rss_mib": 1024}


def _progress(quiet: bool):
    t0 = time.monotonic()

    def say(msg: str) -> None:
        print(f"[bench {time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    return say


def pct(values, q: float) -> float | None:
    v = [x for x in values if x is not None]
    return round(float(np.percentile(v, q)), 1) if v else None


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


async def _ours(cfg, clips, wake_seconds: float, say) -> tuple[list[PipelineRow], dict, object]:
    from .app import build_app, load_engines
    from .audio_io import CollectingSpeaker

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
        rows = await run_commands(app, clips, say, probe)
        cpu = await wake_cpu(app, corpus.non_wake_audio(wake_seconds), say)
    finally:
        await app.aclose()
    extra = {**cpu, "peak_rss_mib": peak_rss_mib(), "models_load_s": round(load_s, 1),
             "tts_rtf": tts_rtf(engines.tts, [r.reply for r in rows])}
    return rows, extra, engines


async def _reference(clips, rows: list[PipelineRow], say) -> tuple[list, dict]:
    from .bench_reference import WyomingReference

    replies = {r.id: r.reply for r in rows}
    out = []
    async with WyomingReference(progress=say) as ref:
        for k, clip in enumerate(clips):
            say(f"reference [{k + 1}/{len(clips)}] {clip.id}")
            out.append(await ref.run(clip, replies.get(clip.id) or "Done."))
        info = {"versions": ref.versions, "vad": "webrtcvad aggressiveness 3 on HA's segmenter rules, 0.7 s silence",
                "stt": "tiny.en int8, beam 5 (server default on x86), 4 threads (server default)",
                "tts": "en_US-joe-medium, Synthesize -> first AudioChunk"}
    return out, info


def summarize(rows: list[PipelineRow], ref_rows: list, extra: dict) -> dict:
    ok = [r for r in rows if r.e2e_ms is not None]
    res = {
        "e2e_p50_ms": pct([r.e2e_ms for r in ok], 50), "e2e_p95_ms": pct([r.e2e_ms for r in ok], 95),
        "e2e_vad_stamp_p50_ms": pct([r.e2e_vad_ms for r in ok], 50),
        "endpoint_p50_ms": pct([r.endpoint_ms for r in ok], 50),
        "transcript_after_eos_p50_ms": pct([r.transcript_after_eos_ms for r in ok], 50),
        "stt_p50_ms": pct([r.stt_ms for r in ok], 50), "stt_rtf_p50": pct([r.stt_rtf for r in ok], 50),
        "understand_p50_ms": pct([r.understand_ms for r in ok], 50),
        "tts_first_audio_p50_ms": pct([r.tts_first_ms for r in ok], 50),
        "tts_rtf": extra.get("tts_rtf"),
        "commands": len(rows), "answered": len(ok), "woke": sum(r.woke for r in rows),
        "intent_correct": sum(r.correct for r in rows), "early_stt_used": sum(r.early_stt for r in rows),
        "stt_calls_per_turn_p50": pct([r.stt_calls for r in rows], 50),
        "turns_with_overlapping_stt": sum(r.stt_overlapped for r in rows),
        **{k: extra[k] for k in ("wake_cpu_percent", "wake_window_s", "false_wakes", "peak_rss_mib", "models_load_s")},
    }
    for subset, name in ((False, "clean"), (True, "noisy")):
        res[f"e2e_p50_ms_{name}"] = pct([r.e2e_ms for r in ok if r.noisy == subset], 50)
    if ref_rows:
        res["reference_e2e_p50_ms"] = pct([r.e2e_ms for r in ref_rows], 50)
        res["reference_e2e_p95_ms"] = pct([r.e2e_ms for r in ref_rows], 95)
        res["reference_endpoint_p50_ms"] = pct([r.endpoint_ms for r in ref_rows], 50)
        res["reference_stt_p50_ms"] = pct([r.stt_ms for r in ref_rows], 50)
        res["reference_tts_first_p50_ms"] = pct([r.tts_first_ms for r in ref_rows], 50)
        res["reference_microvad_e2e_p50_ms"] = pct([r.microvad_e2e_ms for r in ref_rows], 50)
        ratio = (res["e2e_p50_ms"] / res["reference_e2e_p50_ms"]
                 if res["e2e_p50_ms"] and res["reference_e2e_p50_ms"] else None)
        res["ratio_to_reference"] = None if ratio is None else round(ratio, 3)
    else:
        res.update(reference_e2e_p50_ms=None, ratio_to_reference=None)
    res["targets"] = {k: {"target": v, "value": res.get(k),
                          "met": res.get(k) is not None and res[k] <= v} for k, v in TARGETS.items()}
    return res


def human(result: dict) -> str:
    s = result["summary"]
    m = result["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, load at start {m['load_avg_at_start'][0]:.2f}", "",
             f"{'command':<52} {'e2e':>6} {'endpt':>6} {'stt':>5} {'tts1':>5} {'ref':>6}  ok  transcript"]
    ref = {r["id"]: r for r in result.get("reference_rows", [])}
    for r in result["rows"]:
        rr = ref.get(r["id"], {})

        def f(v):
            return f"{v:6.0f}" if isinstance(v, (int, float)) else "     -"

        lines.append(f"{r['id'][:52]:<52} {f(r['e2e_ms'])} {f(r['endpoint_ms'])} {f(r['stt_ms'])[1:]} "
                     f"{f(r['tts_first_ms'])[1:]} {f(rr.get('e2e_ms'))}  {'yes' if r['correct'] else 'NO '} "
                     f"{r['transcript'][:40]}")
    lines += ["", "all times in ms; e2e = true end of speech -> first reply sample at the speaker", ""]
    for k in ("e2e_p50_ms", "e2e_p95_ms", "e2e_p50_ms_clean", "e2e_p50_ms_noisy", "e2e_vad_stamp_p50_ms",
              "endpoint_p50_ms", "transcript_after_eos_p50_ms", "stt_p50_ms", "stt_rtf_p50", "understand_p50_ms",
              "tts_first_audio_p50_ms", "tts_rtf", "intent_correct", "commands", "early_stt_used",
              "turns_with_overlapping_stt", "reference_e2e_p50_ms", "reference_e2e_p95_ms",
              "reference_endpoint_p50_ms", "reference_stt_p50_ms", "reference_tts_first_p50_ms",
              "reference_microvad_e2e_p50_ms", "ratio_to_reference", "wake_cpu_percent", "false_wakes",
              "peak_rss_mib"):
        if k in s:
            lines.append(f"  {k:<32} {s[k]}")
    lines.append("")
    for k, t in s["targets"].items():
        lines.append(f"  target {k:<24} <= {t['target']:<6} got {t['value']}: {'met' if t['met'] else 'MISSED'}")
    sweep = result.get("vad_sweep")
    if isinstance(sweep, list):
        lines += ["", "VAD sweep (commands without the wake word; endpoint = ms after the true end of speech):",
                  f"  {'vad':<8} {'silence':>7} {'p50':>6} {'p95':>6} {'cut':>4} {'wrong':>5} {'none':>4}"]
        lines += [f"  {r['vad']:<8} {r['end_silence_ms']:>7} {r['endpoint_p50_ms']!s:>6} {r['endpoint_p95_ms']!s:>6} "
                  f"{r['cut_early']:>4} {r['intent_wrong']:>5} {r['no_endpoint']:>4}" for r in sweep]
    elif sweep:
        lines += ["", f"VAD sweep: {sweep}"]
    llm = result.get("llm_sweep")
    if llm and "rows" in llm:
        lines += ["", f"LLM path ({llm['server']}):"]
        lines += [f"  TTFT {r['ttft_ms']:>5} ms -> first audio p50 {r['first_audio_p50_ms']} ms "
                  f"(minus TTFT: {r['first_audio_minus_ttft_ms']} ms, {r['llm_turns']}/{r['turns']} LLM turns)"
                  for r in llm["rows"]]
    elif llm:
        lines += ["", f"LLM path: {llm}"]
    return "\n".join(lines)


def readme_block(result: dict) -> str:
    s, m = result["summary"], result["machine"]
    rows = [("End of speech → first reply audio, p50", f"{s['e2e_p50_ms']} ms", f"{s.get('reference_e2e_p50_ms')} ms"),
            ("End of speech → first reply audio, p95", f"{s['e2e_p95_ms']} ms", f"{s.get('reference_e2e_p95_ms')} ms"),
            ("Endpoint after end of speech, p50", f"{s['endpoint_p50_ms']} ms", f"{s.get('reference_endpoint_p50_ms')} ms"),
            ("STT, p50", f"{s['stt_p50_ms']} ms", f"{s.get('reference_stt_p50_ms')} ms"),
            ("TTS to first audio, p50", f"{s['tts_first_audio_p50_ms']} ms", f"{s.get('reference_tts_first_p50_ms')} ms"),
            ("Commands understood", f"{s['intent_correct']}/{s['commands']}", "—"),
            ("Ratio to reference (p50)", f"{s.get('ratio_to_reference')}", "1"),
            ("Wake-word listening CPU (% of one core)", f"{s['wake_cpu_percent']} %", "—"),
            ("Peak RSS, whole appliance", f"{s['peak_rss_mib']} MiB", "—")]
    out = [f"Measured by `make bench` on {m['cpu']}, {m['cores']} cores ({m['system']}, Python {m['python']}); "
           f"{s['commands']} spoken commands (espeak-ng voices, clean and noisy), whisper tiny.en, Piper "
           f"en_US-joe-medium. Reference: Home Assistant's wyoming-faster-whisper + wyoming-piper with the same "
           f"model files, driven as HA does (0.7 s silence endpoint, full transcript, then synthesis).", "",
           "| figure | voice-agent | HA Wyoming reference |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out)


def update_readme(result: dict, path: Path) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{README_START}\n{readme_block(result)}\n{README_END}"
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        raise VoiceAgentError(f"{path} has no {README_START} … {README_END} block to rewrite",
                              code="bench-readme-no-block", fix="add the two marker lines where the table belongs")
    path.write_text(text)


async def _run(args, say) -> dict:
    from .config import load_config

    quick = bool(getattr(args, "quick", False))
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
        rows, extra, engines = await _ours(cfg, clips, 8.0 if quick else 30.0, say)
        ref_rows, ref_info = [], None
        if not getattr(args, "no_reference", False):
            ref_rows, ref_info = await _reference(clips, rows, say)
        result["summary"] = summarize(rows, ref_rows, extra)
        result["rows"] = [asdict(r) for r in rows]
        result["reference"] = ref_info
        result["reference_rows"] = [asdict(r) for r in ref_rows]
        if getattr(args, "vad_sweep", False):
            from .bench_sweeps import vad_sweep

            voices = corpus.QUICK_VOICES if quick else corpus.VOICES
            commands = corpus.QUICK_COMMANDS if quick else corpus.COMMANDS
            try:
                result["vad_sweep"] = await asyncio.to_thread(vad_sweep, engines.stt, engines.intents, voices,
                                                              commands, say)
            except Exception as exc:  # a sweep failing must not lose the main figures
                result["vad_sweep"] = {"error": f"{type(exc).__name__}: {exc}"}
        if getattr(args, "llm_sweep", False):
            from .bench_sweeps import llm_sweep

            try:
                result["llm_sweep"] = await llm_sweep(cfg, engines,
                                                      corpus.QUICK_VOICES if quick else corpus.VOICES[:2], say)
            except Exception as exc:
                result["llm_sweep"] = {"error": f"{type(exc).__name__}: {exc}"}
    return result


def main(args) -> int:
    say = _progress(False)
    try:
        result = asyncio.run(_run(args, say))
    except VoiceAgentError as exc:
        print(f"error [{exc.code}]: {exc.message}" + (f"\n  fix: {exc.fix}" if exc.fix else ""), file=sys.stderr)
        return 2
    flat = {**result["summary"], "machine": result["machine"], "setup": result["setup"],
            "reference": result["reference"], "rows": result["rows"], "reference_rows": result["reference_rows"]}
    for k in ("vad_sweep", "llm_sweep"):
        if k in result:
            flat[k] = result[k]
    if getattr(args, "json", False):
        print(json.dumps(flat))
    else:
        print(human(result))
    if getattr(args, "update_readme", False):
        path = Path(__file__).resolve().parent.parent / "README.md"
        try:
            update_readme(result, path)
        except (VoiceAgentError, OSError) as exc:
            print(f"error: README not updated: {exc}", file=sys.stderr)
            return 2
        say(f"README results table rewritten: {path}")
    return 0
