"""Configuration: one TOML file validated into frozen dataclasses. Errors name the key, the file and the line.

Search order: `--config PATH`, `$VOICE_AGENT_CONFIG`, `~/.config/voice-agent/config.toml`,
`/etc/voice-agent/config.toml`, then the embedded default (a sample home)."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEVICE_KINDS = ("light", "switch", "lock", "cover", "thermostat")


@dataclass(frozen=True)
class ApplianceConfig:
    room: str = "living_room"
    """Room this appliance stands in; used in MQTT topics (`voice-agent/<room>/...`)."""
    name: str = "Voice Agent"
    """Display name in Home Assistant."""
    data_dir: str = ""
    """Where the audit log and state live. Empty: `$STATE_DIRECTORY`, else `~/.local/share/voice-agent`."""
    store_audio: bool = False
    """Keep recordings of utterances. Off by default: no audio is stored."""
    transcript_retention_days: int = 30
    """How long personal text (what was said, action arguments, results, answers) stays in the audit log; erased
    hourly while running. 0 = none of it is stored anywhere (and no opt-in below may send it out)."""
    journal_text: bool = False
    """With -v, print and log personal text even under systemd, i.e. into the journal (readable by the adm and
    systemd-journal groups, kept by journald's own retention). Off: the journal never holds what was said."""
    announcement_queue: int = 10
    """Announcements waiting to be spoken at most; the excess is dropped (urgent ones are kept first)."""


@dataclass(frozen=True)
class AudioConfig:
    input_device: str = ""
    """sounddevice input device name or index; empty = system default."""
    output_device: str = ""
    """sounddevice output device name or index; empty = system default."""
    gate_tail_ms: int = 300
    """The microphone stays gated this long after the appliance stops speaking."""
    barge_in: bool = False
    """Let the wake word or "stop" interrupt the appliance while it speaks."""
    follow_up_s: float = 0.0
    """After a reply, listen this many seconds for a follow-up without the wake word (0 = off)."""
    device_retry_s: float = 2.0
    """Wait between attempts to reopen a missing or unplugged audio device."""


@dataclass(frozen=True)
class WakeConfig:
    model: str = "hey_jarvis"
    """openWakeWord model: hey_jarvis, alexa, hey_mycroft, hey_rhasspy, okay_nabu."""
    threshold: float = 0.5
    """Detection probability threshold (0..1)."""
    enabled: bool = True
    """Require the wake word before a command."""


@dataclass(frozen=True)
class VadConfig:
    engine: str = "silero"
    """Voice activity detector: silero (default, chosen by measurement) or webrtc."""
    aggressiveness: int = 2
    """webrtcvad aggressiveness 0..3 (3 filters the most non-speech)."""
    end_silence_ms: int = 300
    """Silence that ends an utterance."""
    pre_roll_ms: int = 300
    """Audio kept from before speech was detected, so the first syllable is not lost."""
    early_pause_ms: int = 150
    """Start transcribing at a pause this long; the result is kept if the user stays silent."""
    no_speech_timeout_s: float = 5.0
    """Give up listening when nobody speaks this long after the wake word."""
    max_utterance_s: float = 15.0
    """Cut an utterance that runs this long."""


@dataclass(frozen=True)
class SttConfig:
    model: str = "tiny.en"
    """Whisper model: tiny.en (bundled), base or small (install with `voice-agent models install`)."""
    beam_size: int = 1
    """Beam size; 1 is greedy and fastest."""
    threads: int = 2
    """CPU threads for CTranslate2."""
    language: str = "en"
    """Spoken language."""


@dataclass(frozen=True)
class TtsConfig:
    voice: str = "en_US-joe-medium"
    """Piper voice (bundled: en_US-joe-medium)."""
    length_scale: float = 1.0
    """Speaking rate: larger is slower."""


@dataclass(frozen=True)
class LlmConfig:
    base_url: str = "http://127.0.0.1:8000/v1"
    """OpenAI-compatible API base URL (vLLM, llama.cpp server)."""
    model: str = "default"
    """Model name sent in requests."""
    api_key: str = ""
    """Optional bearer token (`vllm serve --api-key`)."""
    connect_timeout_s: float = 2.0
    """Give up connecting after this long."""
    timeout_s: float = 20.0
    """Give up on a response (first token or any gap between tokens) after this long."""
    max_tokens: int = 256
    """Upper bound on generated tokens per reply."""
    temperature: float = 0.2
    """Sampling temperature."""
    max_tool_rounds: int = 3
    """How many rounds of tool calls one request may take."""
    system_prompt: str = ""
    """Extra instructions appended to the built-in system prompt."""


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = True
    """Connect to a broker at all."""
    host: str = "127.0.0.1"
    """Broker host."""
    port: int = 1883
    """Broker port (8883 for TLS by convention)."""
    username: str = ""
    """Broker user name."""
    password: str = ""
    """Broker password."""
    tls: bool = False
    """Connect with TLS."""
    ca_file: str = ""
    """CA certificate for TLS; empty = system store."""
    client_id: str = ""
    """MQTT client id; empty = voice-agent-<room>."""
    topic_prefix: str = "voice-agent"
    """Prefix of the appliance's own topics."""
    announce_topic: str = ""
    """Topic for announcements; empty = <prefix>/<room>/announce."""
    discovery_prefix: str = "homeassistant"
    """Home Assistant MQTT discovery prefix; empty disables discovery."""
    max_payload_bytes: int = 4096
    """Announcements larger than this are dropped."""
    keepalive_s: int = 30
    """MQTT keepalive."""
    reconnect_min_s: float = 1.0
    """First wait before reconnecting to a lost broker; doubles up to `reconnect_max_s`."""
    reconnect_max_s: float = 30.0
    """Longest wait between reconnection attempts."""
    outbox_limit: int = 10000
    """Messages kept while the broker is unreachable (the oldest are dropped beyond this)."""
    protocol: str = "5"
    """MQTT protocol version: "5" (tells the broker our maximum packet size, so oversized messages are never sent to
    us) or "3.1.1" (for brokers without MQTT 5; then only the broker's own `message_size_limit` protects us)."""
    announce_burst: int = 3
    """Announcements accepted at once from one announce topic before the rate limit applies."""
    announce_per_minute: float = 6.0
    """Sustained announcements per minute accepted per announce topic (0 = no limit). The excess is dropped."""
    event_feed: bool = True
    """Publish events (types, states, timings; see feed_*) on `<prefix>/<room>/event`. The state topic stays."""
    feed_transcripts: bool = False
    """Put what people said (transcripts) on the event topic. Risk: every client allowed to subscribe, and Home
    Assistant's recorder, gets every word said to the appliance."""
    feed_arguments: bool = False
    """Put action arguments (message texts, recipients, amounts), risk reasons and cancel reasons on the event topic."""
    feed_results: bool = False
    """Put action results (mail bodies, MCP tool output) and error messages on the event topic."""
    feed_replies: bool = False
    """Put what the appliance said (replies, confirmation prompts, announcement texts) on the event topic."""


@dataclass(frozen=True)
class SafetyConfig:
    money_threshold: float = 50.0
    """Spending above this (in the home currency) needs confirmation."""
    household: list[str] = field(default_factory=list)
    """Names of household members (messages to them are not external)."""
    trusted_contacts: list[str] = field(default_factory=list)
    """Contacts the user trusts (names or addresses)."""
    confirm_timeout_s: float = 8.0
    """How long to wait for a spoken yes."""
    pin: str = ""
    """Optional spoken PIN for the highest tier (locks, alarm, payments)."""
    overrides: dict[str, str] = field(default_factory=dict)
    """Per-tool decision override: tool name -> allow | confirm | deny."""


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    """Spoken name, e.g. "kitchen light"."""
    kind: str
    """light | switch | lock | cover | thermostat."""
    topic: str
    """zigbee2mqtt-style base topic; commands go to `<topic>/set` as JSON."""
    room: str = ""
    """Room (area) the device is in."""
    aliases: list[str] = field(default_factory=list)
    """Other spoken names."""


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    """Label used in logs and tool names."""
    command: str
    """Program that speaks MCP over stdio."""
    args: list[str] = field(default_factory=list)
    """Its arguments."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment."""
    start_timeout_s: float = 30.0
    """Give up on a server that does not finish its handshake within this time."""
    call_timeout_s: float = 60.0
    """Give up on a tool call after this long."""


@dataclass(frozen=True)
class Config:
    appliance: ApplianceConfig = field(default_factory=ApplianceConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    wake: WakeConfig = field(default_factory=WakeConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    stt: SttConfig = field(default_factory=SttConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    devices: list[DeviceConfig] = field(default_factory=list)
    mcp_servers: list[McpServerConfig] = field(default_factory=list)
    source: str = "<embedded default>"
    """Where this configuration was read from."""

    def replace(self, **sections: Any) -> "Config":
        return dataclasses.replace(self, **sections)

    @property
    def data_dir(self) -> Path:
        if self.appliance.data_dir:
            return Path(self.appliance.data_dir).expanduser()
        if os.environ.get("STATE_DIRECTORY"):
            return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "voice-agent"


def _line_of(text: str, key: str) -> int | None:
    leaf = key.split(".")[-1].split("[")[0]
    for n, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*{re.escape(leaf)}\s*=", line) or line.strip() in (f"[{leaf}]", f"[[{leaf}]]"):
            return n
    return None


class _Builder:
    def __init__(self, source: str, text: str) -> None:
        self.source, self.text = source, text

    def fail(self, key: str, problem: str) -> ConfigError:
        line = _line_of(self.text, key)
        where = f"{self.source}, line {line}" if line else self.source
        return ConfigError(f"{where}: `{key}` {problem}", code="config-invalid")

    def value(self, key: str, tp: Any, raw: Any) -> Any:
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            if not isinstance(raw, dict):
                raise self.fail(key, f"must be a table, got {type(raw).__name__}")
            return self.build(tp, raw, key)
        if origin is list:
            (inner,) = typing.get_args(tp)
            if not isinstance(raw, list):
                raise self.fail(key, f"must be a list, got {type(raw).__name__}")
            return [self.value(f"{key}[{i}]", inner, v) for i, v in enumerate(raw)]
        if origin is dict:
            _, inner = typing.get_args(tp)
            if not isinstance(raw, dict):
                raise self.fail(key, f"must be a table, got {type(raw).__name__}")
            return {str(k): self.value(f"{key}.{k}", inner, v) for k, v in raw.items()}
        if tp is float and isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
        if tp in (str, int, float, bool):
            if type(raw) is not tp:
                raise self.fail(key, f"must be {tp.__name__}, got {type(raw).__name__} {raw!r}")
            return raw
        raise self.fail(key, f"has unsupported type {tp}")

    def build(self, cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, val in raw.items():
            full = f"{prefix}.{key}" if prefix else key
            if key not in fields or key == "source":
                known = ", ".join(sorted(k for k in fields if k != "source"))
                raise self.fail(full, f"is not a known setting (known here: {known})")
            kwargs[key] = self.value(full, hints[key], val)
        for name, f in fields.items():
            no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if no_default and name not in kwargs:
                raise self.fail(f"{prefix}.{name}" if prefix else name, "is required")
        return cls(**kwargs)


def _check(cfg: Config, b: _Builder) -> None:
    for i, d in enumerate(cfg.devices):
        if d.kind not in DEVICE_KINDS:
            raise b.fail(f"devices[{i}].kind", f"must be one of {', '.join(DEVICE_KINDS)}, got {d.kind!r}")
        if not d.name.strip() or not d.topic.strip():
            raise b.fail(f"devices[{i}].name", "and `topic` must not be empty")
    names = [n.lower() for d in cfg.devices for n in (d.name, *d.aliases)]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise b.fail("devices", f"has duplicate names: {', '.join(sorted(dup))}")
    for key, lo, hi, val in (
        ("wake.threshold", 0.0, 1.0, cfg.wake.threshold),
        ("vad.aggressiveness", 0, 3, cfg.vad.aggressiveness),
        ("vad.end_silence_ms", 60, 5000, cfg.vad.end_silence_ms),
        ("vad.pre_roll_ms", 0, 2000, cfg.vad.pre_roll_ms),
        ("mqtt.port", 1, 65535, cfg.mqtt.port),
        ("mqtt.max_payload_bytes", 16, 1 << 20, cfg.mqtt.max_payload_bytes),
        # durations, counts and rates that would misbehave at run time (a 0 s retry is a busy loop, a negative
        # keepalive crashes the MQTT client, a 0 timeout fails every request, a 0 beam decodes nothing)
        ("audio.gate_tail_ms", 0, 10_000, cfg.audio.gate_tail_ms),
        ("audio.follow_up_s", 0, 120, cfg.audio.follow_up_s),
        ("audio.device_retry_s", 0.05, 3600, cfg.audio.device_retry_s),
        ("vad.early_pause_ms", 0, 5000, cfg.vad.early_pause_ms),
        ("vad.no_speech_timeout_s", 0.1, 600, cfg.vad.no_speech_timeout_s),
        ("vad.max_utterance_s", 0.5, 600, cfg.vad.max_utterance_s),
        ("stt.beam_size", 1, 20, cfg.stt.beam_size),
        ("stt.threads", 1, 256, cfg.stt.threads),
        ("tts.length_scale", 0.1, 10, cfg.tts.length_scale),
        ("llm.connect_timeout_s", 0.01, 3600, cfg.llm.connect_timeout_s),
        ("llm.timeout_s", 0.01, 3600, cfg.llm.timeout_s),
        ("llm.max_tokens", 1, 1 << 20, cfg.llm.max_tokens),
        ("llm.temperature", 0, 10, cfg.llm.temperature),
        ("llm.max_tool_rounds", 0, 50, cfg.llm.max_tool_rounds),
        ("mqtt.keepalive_s", 1, 65535, cfg.mqtt.keepalive_s),
        ("mqtt.reconnect_min_s", 0.01, 3600, cfg.mqtt.reconnect_min_s),
        ("mqtt.reconnect_max_s", cfg.mqtt.reconnect_min_s, 86400, cfg.mqtt.reconnect_max_s),
        ("mqtt.outbox_limit", 1, 10_000_000, cfg.mqtt.outbox_limit),
        ("mqtt.announce_burst", 1, 1000, cfg.mqtt.announce_burst),
        ("mqtt.announce_per_minute", 0, 6000, cfg.mqtt.announce_per_minute),
        ("appliance.announcement_queue", 1, 10_000, cfg.appliance.announcement_queue),
        ("safety.money_threshold", 0, 1e12, cfg.safety.money_threshold),
        ("safety.confirm_timeout_s", 0.5, 600, cfg.safety.confirm_timeout_s),
        ("appliance.transcript_retention_days", 0, 36500, cfg.appliance.transcript_retention_days),
        *((f"mcp_servers[{i}].start_timeout_s", 0.1, 3600, m.start_timeout_s) for i, m in enumerate(cfg.mcp_servers)),
        *((f"mcp_servers[{i}].call_timeout_s", 0.1, 86400, m.call_timeout_s) for i, m in enumerate(cfg.mcp_servers)),
    ):
        if not lo <= val <= hi:
            raise b.fail(key, f"must be between {lo} and {hi}, got {val}")
    if cfg.mqtt.protocol not in ("5", "3.1.1"):
        raise b.fail("mqtt.protocol", f'must be "5" or "3.1.1", got {cfg.mqtt.protocol!r}')
    if cfg.appliance.transcript_retention_days == 0:
        opted = [f"mqtt.{k}" for k in ("feed_transcripts", "feed_arguments", "feed_results", "feed_replies")
                 if getattr(cfg.mqtt, k)] + (["appliance.journal_text"] if cfg.appliance.journal_text else [])
        if opted:
            raise b.fail(opted[0], "sends personal text out, but `appliance.transcript_retention_days = 0` promises "
                                   "that none is stored anywhere; turn one of them off")
    if cfg.vad.engine not in ("silero", "webrtc"):
        raise b.fail("vad.engine", f"must be silero or webrtc, got {cfg.vad.engine!r}")
    if cfg.stt.model not in ("tiny.en", "base", "small"):
        raise b.fail("stt.model", f"must be tiny.en, base or small, got {cfg.stt.model!r}")
    for tool, decision in cfg.safety.overrides.items():
        if decision not in ("allow", "confirm", "deny"):
            raise b.fail(f"safety.overrides.{tool}", f"must be allow, confirm or deny, got {decision!r}")


def parse_config(text: str, source: str) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})", code="config-syntax") from exc
    b = _Builder(source, text)
    cfg = b.build(Config, raw)
    cfg = dataclasses.replace(cfg, source=source)
    _check(cfg, b)
    return cfg


def default_text() -> str:
    return resources.files("voice_agent").joinpath("default_config.toml").read_text()


def candidate_paths() -> list[Path]:
    out = []
    if os.environ.get("VOICE_AGENT_CONFIG"):
        out.append(Path(os.environ["VOICE_AGENT_CONFIG"]))
    out.append(Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "voice-agent/config.toml")
    out.append(Path("/etc/voice-agent/config.toml"))
    return out


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate the configuration. Raises ConfigError naming the key, the file and the line."""
    if path is not None:
        p = Path(path)
        try:
            return parse_config(p.read_text(encoding="utf-8"), str(p))
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read config ({exc.strerror})", code="config-unreadable") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p}: not UTF-8 text", code="config-syntax") from exc
    for p in candidate_paths():
        if p.is_file():
            return load_config(p)
    return parse_config(default_text(), "<embedded default>")

