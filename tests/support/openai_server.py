"""A real OpenAI-compatible chat-completions server of the project's own, scripted by a JSON file.

It speaks the protocol the way vLLM does (`vllm serve MODEL --enable-auto-tool-choice --tool-call-parser hermes`):
`GET /v1/models`, `POST /v1/chat/completions` with and without `stream`, SSE `data: {...}` chunks of
`chat.completion.chunk` objects, `delta.tool_calls` carrying `index`, `id`, `type`, `function.name` first and then
`function.arguments` split over several chunks, `finish_reason` "tool_calls" or "stop", and a final `data: [DONE]`.
Bad requests are refused as vLLM refuses them: an HTTP 400/404 with `{"error": {"message", "type", "param", "code"}}`.

Run:  python -m tests.support.openai_server --script rules.json [--port 0] [--record requests.jsonl]
          [--model NAME] [--api-key KEY] [--no-auto-tool-choice] [--ttft S] [--tokens-per-s N] [--fault F]
Once listening it prints one line `LISTENING http://HOST:PORT/v1` on stdout.
With `--llamacpp-gguf FILE.gguf` it runs a real llama.cpp server (the `xllamacpp` wheel) instead of the script.

Script (JSON):
    {"model": "scripted-model",                      # served model name (--model overrides)
     "ttft_s": 0, "tokens_per_s": 0, "fault": null,  # server-wide defaults (the flags override them)
     "rules": [
        {"when_user": "kitchen light", "tool_calls": [{"name": "set_light", "arguments": {"on": false}}]},
        {"when_user": "weather", "reply": "It is sunny. It is 21.5 degrees."},
        {"when_tool": "", "tool_name": "set_light", "reply": "Done: {result}"}
     ],
     "fallback": "Sorry, I cannot help with that."}

A `when_user` rule matches (regex, case-insensitive) the last message when it is a user message; a `when_tool`
rule matches the content of the last message when it is a tool result (`tool_name`, optional, must equal the name
of the call it answers). The first matching rule wins. In a reply `{tool_result}` is replaced by the last tool
message's content and `{result}` by its `"result"` field. A tool call gives `arguments` (an object) or
`arguments_raw` (a string sent verbatim, e.g. invalid JSON); `reply_without_tools` is what a tool-calling rule
says when the request offers no tools (or `tool_choice` is "none").

Per rule or per server: `ttft_s` (delay before the first token), `tokens_per_s` (pacing), and `fault`, one of
    "http_500"         answer HTTP 500 with an error object
    "malformed_chunk"  one SSE chunk (after the tool call starts, or mid-text) is not valid JSON
    "truncate"         close the connection mid-stream (half the chunks sent, no [DONE])
    "stall"            send half the chunks, then go silent for `stall_s` (default 60 s)

Every request is appended to the `--record` JSONL file as {"method", "path", "authorization", "body"} before it is
answered, so a test can assert exactly what the client sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Self

from aiohttp import web

ROLES = {"system", "developer", "user", "assistant", "tool"}
FAULTS = {None, "http_500", "malformed_chunk", "truncate", "stall"}
MAX_MODEL_LEN = 8192


class RequestError(Exception):
    def __init__(self, message: str, status: int = 400, err_type: str = "BadRequestError", param: str | None = None):
        super().__init__(message)
        self.message, self.status, self.err_type, self.param = message, status, err_type, param


def error_response(message: str, status: int, err_type: str, param: str | None = None) -> web.Response:
    """vLLM's ErrorResponse shape."""
    body = {"error": {"message": message, "type": err_type, "param": param, "code": status}}
    return web.json_response(body, status=status)


# ----------------------------------------------------------------------------------------------------------- requests


