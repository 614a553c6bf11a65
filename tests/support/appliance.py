"""Run the whole in-process appliance (build_app) on spoken clips with hooks the fault, load and injection tests
need and `conftest.converse` does not offer: a broker that may be down at start, a callback between turns (kill a
server, fill a disk), a speaker that only counts samples (so the test does not hoard audio while RSS is measured),
and the App kept open for announcements.

Nothing here replaces a component of the appliance: models, executor, MQTT link, LLM client and MCP servers are
the real ones. `SilentVoice` is the one exception, used only where a test says it checks queueing without Piper."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voice_agent.audio import AudioClip
from voice_agent.config import Config, McpServerConfig
from voice_agent.tts import SpeechAudio

HOME_MCP_SERVER = Path(__file__).with_name("home_mcp_server.py")


class CountingSpeaker:
    """A Speaker (play/drain/stop) that keeps only the number of samples it was given."""

    def __init__(self, rate: int = 22050) -> None:
        self.rate = rate
        self.samples = 0
        self.plays = 0

    async def play(self, pcm: np.ndarray, rate: int) -> None:
        self.samples += int(len(pcm) * self.rate / rate)
        self.plays += 1

    async def drain(self) -> None:
        return None

    def stop(self) -> None:
        return None


class SilentVoice:
    """Stands in for Piper ONLY in the TTS-free queueing check: 10 ms of silence per text, at once."""

    rate = 22050

    def stream(self, text: str) -> Iterator[SpeechAudio]:
        if text.strip():
            yield SpeechAudio(np.zeros(self.rate // 100, np.int16), self.rate, 0.0)

    def synthesize(self, text: str) -> np.ndarray:
        return np.zeros(self.rate // 100, np.int16)

    def warm(self) -> None:
        return None


@dataclass
class Run:
    events: list[dict] = field(default_factory=list)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def tool_calls(self) -> list[tuple[str, dict]]:
        return [(e["name"], e["arguments"]) for e in self.of("tool_call")]

    def replies(self) -> str:
        return " ".join(e["text"] for e in self.of("reply"))

    def error_codes(self) -> list[str]:
        return [e["code"] for e in self.of("error")]

    def turns(self) -> list[list[dict]]:
        """Events split at each turn_end (the turn_end closes its turn); events after the last one are dropped."""
        out: list[list[dict]] = [[]]
        for e in self.events:
            out[-1].append(e)
            if e["type"] == "turn_end":
                out.append([])
        return [t for t in out if t and t[-1]["type"] == "turn_end"]


Hook = Callable[[Any, int], Awaitable[None] | None]


async def run_clips(cfg: Config, engines, clips: Sequence[AudioClip], *, wake: bool = False, fast: bool = True,
                    use_mqtt: bool = True, use_llm: bool = True, use_mcp: bool = True, speaker=None,
                    wait_mqtt_s: float | None = 20.0, setup: Hook | None = None, between: Hook | None = None,
                    after: Hook | None = None, run: Run | None = None) -> Run:
    """Feed `clips` (turns of one conversation) through a freshly built appliance. `setup(app, 0)` runs once the
    app is built, `between(app, n)` after turn n (1-based) is finished and before the next clip, `after(app, n)`
    once all clips are done but before the app closes."""
    from voice_agent.app import build_app
    from voice_agent.audio_io import CollectingSpeaker, FileSource

    run = run if run is not None else Run()
    speaker = speaker or CollectingSpeaker(rate=engines.tts.rate)
    if engines.wake is not None:
        engines.wake.reset(full=True)
    app = await build_app(cfg, engines, speaker, wake_enabled=wake, use_mqtt=use_mqtt, use_llm=use_llm,
                          use_mcp=use_mcp)
    app.bus.subscribe(lambda s: run.events.append(s.to_dict()))
    fed = 0

    async def ready() -> None:
        nonlocal fed
        await app.appliance.wait_ready()
        fed += 1
        if between is not None and fed < len(clips):
            res = between(app, fed)
            if asyncio.iscoroutine(res):
                await res

    try:
        if app.mqtt is not None and wait_mqtt_s:
            assert app.mqtt.wait_connected(wait_mqtt_s), "appliance did not connect to the test broker"
        if setup is not None:
            res = setup(app, 0)
            if asyncio.iscoroutine(res):
                await res
        await app.appliance.run(FileSource(clips, fast=fast, ready=ready))
        await app.appliance.speech.wait_idle()
        if after is not None:
            res = after(app, len(clips))
            if asyncio.iscoroutine(res):
                await res
    finally:
        await app.aclose()
    return run


def converse_clips(cfg: Config, engines, clips: Sequence[AudioClip], **kw: Any) -> Run:
    return asyncio.run(run_clips(cfg, engines, clips, **kw))


def with_home_mcp(cfg: Config, ledger: Path) -> Config:
    """`cfg` with the home MCP test server (shop, bank, mail, files, access) whose effects go to `ledger`."""
    server = McpServerConfig(name="home", command=sys.executable, args=[str(HOME_MCP_SERVER)],
                             env={"HOME_MCP_LEDGER": str(ledger), "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    return dataclasses.replace(cfg, mcp_servers=[server])


def ledger_entries(ledger: Path) -> list[dict]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]


def with_llm(cfg: Config, base_url: str, **llm: Any) -> Config:
    return dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, base_url=base_url, **llm))


def rss_mb() -> float:
    """Resident set size of this process now (not the peak), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")
