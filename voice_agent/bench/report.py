"""The benchmark's figures: percentiles over every command (a command with no reply audio counts as a timeout at the
run's limit, never dropped), the human report, and README's results table (`--update-readme`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import VoiceAgentError
from .pipeline import LIMIT_S, PipelineRow, e2e_counted

README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
TARGETS = {"e2e_p50_ms": 500, "ratio_to_reference": 0.5, "wake_cpu_percent": 10.0, "peak_rss_mib": 1024}


def pct(values, q: float) -> float | None:
    v = [x for x in values if x is not None]
    return round(float(np.percentile(v, q)), 1) if v else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def summarize(rows: list[PipelineRow], ref_rows: list, extra: dict, limit_s: float = LIMIT_S) -> dict:
    """Percentiles of end-to-end latency over EVERY command (timeouts at `limit_s`); the other stage figures over
    the commands where the stage happened."""
    ok = [r for r in rows if r.e2e_ms is not None]
    e2e = [e2e_counted(r, limit_s) for r in rows]
    res = {
        "e2e_p50_ms": pct(e2e, 50), "e2e_p95_ms": pct(e2e, 95),
        "timeouts": sum(r.timed_out for r in rows), "timeout_limit_s": limit_s,
        "cut_off": sum(r.cut_off for r in rows),
        "e2e_vad_stamp_p50_ms": pct([r.e2e_vad_ms for r in ok], 50),
        "endpoint_p50_ms": pct([r.endpoint_ms for r in rows], 50),
        "transcript_after_eos_p50_ms": pct([r.transcript_after_eos_ms for r in rows], 50),
        "stt_p50_ms": pct([r.stt_ms for r in rows], 50), "stt_rtf_p50": pct([r.stt_rtf for r in rows], 50),
        "understand_p50_ms": pct([r.understand_ms for r in rows], 50),
        "tts_first_audio_p50_ms": pct([r.tts_first_ms for r in ok], 50),
        "tts_rtf": extra.get("tts_rtf"),
        "commands": len(rows), "answered": len(ok), "woke": sum(r.woke for r in rows),
        "intent_correct": sum(r.correct for r in rows), "early_stt_used": sum(r.early_stt for r in rows),
        "stt_calls_per_turn_p50": pct([r.stt_calls for r in rows], 50),
        "turns_with_overlapping_stt": sum(r.stt_overlapped for r in rows),
        **{k: extra.get(k) for k in ("wake_cpu_percent", "wake_window_s", "false_wakes", "peak_rss_mib",
                                     "models_load_s")},
    }
    for subset, name in ((False, "clean"), (True, "noisy")):
        res[f"e2e_p50_ms_{name}"] = pct([e2e_counted(r, limit_s) for r in rows if r.noisy == subset], 50)
    if ref_rows:
        res["reference_e2e_p50_ms"] = pct([r.e2e_ms for r in ref_rows], 50)
        res["reference_e2e_p95_ms"] = pct([r.e2e_ms for r in ref_rows], 95)
        res["reference_endpoint_p50_ms"] = pct([r.endpoint_ms for r in ref_rows], 50)
        res["reference_stt_p50_ms"] = pct([r.stt_ms for r in ref_rows], 50)
        res["reference_tts_first_p50_ms"] = pct([r.tts_first_ms for r in ref_rows], 50)
        res["reference_microvad_e2e_p50_ms"] = pct([r.microvad_e2e_ms for r in ref_rows], 50)
        res["reference_prompt_e2e_p50_ms"] = pct([r.prompt_e2e_ms for r in ref_rows], 50)
        res["reference_prompt_e2e_p95_ms"] = pct([r.prompt_e2e_ms for r in ref_rows], 95)
        res["reference_prompt_stt_p50_ms"] = pct([r.prompt_stt_ms for r in ref_rows], 50)
        for key in ("reference_intent_correct", "reference_prompt_intent_correct"):
            res[key] = extra.get(key)
        res["ratio_to_reference"] = _ratio(res["e2e_p50_ms"], res["reference_e2e_p50_ms"])
        res["ratio_to_reference_prompt"] = _ratio(res["e2e_p50_ms"], res["reference_prompt_e2e_p50_ms"])
        res["ratio_to_reference_microvad"] = _ratio(res["e2e_p50_ms"], res["reference_microvad_e2e_p50_ms"])
    else:
        res.update(reference_e2e_p50_ms=None, ratio_to_reference=None)
    res["targets"] = {k: {"target": v, "value": res.get(k),
                          "met": res.get(k) is not None and res[k] <= v} for k, v in TARGETS.items()}
    return res


HUMAN_KEYS = (
    "e2e_p50_ms", "e2e_p95_ms", "timeouts", "cut_off", "e2e_p50_ms_clean", "e2e_p50_ms_noisy", "e2e_vad_stamp_p50_ms",
    "endpoint_p50_ms", "transcript_after_eos_p50_ms", "stt_p50_ms", "stt_rtf_p50", "understand_p50_ms",
    "tts_first_audio_p50_ms", "tts_rtf", "intent_correct", "commands", "early_stt_used", "turns_with_overlapping_stt",
    "reference_e2e_p50_ms", "reference_e2e_p95_ms", "reference_endpoint_p50_ms", "reference_stt_p50_ms",
    "reference_tts_first_p50_ms", "reference_intent_correct", "reference_prompt_e2e_p50_ms",
    "reference_prompt_e2e_p95_ms", "reference_prompt_stt_p50_ms", "reference_prompt_intent_correct",
    "reference_microvad_e2e_p50_ms", "ratio_to_reference", "ratio_to_reference_prompt", "ratio_to_reference_microvad",
    "wake_cpu_percent", "false_wakes", "peak_rss_mib")


def human(result: dict) -> str:
    s = result["summary"]
    m = result["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, load at start {m['load_avg_at_start'][0]:.2f}"
             + (f", at end {m['load_avg_at_end'][0]:.2f}" if m.get("load_avg_at_end") else ""), "",
             f"{'command':<52} {'e2e':>6} {'endpt':>6} {'stt':>5} {'tts1':>5} {'ref':>6}  ok  transcript"]
    ref = {r["id"]: r for r in result.get("reference_rows", [])}
    for r in result["rows"]:
        rr = ref.get(r["id"], {})

        def f(v):
            return f"{v:6.0f}" if isinstance(v, (int, float)) else "     -"

        flags = ("TIMEOUT " if r.get("timed_out") else "") + ("CUT " if r.get("cut_off") else "")
        lines.append(f"{r['id'][:52]:<52} {f(r['e2e_ms'])} {f(r['endpoint_ms'])} {f(r['stt_ms'])[1:]} "
                     f"{f(r['tts_first_ms'])[1:]} {f(rr.get('e2e_ms'))}  {'yes' if r['correct'] else 'NO '} "
                     f"{flags}{r['transcript'][:40]}")
    lines += ["", "all times in ms; e2e = true end of speech (scheduled capture of its last sample) -> first reply "
              f"sample at the speaker; p50/p95 count every command, a timeout at {s.get('timeout_limit_s')} s", ""]
    lines += [f"  {k:<36} {s[k]}" for k in HUMAN_KEYS if k in s]
    lines.append("")
    for k, t in s["targets"].items():
        lines.append(f"  target {k:<24} <= {t['target']:<6} got {t['value']}: {'met' if t['met'] else 'MISSED'}")
    for name in ("stt_options", "vad_sweep", "llm_sweep"):
        if name in result:
            lines += ["", *_sweep_lines(name, result[name])]
    return "\n".join(lines)


def _sweep_lines(name: str, sweep) -> list[str]:
    if name == "vad_sweep" and isinstance(sweep, list):
        return ["VAD sweep (commands without the wake word; endpoint = ms after the true end of speech):",
                f"  {'vad':<8} {'silence':>7} {'p50':>6} {'p95':>6} {'cut':>4} {'wrong':>5} {'none':>4}",
                *[f"  {r['vad']:<8} {r['end_silence_ms']:>7} {r['endpoint_p50_ms']!s:>6} {r['endpoint_p95_ms']!s:>6} "
                  f"{r['cut_early']:>4} {r['intent_wrong']:>5} {r['no_endpoint']:>4}" for r in sweep]]
    if name == "llm_sweep" and isinstance(sweep, dict) and "rows" in sweep:
        return [f"LLM path ({sweep['server']}):",
                *[f"  TTFT {r['ttft_ms']:>5} ms -> first audio p50 {r['first_audio_p50_ms']} ms "
                  f"(minus TTFT: {r['first_audio_minus_ttft_ms']} ms, {r['llm_turns']}/{r['turns']} LLM turns)"
                  for r in sweep["rows"]]]
    if name == "stt_options" and isinstance(sweep, dict) and "rows" in sweep:
        return [f"Whisper options ({sweep['clips']} command clips, each transcribed {sweep['repeats']}x, "
                f"interleaved; ms per call):",
                f"  {'option':<34} {'p50':>6} {'mean':>6} {'vs base':>8} {'same text':>9} {'right':>6}",
                *[f"  {r['option']:<34} {r['p50_ms']:>6} {r['mean_ms']:>6} {r['vs_base']:>8} "
                  f"{r['same_text']:>9} {r['intent_correct']:>6}" for r in sweep["rows"]]]
    return [f"{name}: {sweep}"]


def readme_block(result: dict) -> str:
    s, m = result["summary"], result["machine"]
    ref = result.get("reference") or {}

    def v(key: str, unit: str = " ms") -> str:
        x = s.get(key)
        return "—" if x is None else f"{x}{unit}"

    n = s["commands"]
    rows = [
        ("End of speech → first reply audio, p50", v("e2e_p50_ms"), v("reference_e2e_p50_ms"),
         v("reference_prompt_e2e_p50_ms")),
        ("End of speech → first reply audio, p95", v("e2e_p95_ms"), v("reference_e2e_p95_ms"),
         v("reference_prompt_e2e_p95_ms")),
        ("Endpoint after end of speech, p50", v("endpoint_p50_ms"), v("reference_endpoint_p50_ms"),
         v("reference_endpoint_p50_ms")),
        ("STT, p50", v("stt_p50_ms"), v("reference_stt_p50_ms"), v("reference_prompt_stt_p50_ms")),
        ("TTS to first audio, p50", v("tts_first_audio_p50_ms"), v("reference_tts_first_p50_ms"),
         v("reference_tts_first_p50_ms")),
        ("Commands understood (our local parser on the transcript)", f"{s['intent_correct']}/{n}",
         f"{s.get('reference_intent_correct')}/{n}", f"{s.get('reference_prompt_intent_correct')}/{n}"),
        (f"No reply audio (timeouts, counted at {s.get('timeout_limit_s')} s)", f"{s.get('timeouts')}", "—", "—"),
        ("Utterances cut off before the speaker finished", f"{s.get('cut_off')}", "—", "—"),
        ("voice-agent p50 ÷ this column's p50", "—", f"{s.get('ratio_to_reference')}", f"{s.get('ratio_to_reference_prompt')}"),
        ("Wake-word listening CPU (% of one core)", v("wake_cpu_percent", " %"), "—", "—"),
        ("Peak RSS, whole appliance", v("peak_rss_mib", " MiB"), "—", "—"),
    ]
    if s.get("early_commits") is not None:
        rows.insert(8, ("Early commits / changed by the full utterance", f"{s['early_commits']} / "
                        f"{s.get('early_commits_changed')}", "—", "—"))
    load = m.get("load_avg_at_start", [None])[0]
    out = [f"Measured by `make bench` on {m['cpu']}, {m['cores']} cores ({m['system']}, Python {m['python']}; load "
           f"average {load:.2f} at the start); {n} spoken commands (espeak-ng voices, clean and noisy), whisper "
           f"tiny.en, Piper en_US-joe-medium. Reference: Home Assistant's wyoming-faster-whisper "
           f"{ref.get('versions', {}).get('wyoming-faster-whisper', '')} + wyoming-piper with the same model files, "
           f"as HA's Whisper add-on ships by default ({ref.get('stt', 'beam 1, no prompt')}), driven as HA does "
           f"(the audio after the wake word streamed in real time; {ref.get('vad', '0.7 s silence endpoint')}; full "
           f"transcript, then synthesis). With HA's microVAD "
           f"endpointing instead of webrtcvad the reference p50 is {v('reference_microvad_e2e_p50_ms')} (reported, "
           f"not used for the ratio). End of speech is the scheduled capture time of the last speech sample, on both "
           f"sides.", "",
           "| figure | voice-agent | HA as shipped | HA + our home prompt |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


def update_readme(result: dict, path: Path) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{README_START}\n{readme_block(result)}\n{README_END}"
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise VoiceAgentError(f"{path} has no {README_START} … {README_END} block to rewrite",
                              code="bench-readme-no-block", fix="add the two marker lines where the table belongs")
    path.write_text(pattern.sub(lambda _m: block, text, count=1))
