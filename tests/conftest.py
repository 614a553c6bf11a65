"""Shared fixtures: real models (loaded once), a real mosquitto, configs pointing at them, and a helper that runs
spoken turns through the appliance exactly as the microphone would (FileSource -> Appliance)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from voice_agent.config import Config, LlmConfig, load_config  # noqa: E402


@pytest.fixture(scope="session")
def engines():
    from voice_agent.app import load_engines

    return load_engines(load_config(Path(__file__).parent / "data" / "home.toml"), wake=True)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    from support.broker import Broker

    with Broker(tmp_path_factory.mktemp("broker")) as b:
        yield b


@pytest.fixture
def cfg(tmp_path, broker) -> Config:
    """The sample home, with its data in a temp dir, MQTT on the test broker and no LLM reachable."""
    base = load_config(Path(__file__).parent / "data" / "home.toml")
    return dataclasses.replace(
        base,
        appliance=dataclasses.replace(base.appliance, data_dir=str(tmp_path / "data")),
        mqtt=broker.mqtt_config(client_id=f"va-test-{os.getpid()}-{id(tmp_path):x}"),
        llm=LlmConfig(base_url="http://127.0.0.1:9/v1", connect_timeout_s=1, timeout_s=5),
    )


@dataclasses.dataclass
class Conversation:
    events: list[dict]
    audio: object  # numpy int16 of everything the appliance said
    rate: int

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def tool_calls(self) -> list[tuple[str, dict]]:
        return [(e["name"], e["arguments"]) for e in self.of("tool_call")]

    def replies(self) -> str:
        return " ".join(e["text"] for e in self.of("reply"))


def converse(cfg: Config, engines, clips, *, wake: bool = True, fast: bool = True, use_mqtt: bool = True,
             use_llm: bool = True, realtime_speaker: bool = False, setup=None) -> Conversation:
    """Run clips (turns of one conversation) through the full appliance; return its events and speech."""
    from voice_agent.app import build_app
    from voice_agent.audio_io import CollectingSpeaker, FileSource

    async def main() -> Conversation:
        speaker = CollectingSpeaker(realtime=realtime_speaker, rate=engines.tts.rate)
        if engines.wake is not None:
            engines.wake.reset(full=True)  # a new, unrelated audio stream
        app = await build_app(cfg, engines, speaker, wake_enabled=wake, use_mqtt=use_mqtt, use_llm=use_llm)
        events: list[dict] = []
        app.bus.subscribe(lambda s: events.append(s.to_dict()))
        try:
            if app.mqtt is not None:
                assert app.mqtt.wait_connected(20), "appliance did not connect to the test broker"
            if setup is not None:
                await setup(app)
            await app.appliance.run(FileSource(clips, fast=fast, ready=app.appliance.wait_ready))
            await app.appliance.speech.wait_idle()
        finally:
            await app.aclose()
        return Conversation(events, speaker.audio(), speaker.rate)

    return asyncio.run(main())


@pytest.fixture
def run_turns():
    return converse
