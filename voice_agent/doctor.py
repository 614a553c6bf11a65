"""`voice-agent doctor`: check everything the appliance needs and print a fix for each failure."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import asdict, dataclass

from .config import Config
from .errors import VoiceAgentError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _check_models(cfg: Config) -> list[Check]:
    from .models import STT_MODELS, verify
    from .tts import VOICES

    out = []
    for label, name in (("speech recognition", STT_MODELS[cfg.stt.model]), ("voice", VOICES.get(cfg.tts.voice, "")),
                        ("wake word", "openwakeword"), ("sentence embeddings", "minilm"),
                        ("embedding tokenizer", "minilm-tokenizer")):
        try:
            n = len(verify(name))
            out.append(Check(f"model: {label} ({name})", True, f"{n} files verified"))
        except (VoiceAgentError, KeyError) as exc:
            out.append(Check(f"model: {label} ({name})", False, str(getattr(exc, "message", exc)),
                             getattr(exc, "fix", "") or "make setup"))
    return out


def _check_audio(cfg: Config) -> list[Check]:
    from .live import has_device

    out = []
    for kind, dev, key in (("input", cfg.audio.input_device, "audio.input_device"),
                           ("output", cfg.audio.output_device, "audio.output_device")):
        ok, detail = has_device(kind, dev)
        out.append(Check(f"audio {kind}", ok, detail, "" if ok else
                         f"connect a {'microphone' if kind == 'input' else 'speaker'}, check `aplay -l`/`arecord -l`, "
                         f"or set {key} in the config"))
    return out


def _check_broker(cfg: Config) -> Check:
    if not cfg.mqtt.enabled:
        return Check("mqtt broker", True, "disabled in config")
    try:
        with socket.create_connection((cfg.mqtt.host, cfg.mqtt.port), timeout=2):
            return Check("mqtt broker", True, f"{cfg.mqtt.host}:{cfg.mqtt.port} accepts connections")
    except OSError as exc:
        return Check("mqtt broker", False, f"{cfg.mqtt.host}:{cfg.mqtt.port}: {exc.strerror or exc}",
                     "start it (`sudo systemctl start mosquitto`) or set mqtt.host/mqtt.port")


def _check_llm(cfg: Config) -> Check:
    from .llm import LlmClient

    async def probe() -> tuple[bool, str]:
        client = LlmClient(cfg.llm)
        try:
            return await client.health()
        finally:
            await client.aclose()

    ok, detail = asyncio.run(probe())
    return Check("language model", ok, f"{cfg.llm.base_url}: {detail}", "" if ok else
                 "start vLLM (`sudo systemctl start vllm`, see README) or set llm.base_url; "
                 "local commands keep working without it")


def run_doctor(cfg: Config, as_json: bool = False) -> int:
    checks = [Check("config", True, cfg.source), *_check_models(cfg), *_check_audio(cfg), _check_broker(cfg),
              _check_llm(cfg)]
    if as_json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for c in checks:
            print(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<38} {c.detail}")
            if c.fix:
                print(f"      fix: {c.fix}")
    return 0 if all(c.ok for c in checks) else 1
