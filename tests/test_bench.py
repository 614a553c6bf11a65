"""Smoke run of `voice-agent bench --quick --json`: the real appliance, real espeak-ng audio, and (when the bench
extra is installed) Home Assistant's real Wyoming servers on loopback. Checks the shape and sanity of the figures,
never their speed (speed belongs to the benchmark itself)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voice_agent.bench import corpus
from voice_agent.bench.pipeline import (LIMIT_S, PipelineRow, SttProbe, TimedSource, _row, e2e_counted,
                                        speech_end_at)
from voice_agent.bench.reference import (HaSegmenter, ReferenceConfig, WyomingReference, endpoint_samples,
                                         reference_configs)
from voice_agent.bench.report import README_END, README_START, summarize, update_readme

ROOT = Path(__file__).resolve().parent.parent
HAS_REFERENCE = all(importlib.util.find_spec(m) for m in ("wyoming_faster_whisper", "wyoming_piper"))

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_true_end_of_speech_is_found_and_survives_noise():
    clean = corpus.command_clip("turn off the kitchen light", "en-us", noisy=False)
    noisy = corpus.command_clip("turn off the kitchen light", "en-us", noisy=True)
    assert clean.speech_end_ms == noisy.speech_end_ms  # taken from the clean signal
    assert 400 < clean.speech_end_ms < clean.duration_ms
    end = int(clean.speech_end_ms * 16)
    assert np.abs(clean.pcm[end:]).max() == 0  # nothing but silence after the true end
    assert np.abs(clean.pcm[end - 1600 : end]).max() > 1000  # speech just before it
    assert np.abs(noisy.pcm[end:]).max() > 0  # the noise goes on


def test_ha_segmenter_waits_for_silence_after_a_command():
    seg = HaSegmenter()
    assert all(seg.process(0.01, True) for _ in range(150))  # 1.5 s of speech: still in the command
    ends = [seg.process(0.01, False) for _ in range(100)]
    assert ends.index(False) + 1 == 70  # ended after exactly 0.7 s of silence
    pcm = corpus.command_clip("lock the front door", "en-us+m3", noisy=False).pcm
    at = endpoint_samples(np.concatenate([pcm, np.zeros(48000, np.int16)]), "webrtc")
    assert at is not None and at > len(pcm) - 16000


def test_update_readme_rewrites_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\nintro\n{README_START}\nold table\n{README_END}\nafter\n")
    result = {"machine": {"cpu": "Test CPU", "cores": 2, "system": "Linux", "python": "3.11",
                          "load_avg_at_start": [0.5, 0.5, 0.5]},
              "summary": {k: 1 for k in ("e2e_p50_ms", "e2e_p95_ms", "endpoint_p50_ms", "stt_p50_ms",
                                         "tts_first_audio_p50_ms", "intent_correct", "commands", "wake_cpu_percent",
                                         "peak_rss_mib", "ratio_to_reference", "timeouts", "cut_off")}}
    update_readme(result, readme)
    text = readme.read_text()
    assert text.startswith("# title\nintro\n") and text.endswith(f"{README_END}\nafter\n")
    assert "old table" not in text and "Test CPU" in text


# ---- fairness mechanics (none of these is timed) -------------------------------------------------------------
HOME = ROOT / "tests" / "data" / "home.toml"


def _home_prompt() -> str:
    from voice_agent.config import load_config
    from voice_agent.intents import LocalIntents

    return LocalIntents(load_config(HOME).devices).stt_prompt()


def test_reference_is_home_assistants_default_and_the_prompt_row_uses_our_prompt():
    prompt = _home_prompt()
    default, prompted = reference_configs(prompt)
    assert default == ReferenceConfig()  # the row the ratio is taken against
    assert default.beam_size == 1 and default.initial_prompt is None
    args = default.server_args()
    assert args[args.index("--beam-size") + 1] == "1" and "--initial-prompt" not in args
    assert prompted.beam_size == 1 and prompted.initial_prompt == prompt
    args = prompted.server_args()
    assert args[args.index("--initial-prompt") + 1] == prompt
    assert reference_configs(None) == (ReferenceConfig(),)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_REFERENCE, reason="the bench extra (Wyoming servers) is not installed")
def test_reference_servers_run_with_beam_1_and_only_the_prompt_row_has_our_prompt():
    import asyncio

    prompt = _home_prompt()

    async def main():
        async with WyomingReference(reference_configs(prompt)) as ref:
            cmdlines = {name: Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
                        for name, proc, _log, _port in ref._procs}
            clip = corpus.command_clip("turn off the kitchen light", "en-us", noisy=False)
            row = await ref.run(clip, "Done.", start_sample=int(0.4 * 16000))
        return cmdlines, row

    cmdlines, row = asyncio.run(main())
    default = cmdlines["wyoming-faster-whisper-default"]
    prompted = cmdlines["wyoming-faster-whisper-prompt"]
    for cmd in (default, prompted):
        assert cmd[cmd.index(b"--beam-size") + 1] == b"1"
    assert b"--initial-prompt" not in default
    assert prompted[prompted.index(b"--initial-prompt") + 1].decode() == prompt
    assert "kitchen" in row.transcript.lower() and "kitchen" in row.prompt_transcript.lower()
    assert row.start_ms == 400.0
    assert row.e2e_ms == pytest.approx(row.endpoint_ms + row.stt_ms + row.tts_first_ms, abs=0.2)
    assert row.prompt_e2e_ms == pytest.approx(row.endpoint_ms + row.prompt_stt_ms + row.tts_first_ms, abs=0.2)


def _row_for(cid: str, e2e: float | None) -> PipelineRow:
    return PipelineRow(id=cid, voice="v", noisy=False, text="t", transcript="t", expected_intent="i", intent="i",
                       correct=True, woke=e2e is not None, early_stt=False, e2e_ms=e2e, e2e_vad_ms=None,
                       endpoint_ms=None, transcript_after_eos_ms=None, stt_ms=None, stt_rtf=None, understand_ms=None,
                       tts_first_ms=None, reply="", timed_out=e2e is None or e2e > LIMIT_S * 1000)


def test_a_command_without_reply_audio_counts_as_a_timeout_at_the_limit():
    rows = [_row_for("a", 400.0), _row_for("b", 500.0), _row_for("c", None)]
    s = summarize(rows, [], {}, limit_s=10.0)
    assert s["timeouts"] == 1 and s["commands"] == 3 and s["answered"] == 2
    assert s["e2e_p50_ms"] == 500.0  # the silent command is in the sorted list, at the top
    assert s["e2e_p95_ms"] == pytest.approx(500 + 0.9 * (10000 - 500), abs=0.1)
    assert e2e_counted(rows[2], 10.0) == 10000.0
    late = _row_for("d", 12000.0)
    assert late.timed_out and e2e_counted(late, 10.0) == 10000.0  # a reply later than the limit is a timeout too
    # dropping the silent command would have given a better p50: it must not be dropped
    assert summarize(rows[:2], [], {}, limit_s=10.0)["e2e_p50_ms"] == 450.0


class _Listener:
    """Stands in for the appliance as TimedSource sees it: it is never busy and never listening after a clip."""

    state = "idle"

    async def wait_ready(self) -> None:
        return None


def test_end_of_speech_comes_from_the_capture_schedule_not_from_a_late_handover():
    import asyncio
    import time

    from voice_agent.audio import CHUNK_SAMPLES, RATE
    from voice_agent.config import load_config
    from voice_agent.events import EventBus, FirstAudio, Reply, Stamped, StateChanged, Wake
    from voice_agent.intents import LocalIntents

    clip = corpus.command_clip("turn off the kitchen light", "en-us", noisy=False)
    j = (int(clip.speech_end_ms * RATE / 1000) - 1) // CHUNK_SAMPLES  # the chunk holding the last speech sample
    source = TimedSource([clip.pcm], _Listener())

    async def consume():
        n = 0
        async for _chunk in source.chunks():
            n += 1
            if n == j:  # the event loop is held up just before the chunk with the end of speech
                time.sleep(0.3)

    asyncio.run(consume())
    log = source.log[0]
    scheduled = log.clock_t0 + clip.speech_end_ms / 1000
    assert speech_end_at(clip, log) == pytest.approx(scheduled)
    handover_stamp = log.yields[j] + (clip.speech_end_ms / 1000 - j * CHUNK_SAMPLES / RATE) - CHUNK_SAMPLES / RATE
    assert handover_stamp - scheduled > 0.2  # the chunk came late: a handover clock would have hidden 0.2 s of it

    # the row's figures are measured from the schedule: reply audio 0.5 s after it is 500 ms, whatever the handover
    intents = LocalIntents(load_config(HOME).devices)
    log.events = [(log.yields[5] + 0.001, Stamped(Wake("hey_jarvis", 0.9), 0)),
                  (scheduled + 0.3, Stamped(StateChanged("thinking"), 0)), (scheduled + 0.4, Stamped(Reply("ok"), 0)),
                  (scheduled + 0.5, Stamped(FirstAudio(), 0))]
    row = _row(clip, log, EventBus(), intents)
    assert row.e2e_ms == pytest.approx(500.0, abs=0.2) and row.endpoint_ms == pytest.approx(300.0, abs=0.2)
    assert not row.timed_out and not row.cut_off
    assert row.wake_at_sample == 6 * CHUNK_SAMPLES  # the reference streams what follows the wake word
    # a turn that began while the chunk with the end of speech had not been handed over yet: cut off
    log.events[1] = (log.yields[j - 1] + 0.001, Stamped(StateChanged("thinking"), 0))
    assert _row(clip, log, EventBus(), intents).cut_off
    log.events = []  # nothing was ever said back: a timeout
    assert _row(clip, log, EventBus(), intents).timed_out


def test_stt_probe_passes_every_argument_the_pipeline_uses():
    class Recorder:
        def __init__(self):
            self.calls = []

        def transcribe(self, pcm, biased=True):
            self.calls.append((len(pcm), biased))
            return "text"

    stt = Recorder()
    probe = SttProbe(stt)
    assert stt.transcribe(b"\0" * 3200) == "text"
    assert stt.transcribe(b"\0" * 3200, False) == "text"  # the unbiased re-transcription (two arguments)
    assert stt.calls == [(3200, True), (3200, False)]
    assert [round(c[3], 3) for c in probe.calls] == [0.1, 0.1]
    probe.restore()
    stt.transcribe(b"\0" * 32)
    assert len(probe.calls) == 2  # no longer wrapped


@pytest.mark.slow
def test_quick_bench_json():
    args = [sys.executable, "-m", "voice_agent.cli", "bench", "--quick", "--json"]
    if not HAS_REFERENCE:
        args.append("--no-reference")
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[bench" in proc.stderr  # progress on stderr
    out = json.loads(proc.stdout)  # exactly one JSON object on stdout
    for key in ("e2e_p50_ms", "e2e_p95_ms", "reference_e2e_p50_ms", "ratio_to_reference", "wake_cpu_percent",
                "peak_rss_mib", "stt_p50_ms", "understand_p50_ms", "tts_first_audio_p50_ms", "machine", "rows",
                "timeouts", "cut_off"):
        assert key in out, key
    assert out["machine"]["cores"] >= 1 and out["machine"]["cpu"]
    assert len(out["rows"]) == out["commands"] == 2 * len(corpus.QUICK_COMMANDS) * len(corpus.QUICK_VOICES)
    assert out["answered"] >= 1 and out["woke"] >= 1
    assert out["timeouts"] == sum(r["timed_out"] for r in out["rows"]) >= out["commands"] - out["answered"]
    assert 0 < out["e2e_p50_ms"] <= out["e2e_p95_ms"] < 30000
    assert 0 < out["stt_p50_ms"] and 0 <= out["understand_p50_ms"] and 0 < out["tts_first_audio_p50_ms"]
    assert 0 < out["wake_cpu_percent"] < 200 and out["wake_window_s"] >= 8
    assert 100 < out["peak_rss_mib"] < 8192  # models are loaded: at least 100 MiB
    for row in out["rows"]:
        assert row["e2e_ms"] is None or row["e2e_ms"] > 0  # the reply never comes before the end of speech
    if HAS_REFERENCE:
        assert out["reference_e2e_p50_ms"] > 700 * 0.5  # endpointing alone waits for silence
        assert out["ratio_to_reference"] == pytest.approx(out["e2e_p50_ms"] / out["reference_e2e_p50_ms"], rel=0.01)
        assert len(out["reference_rows"]) == len(out["rows"])
        stt_rows = out["reference"]["stt_rows"]
        assert stt_rows[0]["beam_size"] == 1 and stt_rows[0]["initial_prompt"] is None
        assert stt_rows[1]["initial_prompt"] and all(r["prompt_e2e_ms"] for r in out["reference_rows"])
        assert any("kitchen" in r["transcript"].lower() for r in out["reference_rows"])