def validate(body: Any, served_model: str, auto_tool_choice: bool) -> None:
    """The checks vLLM's ChatCompletionRequest and serving layer make, with vLLM's messages where it has them."""
    if not isinstance(body, dict):
        raise RequestError("Input should be a valid dictionary")
    model = body.get("model")
    if model is not None and model != served_model:
        raise RequestError(f"The model `{model}` does not exist.", 404, "NotFoundError", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: Field required (a non-empty list)", param="messages")
    call_ids: set[str] = set()
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise RequestError(f"messages[{i}]: role must be one of {sorted(ROLES)}", param="messages")
        content = msg.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise RequestError(f"messages[{i}].content must be a string or a list of parts", param="messages")
        if msg["role"] == "assistant":
            for tc in msg.get("tool_calls") or []:
                fn = tc.get("function") if isinstance(tc, dict) else None
                if (not isinstance(fn, dict) or not isinstance(tc.get("id"), str) or tc.get("type") != "function"
                        or not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str)):
                    raise RequestError(f"messages[{i}].tool_calls: each needs id, type 'function', "
                                       "function.name and function.arguments (a string)", param="messages")
                call_ids.add(tc["id"])
        elif msg["role"] == "tool":
            tcid = msg.get("tool_call_id")
            if not isinstance(tcid, str):
                raise RequestError(f"messages[{i}]: a tool message needs tool_call_id", param="messages")
            if tcid not in call_ids:
                raise RequestError(f"messages[{i}]: tool_call_id {tcid!r} answers no earlier assistant tool call",
                                   param="messages")
        elif content is None:
            raise RequestError(f"messages[{i}].content: Field required", param="messages")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise RequestError("tools: Input should be a valid list", param="tools")
        for t in tools:
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(fn, dict) or t.get("type") != "function" or not isinstance(fn.get("name"), str):
                raise RequestError("tools: each tool needs type 'function' and function.name", param="tools")
            if "parameters" in fn and not isinstance(fn["parameters"], dict):
                raise RequestError("tools: function.parameters must be an object", param="tools")
    choice = body.get("tool_choice")
    if choice is not None and choice != "none" and not tools:
        raise RequestError("When using `tool_choice`, `tools` must be set.", param="tool_choice")
    if tools and choice in (None, "auto") and not auto_tool_choice:
        raise RequestError('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
                           param="tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in {t["function"]["name"] for t in tools or []}:
            raise RequestError(f"Tool '{name}' has not been passed in `tools`.", param="tool_choice")
    elif choice not in (None, "none", "auto", "required"):
        raise RequestError("tool_choice must be 'none', 'auto', 'required' or a named function", param="tool_choice")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1 or max_tokens > MAX_MODEL_LEN):
        raise RequestError(f"max_tokens must be an integer between 1 and {MAX_MODEL_LEN} "
                           f"(this model's maximum context length is {MAX_MODEL_LEN} tokens)", param="max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, (int, float)) or temperature < 0):
        raise RequestError("temperature must be non-negative", param="temperature")
    if not isinstance(body.get("stream", False), bool):
        raise RequestError("stream: Input should be a valid boolean", param="stream")


# ----------------------------------------------------------------------------------------------------------- script


def text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def choose(script: dict, messages: list[dict]) -> dict:
    """The first rule matching the conversation's last message; the fallback reply otherwise."""
    last = messages[-1]
    tool_name = ""
    if last["role"] == "tool":
        for msg in reversed(messages):
            for tc in msg.get("tool_calls") or []:
                if tc["id"] == last["tool_call_id"]:
                    tool_name = tc["function"]["name"]
    for rule in script.get("rules", []):
        if last["role"] == "user" and "when_user" in rule:
            if re.search(rule["when_user"], text_of(last["content"]), re.IGNORECASE):
                return rule
        elif last["role"] == "tool" and "when_tool" in rule:
            if rule.get("tool_name", tool_name) == tool_name and re.search(
                    rule["when_tool"], text_of(last["content"]), re.IGNORECASE):
                return rule
    return {"reply": script.get("fallback", "I have no scripted answer for that.")}


def render(reply: str, messages: list[dict]) -> str:
    last = messages[-1]
    if last["role"] != "tool":
        return reply
    raw = text_of(last["content"])
    try:
        result = json.loads(raw).get("result", raw)
    except (ValueError, AttributeError):
        result = raw
    return reply.replace("{tool_result}", raw).replace("{result}", str(result))


def planned_calls(rule: dict, body: dict) -> list[tuple[str, str]]:
    """(name, arguments string) of the tool calls to emit, honouring `tools` and `tool_choice` as vLLM does."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return []
    calls = [(c["name"], c["arguments_raw"] if "arguments_raw" in c else json.dumps(c.get("arguments", {})))
             for c in rule.get("tool_calls", [])]
    if isinstance(choice, dict):  # a named function: guided decoding forces exactly that one
        name = choice["function"]["name"]
        return [c for c in calls if c[0] == name][:1] or [(name, "{}")]
    if choice == "required" and not calls:
        return [(tools[0]["function"]["name"], "{}")]
    return calls


TOKEN_RE = re.compile(r"\s*[A-Za-z']+|\s*\d|\s*[^\sA-Za-z\d]|\s+")


def tokens(text: str) -> list[str]:
    """Split text roughly as a tokenizer would: words, single digits, single punctuation marks."""
    return TOKEN_RE.findall(text)


def pieces(s: str, size: int = 5) -> list[str]:
    return [s[i:i + size] for i in range(0, len(s), size)] or [""]


# ----------------------------------------------------------------------------------------------------------- server


class ScriptedServer:
    def __init__(self, script: dict, args: argparse.Namespace) -> None:
        self.script = script
        self.model = args.model or script.get("model", "scripted-model")
        self.api_key = args.api_key
        self.auto_tool_choice = not args.no_auto_tool_choice
        self.record = Path(args.record) if args.record else None
        self.defaults = {
            "ttft_s": args.ttft if args.ttft is not None else script.get("ttft_s", 0.0),
            "tokens_per_s": args.tokens_per_s if args.tokens_per_s is not None else script.get("tokens_per_s", 0.0),
            "fault": args.fault if args.fault is not None else script.get("fault"),
            "stall_s": script.get("stall_s", 60.0),
        }

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/health", self.health)
        return app

    def _log(self, request: web.Request, body: Any) -> None:
        if self.record is None:
            return
        entry = {"method": request.method, "path": request.path,
                 "authorization": request.headers.get("Authorization"), "body": body, "t": time.time()}
        with self.record.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": "Unauthorized"}, status=401)  # vLLM's exact answer
        return None

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def models(self, request: web.Request) -> web.Response:
        self._log(request, None)
        if (denied := self._unauthorized(request)) is not None:
            return denied
        created = int(time.time())
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": created, "owned_by": "vllm", "root": self.model,
             "parent": None, "max_model_len": MAX_MODEL_LEN, "permission": []}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.text()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            self._log(request, raw)
            return error_response(f"JSON decode error: {exc}", 400, "BadRequestError")
        self._log(request, body)
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            validate(body, self.model, self.auto_tool_choice)
        except RequestError as exc:
            return error_response(exc.message, exc.status, exc.err_type, exc.param)
        rule = choose(self.script, body["messages"])
        opts = {k: rule.get(k, v) for k, v in self.defaults.items()}
        if opts["fault"] not in FAULTS:
            return error_response(f"unknown fault {opts['fault']!r} in the script", 500, "InternalServerError")
        if opts["fault"] == "http_500":
            return error_response("scripted internal server error: the engine is dead", 500, "InternalServerError")
        calls = planned_calls(rule, body)
        reply = render(rule.get("reply", ""), body["messages"])
        if calls and "tool_calls" in rule and "reply" not in rule:
            reply = ""
        if not calls and "tool_calls" in rule:  # tools not offered: the model has to answer in words
            reply = render(rule.get("reply_without_tools", rule.get("reply", "")), body["messages"])
        if not body.get("stream", False):
            await asyncio.sleep(float(opts["ttft_s"]))
            return self._complete(reply, calls, opts)
        return await self._stream(request, body, reply, calls, opts)

    def _complete(self, reply: str, calls: list[tuple[str, str]], opts: dict) -> web.StreamResponse:
        if opts["fault"] in ("malformed_chunk", "truncate"):
            return web.Response(text='{"id": "chatcmpl-broken", "choices": [', content_type="application/json")
        message: dict[str, Any] = {"role": "assistant", "content": reply or None, "tool_calls": [
            {"id": f"chatcmpl-tool-{uuid.uuid4().hex[:16]}", "type": "function",
             "function": {"name": n, "arguments": a}} for n, a in calls]}
        n_tokens = len(tokens(reply)) + sum(len(a) // 4 + 1 for _, a in calls)
        return web.json_response({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if calls else "stop", "stop_reason": None}],
            "usage": {"prompt_tokens": 100, "total_tokens": 100 + n_tokens, "completion_tokens": n_tokens}})

    async def _stream(self, request: web.Request, body: dict, reply: str, calls: list[tuple[str, str]],
                      opts: dict) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)  # like vLLM: headers at once, the first token later
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": self.model,
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            return f"data: {json.dumps(obj)}\n\n".encode()

        frames: list[bytes] = [chunk({"role": "assistant", "content": ""})]
        frames += [chunk({"content": t}) for t in tokens(reply)]
        first_call_frame = len(frames)
        for i, (name, args) in enumerate(calls):
            frames.append(chunk({"tool_calls": [{"index": i, "id": f"chatcmpl-tool-{uuid.uuid4().hex[:16]}",
                                                 "type": "function", "function": {"name": name}}]}))
            frames += [chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}) for p in pieces(args)]
        frames.append(chunk({"content": ""}, "tool_calls" if calls else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 100, "completion_tokens": len(frames), "total_tokens": 100 + len(frames)}
            frames.append(f"data: {json.dumps({'id': cid, 'object': 'chat.completion.chunk', 'created': created, 'model': self.model, 'choices': [], 'usage': usage})}\n\n".encode())
        frames.append(b"data: [DONE]\n\n")

        fault = opts["fault"]
        cut = max(2, (len(frames) - 2) // 2)  # where truncate/stall strike: mid-reply, mid-arguments
        if calls and fault in ("truncate", "stall"):
            cut = first_call_frame + 2
        if fault == "malformed_chunk":
            bad = b'data: {"id": "' + cid.encode() + b'", "object": "chat.completion.chunk", "choices": [{"delta": {\n\n'
            frames.insert(first_call_frame + 1 if calls else cut, bad)
        gap = 1.0 / float(opts["tokens_per_s"]) if opts["tokens_per_s"] else 0.0
        await asyncio.sleep(float(opts["ttft_s"]))
        for n, frame in enumerate(frames):
            if n == cut and fault == "truncate":
                assert request.transport is not None
                request.transport.close()  # connection gone: no terminating chunk, no [DONE]
                return resp
            if n == cut and fault == "stall":
                await asyncio.sleep(float(opts["stall_s"]))
            if gap and n > 0:
                await asyncio.sleep(gap)
            await resp.write(frame)
        await resp.write_eof()
        return resp


# ----------------------------------------------------------------------------------------------------- test helper


class OpenAIServerProcess:
    """Start this server as a real subprocess on a free port; `with OpenAIServerProcess(script, tmp) as srv:`.

    `srv.base_url` is the `/v1` URL, `srv.requests()` the recorded requests (chat completions only by default)."""

    def __init__(self, script: dict, workdir: Path, *extra_args: str) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.script_path = self.workdir / f"llm-script-{uuid.uuid4().hex[:8]}.json"
        self.record_path = self.script_path.with_suffix(".requests.jsonl")
        self.script_path.write_text(json.dumps(script), encoding="utf-8")
        self.extra_args = extra_args
        self.log_path = self.script_path.with_suffix(".log")  # stderr; a pipe nobody reads would block the server
        self.base_url = ""
        self.proc: Any = None

    def start(self, timeout_s: float = 60.0) -> OpenAIServerProcess:
        import subprocess
        import threading

        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--script", str(self.script_path),
                 "--record", str(self.record_path), *self.extra_args],
                stdout=subprocess.PIPE, stderr=log, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not line or not line[0].startswith("LISTENING "):
            self.stop()
            err = self.log_path.read_text(encoding="utf-8", errors="replace")
            raise RuntimeError(f"scripted OpenAI server did not start: {line!r} {err[-2000:]}")
        self.base_url = line[0].split()[1]
        return self

    def requests(self, path: str = "/v1/chat/completions") -> list[dict]:
        if not self.record_path.exists():
            return []
        entries = [json.loads(x) for x in self.record_path.read_text(encoding="utf-8").splitlines() if x.strip()]
        return [e for e in entries if e["path"] == path]

    def stop(self) -> None:
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_llamacpp(gguf: str, host: str, threads: int) -> None:
    """Instead of the script: a real llama.cpp server (xllamacpp's prebuilt build) on a GGUF, `--jinja` on.
    With a base model that has no chat template this proves the plumbing of text streaming only."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = gguf
    params.hostnames = [host]
    params.port = 0
    params.use_jinja = True
    params.n_ctx = 2048
    params.n_parallel = 1
    if threads:
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)
    print(f"LISTENING {server.listening_address}/v1", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    del server


async def serve(args: argparse.Namespace) -> None:
    script = json.loads(Path(args.script).read_text(encoding="utf-8")) if args.script else {}
    server = ScriptedServer(script, args)
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"LISTENING http://{args.host}:{port}/v1", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Scripted OpenAI-compatible (vLLM-like) chat-completions server")
    p.add_argument("--script", help="JSON file with rules (see the module docstring)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port (printed on stdout)")
    p.add_argument("--model", help="served model name")
    p.add_argument("--api-key", help="require this bearer token, as `vllm serve --api-key`")
    p.add_argument("--record", help="append every request to this JSONL file")
    p.add_argument("--no-auto-tool-choice", action="store_true",
                   help="behave like vLLM started without --enable-auto-tool-choice")
    p.add_argument("--ttft", type=float, help="seconds before the first token")
    p.add_argument("--tokens-per-s", type=float, help="pace of streamed chunks (0 = as fast as possible)")
    p.add_argument("--fault", choices=sorted(f for f in FAULTS if f), help="fault for every request")
    p.add_argument("--llamacpp-gguf", help="serve this GGUF with a real llama.cpp server instead of the script")
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = its default)")
    args = p.parse_args(argv)
    if args.llamacpp_gguf:
        serve_llamacpp(args.llamacpp_gguf, args.host, args.threads)
        return
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
