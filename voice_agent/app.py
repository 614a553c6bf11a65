"""The one place where the appliance is wired: models, tools, safety, audit, MQTT, LLM and the pipeline.

`build_household` makes what every conversation in the home shares (tools, executor, audit, MQTT, LLM client, MCP);
`build_app` puts one room's appliance (microphone, speaker, its own conversation) on top of it."""

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
from .conversation import Conversation, Say
from .errors import AuditError, ToolError
from .events import EventBus, StateChanged, Stamped
from .executor import Executor
from .intents import LocalIntents
from .pipeline import Appliance, Engines
from .safety import RiskClassifier
from .session import Session
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
class Household:
    """Everything that acts, shared by every conversation in the home: tools, the executor (classifier and
    confirmation), the audit log, MQTT, the LLM client and MCP servers. Conversations come from `conversation()`."""

    cfg: Config
    bus: EventBus
    intents: LocalIntents
    registry: ToolRegistry
    executor: Executor
    audit: AuditLog | None
    mqtt: object | None = None
    llm_client: object | None = None
    mcp: object | None = None
    announce: Callable[[AnnouncementRequest], None] = lambda req: log.info("no speaker for announcement %r", req.text)
    """Where announcements (MQTT, timers, the announce tool) are spoken; set by the appliance that owns a speaker."""

    def conversation(self, session: Session, say: Say = lambda text: None) -> Conversation:
        """A new conversation (with its own LLM history) acting on behalf of `session`."""
        conv = Conversation(session, self.intents, self.executor, self.bus, say, audit=self.audit)
        if self.llm_client is not None:
            from .agent import LlmAgent

            conv.agent = LlmAgent(self.llm_client, self.registry.specs, conv.execute_llm_call,
                                  system_prompt=self.cfg.llm.system_prompt, max_rounds=self.cfg.llm.max_tool_rounds)
        return conv

    def start(self) -> None:
        """Connect to the broker (after whoever speaks announcements has attached itself)."""
        if self.mqtt is not None:
            self.mqtt.start()

    async def aclose(self) -> None:
        if self.mcp is not None:
            await self.mcp.aclose()
        if self.llm_client is not None:
            await self.llm_client.aclose()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.audit is not None:
            self.audit.close()


@dataclass
class App:
    """One room's appliance (microphone, speaker, its conversation) on top of the household."""

    household: Household
    appliance: Appliance

    cfg = property(lambda self: self.household.cfg)
    bus = property(lambda self: self.household.bus)
    executor = property(lambda self: self.household.executor)
    registry = property(lambda self: self.household.registry)
    audit = property(lambda self: self.household.audit)
    mqtt = property(lambda self: self.household.mqtt)
    llm_client = property(lambda self: self.household.llm_client)
    mcp = property(lambda self: self.household.mcp)

    async def aclose(self) -> None:
        await self.appliance.stop()
        await self.household.aclose()


def open_audit(cfg: Config) -> AuditLog | None:
    try:
        audit = AuditLog(cfg.data_dir / "audit.db", store_transcripts=cfg.appliance.transcript_retention_days > 0)
        audit.prune(cfg.appliance.transcript_retention_days)
        return audit
    except AuditError as exc:
        log.error("%s: actions that need confirmation will be refused until it is fixed", exc)
        return None


async def build_household(cfg: Config, intents: LocalIntents, *, bus: EventBus | None = None,
                          use_mqtt: bool = True, use_llm: bool = True, use_mcp: bool = True,
                          audit: AuditLog | None | bool = True) -> Household:
    """Tools, executor, audit, MQTT link (not yet started), MCP servers (started) and the LLM client."""
    bus = bus or EventBus()
    loop = asyncio.get_running_loop()
    registry = ToolRegistry()
    audit_log = open_audit(cfg) if audit is True else (audit or None)
    executor = Executor(registry, RiskClassifier(cfg.safety), audit_log, bus, cfg.safety)
    home = Household(cfg, bus, intents, registry, executor, audit_log)

    if use_mqtt and cfg.mqtt.enabled:
        from .mqtt import MqttLink

        home.mqtt = MqttLink(cfg.mqtt, cfg.appliance,
                             on_announcement=lambda req: loop.call_soon_threadsafe(home.announce, req),
                             outbox_limit=cfg.mqtt.outbox_limit, reconnect_min_s=cfg.mqtt.reconnect_min_s,
                             reconnect_max_s=cfg.mqtt.reconnect_max_s)

    def publish(topic: str, payload: str) -> None:
        if home.mqtt is None:
            raise ToolError("MQTT is turned off in the config, so I can't reach that device", code="tool-mqtt-disabled")
        home.mqtt.publish(topic, payload)

    def speak(text: str) -> None:
        home.announce(AnnouncementRequest(text))

    timers = TimerService(on_ring=speak)
    for tool in [*device_tools(cfg.devices, publish), StartTimer(timers), CancelTimer(timers), TimerStatus(timers),
                 AnnounceTool(speak)]:
        registry.register(tool)

    if use_mcp and cfg.mcp_servers:
        from .tools.mcp_tools import McpToolbox

        home.mcp = McpToolbox(cfg.mcp_servers, reserved_names=[t.name for t in registry.specs()],
                              start_timeout_s=max(m.start_timeout_s for m in cfg.mcp_servers),
                              call_timeout_s=max(m.call_timeout_s for m in cfg.mcp_servers))
        for tool in await home.mcp.start():
            registry.register(tool)

    if use_llm:
        from .llm import LlmClient

        home.llm_client = LlmClient(cfg.llm)

    if home.mqtt is not None:
        mqtt = home.mqtt

        def to_mqtt(s: Stamped) -> None:
            if isinstance(s.event, StateChanged):
                mqtt.publish_state(s.event.state)
            mqtt.publish_event(s.to_dict())

        bus.subscribe(to_mqtt)
    return home


async def build_app(cfg: Config, engines: Engines, speaker: Speaker, *, bus: EventBus | None = None,
                    wake_enabled: bool = True, use_mqtt: bool = True, use_llm: bool = True, use_mcp: bool = True,
                    audit: AuditLog | None | bool = True) -> App:
    """The household and this room's appliance, started."""
    home = await build_household(cfg, engines.intents, bus=bus, use_mqtt=use_mqtt, use_llm=use_llm,
                                 use_mcp=use_mcp, audit=audit)
    conversation = home.conversation(Session(room=cfg.appliance.room, name="local"))
    appliance = Appliance(cfg, engines, speaker, home.bus, conversation, wake_enabled=wake_enabled)
    home.announce = appliance.announce
    home.start()
    await appliance.start()
    return App(home, appliance)


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
