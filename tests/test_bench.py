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

from voice_agent import bench_corpus as corpus
from voice_agent.bench_reference import HaSegmenter, endpoint_samples
from voice_agent.bench import update_readme, README_START, README_END

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
    result = {"machine": {"cpu": "Test CPU", "cores": 2, "system": "Linux", "python": "3.11"},
              "summary": {k: 1 for k in ("e2e_p50_ms", "e2e_p95_ms", "endpoint_p50_ms", "stt_p50_ms",
                                         "tts_first_audio_p50_ms", "intent_correct", "commands", "wake_cpu_percent",
                                         "peak_rss_mib", "ratio_to_reference")}}
    update_readme(result, readme)
    text = readme.read_text()
    assert text.startswith("# title\nintro\n") and text.endswith(f"{README_END}\nafter\n")
    assert "old table" not in text and "Test CPU" in text


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
                "peak_rss_mib", "stt_p50_ms", "understand_p50_ms", "tts_first_audio_p50_ms", "machine", "rows"):
        assert key in out, key
    assert out["machine"]["cores"] >= 1 and out["machine"]["cpu"]
    assert len(out["rows"]) == out["commands"] == 2 * len(corpus.QUICK_COMMANDS) * len(corpus.QUICK_VOICES)
    assert out["answered"] >= 1 and out["woke"] >= 1
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
        assert any("kitchen" in r["transcript"].lower() for r in out["reference_rows"])
