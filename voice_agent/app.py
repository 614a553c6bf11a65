"""The one place where the appliance is wired: models, tools, safety, audit, MQTT, LLM and the pipeline."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .announcements import AnnouncementRequest
from .audio_io import Speaker
from .audit import AuditLog
from .config import Config
from .errors import AuditError, ToolError
from .events import EventBus, StateChanged, Stamped
from .executor import Executor
from .intents import LocalIntents
from .pipeline import Appliance, Engines
from .safety import RiskClassifier
from .stt import Transcriber
from .tools.announce import AnnounceTool
from .tools.base import ToolRegistry
from .tools.devices import device_tools
from .tools.timers import CancelTimer, StartTimer, TimerService, TimerStatus
from .tts import Synthesizer
from .vad import make_vad
from .wake import WakeWordDetector

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def load_engines(cfg: Config, *, wake: bool = True, progress: Progress = lambda s: None, warm: bool = True) -> Engines:
    """Load (and warm) every model. Raises ModelError naming the model and the fix."""
    intents = LocalIntents(cfg.devices)
    t = time.perf_counter()
    progress(f"loading speech recognition (whisper {cfg.stt.model})")
    stt = Transcriber(cfg.stt, intents.stt_prompt())
    progress(f"loading voice ({cfg.tts.voice})")
    tts = Synthesizer(cfg.tts)
    detector = None
    if wake:
        progress(f"loading wake word ({cfg.wake.model})")
        detector = WakeWordDetector(cfg.wake.model, cfg.wake.threshold)
    if warm:
        progress("warming up models")
        stt.warm()
        tts.warm()
        intents.understand("turn on the light")  # hassil compiles its templates on first use
    progress(f"loading voice activity detection ({cfg.vad.engine})")
    vad = make_vad(cfg.vad)
    progress(f"models ready in {time.perf_counter() - t:.1f} s")
    return Engines(stt=stt, tts=tts, intents=intents, wake=detector, vad=vad)


@dataclass
class App:
    cfg: Config
    bus: EventBus
    appliance: Appliance
    executor: Executor
    registry: ToolRegistry
    audit: AuditLog | None
    mqtt: object | None = None
    llm_client: object | None = None
    mcp: object | None = None

    async def aclose(self) -> None:
        await self.appliance.stop()
        if self.mcp is not None:
            await self.mcp.aclose()
        if self.llm_client is not None:
            await self.llm_client.aclose()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.audit is not None:
            self.audit.close()


def open_audit(cfg: Config) -> AuditLog | None:
    try:
        audit = AuditLog(cfg.data_dir / "audit.db", store_transcripts=cfg.appliance.transcript_retention_days > 0)
        audit.prune(cfg.appliance.transcript_retention_days)
        return audit
    except AuditError as exc:
        log.error("%s: actions that need confirmation will be refused until it is fixed", exc)
        return None


async def build_app(cfg: Config, engines: Engines, speaker: Speaker, *, bus: EventBus | None = None,
                    wake_enabled: bool = True, use_mqtt: bool = True, use_llm: bool = True, use_mcp: bool = True,
                    audit: AuditLog | None | bool = True) -> App:
    bus = bus or EventBus()
    loop = asyncio.get_running_loop()
    registry = ToolRegistry()
    audit_log = open_audit(cfg) if audit is True else (audit or None)

    mqtt = None
    if use_mqtt and cfg.mqtt.enabled:
        from .mqtt import MqttLink

        mqtt = MqttLink(cfg.mqtt, cfg.appliance,
                        on_announcement=lambda req: loop.call_soon_threadsafe(app.appliance.announce, req),
                        outbox_limit=cfg.mqtt.outbox_limit, reconnect_min_s=cfg.mqtt.reconnect_min_s,
                        reconnect_max_s=cfg.mqtt.reconnect_max_s)

    def publish(topic: str, payload: str) -> None:
        if mqtt is None:
            raise ToolError("MQTT is turned off in the config, so I can't reach that device", code="tool-mqtt-disabled")
        mqtt.publish(topic, payload)

    executor = Executor(registry, RiskClassifier(cfg.safety), audit_log, bus, cfg.safety)
    appliance = Appliance(cfg, engines, speaker, bus, executor, agent=None, audit=audit_log, wake_enabled=wake_enabled)
    app = App(cfg, bus, appliance, executor, registry, audit_log, mqtt)

    def speak(text: str) -> None:
        appliance.announce(AnnouncementRequest(text))

    timers = TimerService(on_ring=speak)
    for tool in [*device_tools(cfg.devices, publish), StartTimer(timers), CancelTimer(timers), TimerStatus(timers),
                 AnnounceTool(speak)]:
        registry.register(tool)

    if use_mcp and cfg.mcp_servers:
        from .tools.mcp_tools import McpToolbox

        app.mcp = McpToolbox(cfg.mcp_servers, reserved_names=[t.name for t in registry.specs()],
                             start_timeout_s=max(m.start_timeout_s for m in cfg.mcp_servers),
                             call_timeout_s=max(m.call_timeout_s for m in cfg.mcp_servers))
        for tool in await app.mcp.start():
            registry.register(tool)

    if use_llm:
        from .agent import LlmAgent
        from .llm import LlmClient

        app.llm_client = LlmClient(cfg.llm)
        appliance.agent = LlmAgent(app.llm_client, registry.specs, appliance.execute_llm_call,
                                   system_prompt=cfg.llm.system_prompt, max_rounds=cfg.llm.max_tool_rounds)

    if mqtt is not None:
        def to_mqtt(s: Stamped) -> None:
            if isinstance(s.event, StateChanged):
                mqtt.publish_state(s.event.state)
            mqtt.publish_event(s.to_dict())

        bus.subscribe(to_mqtt)
        mqtt.start()
    await appliance.start()
    return app


def json_printer(stream) -> Callable[[Stamped], None]:
    """One JSON event per line (`--json`)."""
    def emit(s: Stamped) -> None:
        stream.write(json.dumps(s.to_dict()) + "\n")
        stream.flush()

    return emit


def human_printer(stream) -> Callable[[Stamped], None]:
    """One readable line per event: time, type, fields (state changes and TTS bookkeeping left out)."""
    def emit(s: Stamped) -> None:
        d = s.to_dict()
        kind, t = d.pop("type"), d.pop("t_ms")
        if kind in ("state", "tts_done"):
            return
        stream.write(f"{t / 1000:8.2f}s  {kind:<22} " + ", ".join(f"{k}={v!r}" for k, v in d.items()) + "\n")
        stream.flush()

    return emit
