"""Client for an OpenAI-compatible chat-completions server (vLLM, llama.cpp's llama-server), streaming with tools.

`stream_chat` yields `TextDelta`s as the model writes and, once the stream has ended properly, one `ToolCallsDelta`
with every tool call reassembled from its chunks. A stream that breaks (malformed chunk, connection closed early,
arguments that are not a JSON object) raises `LlmError("llm-bad-response")` and yields no tool call at all, so
nothing is ever executed on the strength of half a reply.

Error codes: `llm-unreachable` (connection refused, DNS, connect timeout), `llm-timeout` (no first token, or a gap
between chunks, longer than `timeout_s`), `llm-http-error` (4xx/5xx; the server's own message), `llm-bad-response`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from .config import LlmConfig
from .errors import LlmError
from .tools.base import ToolCall

AUTO_MODEL_NAMES = ("", "default")
SERVE_HINT = ("start the model server, e.g. `vllm serve MODEL --enable-auto-tool-choice --tool-call-parser hermes` "
              "or `llama-server -m MODEL.gguf --jinja --port 8000`, or set [llm] base_url")


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallsDelta:
    calls: tuple[ToolCall, ...]


@dataclass
class _PartialCall:
    call_id: str = ""
    name: str = ""
    arguments: str = ""


class LlmClient:
    """One per appliance. `cfg.model` "default" (or empty) means: use the first model the server lists."""

    def __init__(self, cfg: LlmConfig) -> None:
        self._cfg = cfg
        self._url = cfg.base_url.rstrip("/")
        timeout = httpx2.Timeout(cfg.timeout_s + 1.0, connect=cfg.connect_timeout_s)
        self._client = openai.AsyncOpenAI(
            base_url=self._url, api_key=cfg.api_key or "EMPTY", max_retries=0, timeout=timeout)
        self._model: str | None = None if cfg.model in AUTO_MODEL_NAMES else cfg.model

    # ------------------------------------------------------------------------------------------------ public

    async def stream_chat(self, messages: list[dict], tools: list[dict] | None, *,
                          tool_choice: str | dict = "auto") -> AsyncIterator[TextDelta | ToolCallsDelta]:
        """Stream one reply. `tool_choice` ("auto", "required", "none" or a named function) applies with tools."""
        model = await self._model_name()
        request: dict[str, Any] = {"model": model, "messages": messages, "stream": True,
                                   "max_tokens": self._cfg.max_tokens, "temperature": self._cfg.temperature}
        if tools:
            request["tools"] = tools
            request["tool_choice"] = tool_choice
        try:
            async with asyncio.timeout(self._cfg.connect_timeout_s + self._cfg.timeout_s):
                stream = await self._client.chat.completions.create(**request)
        except TimeoutError:
            raise self._timeout_error("the server accepted the request but sent no response") from None
        except openai.APIError as exc:
            raise self._request_error(exc) from None

        partial: dict[int, _PartialCall] = {}
        finish: str | None = None
        iterator = stream.__aiter__()
        got_chunk = False
        try:
            while True:
                try:
                    async with asyncio.timeout(self._cfg.timeout_s):
                        chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                got_chunk = True
                for choice in chunk.choices or ():
                    delta = choice.delta
                    if delta is not None and delta.content:
                        yield TextDelta(delta.content)
                    for tc in (delta.tool_calls if delta is not None else None) or ():
                        self._merge(partial.setdefault(tc.index if tc.index is not None else 0, _PartialCall()), tc)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except (TimeoutError, openai.APITimeoutError):
            raise self._timeout_error("the reply stalled" if got_chunk else "no first token") from None
        except openai.APIConnectionError as exc:
            raise LlmError(f"the LLM server at {self._url} closed the stream before the reply was complete "
                           f"({_cause(exc)})", code="llm-bad-response") from None
        except openai.APIStatusError as exc:
            raise self._request_error(exc) from None
        except openai.APIError as exc:  # an error object sent inside the stream
            raise LlmError(f"the LLM server reported an error mid-reply: {exc.message}",
                           code="llm-http-error") from None
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # malformed JSON / unexpected shape
            raise LlmError(f"the LLM server sent a malformed stream chunk ({type(exc).__name__}: {exc})",
                           code="llm-bad-response") from None
        finally:
            await stream.close()
        if finish is None:
            raise LlmError(f"the LLM server at {self._url} ended the stream without finishing the reply",
                           code="llm-bad-response")
        if partial:
            yield ToolCallsDelta(tuple(self._finish_call(i, p) for i, p in sorted(partial.items())))

    async def health(self) -> tuple[bool, str]:
        """(ok, one line for `voice-agent doctor`)."""
        try:
            ids = await self._list_models()
        except LlmError as exc:
            return False, f"{exc.message} (fix: {exc.fix})" if exc.fix else exc.message
        if not ids:
            return False, f"the LLM server at {self._url} serves no model"
        if self._cfg.model not in AUTO_MODEL_NAMES and self._cfg.model not in ids:
            return False, (f"the LLM server at {self._url} serves {', '.join(ids)}, not the configured model "
                           f"{self._cfg.model!r} (fix: set [llm] model to one of those)")
        return True, f"LLM server at {self._url} serves {', '.join(ids)}"

    async def aclose(self) -> None:
        await self._client.close()

    # ------------------------------------------------------------------------------------------------ helpers

    async def _model_name(self) -> str:
        if self._model is None:
            ids = await self._list_models()
            if not ids:
                raise LlmError(f"the LLM server at {self._url} serves no model", code="llm-bad-response")
            self._model = ids[0]
        return self._model

    async def _list_models(self) -> list[str]:
        try:
            async with asyncio.timeout(self._cfg.connect_timeout_s + self._cfg.timeout_s):
                page = await self._client.models.list()
        except TimeoutError:
            raise self._timeout_error("listing models took too long") from None
        except openai.APIError as exc:
            raise self._request_error(exc) from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise LlmError(f"the LLM server at {self._url} answered /models with something unexpected ({exc})",
                           code="llm-bad-response") from None
        return [m.id for m in page.data if getattr(m, "id", None)]

    @staticmethod
    def _merge(acc: _PartialCall, tc: Any) -> None:
        if tc.id:
            acc.call_id = tc.id
        fn = tc.function
        if fn is None:
            return
        if fn.name and fn.name != acc.name:
            acc.name = acc.name + fn.name if acc.name and not fn.name.startswith(acc.name) else fn.name
        if fn.arguments:
            acc.arguments += fn.arguments

    def _finish_call(self, index: int, p: _PartialCall) -> ToolCall:
        if not p.name:
            raise LlmError("the LLM proposed a tool call without a tool name", code="llm-bad-response")
        try:
            arguments = json.loads(p.arguments) if p.arguments.strip() else {}
        except ValueError as exc:
            raise LlmError(f"the LLM's arguments for {p.name} are not valid JSON ({exc})",
                           code="llm-bad-response") from None
        if not isinstance(arguments, dict):
            raise LlmError(f"the LLM's arguments for {p.name} are not a JSON object", code="llm-bad-response")
        return ToolCall(name=p.name, arguments=arguments, call_id=p.call_id or f"call_{index}", source="llm",
                        provenance={k: "llm" for k in arguments})

    def _timeout_error(self, what: str) -> LlmError:
        return LlmError(f"the LLM server at {self._url} did not answer in time: {what} "
                        f"(limit {self._cfg.timeout_s:g} s)", code="llm-timeout",
                        fix="use a smaller or faster model, or raise [llm] timeout_s")

    def _request_error(self, exc: openai.APIError) -> LlmError:
        if isinstance(exc, openai.APIStatusError):
            return LlmError(f"the LLM server at {self._url} refused the request: HTTP {exc.status_code}: "
                            f"{_server_message(exc)}", code="llm-http-error",
                            fix=_status_fix(exc.status_code))
        if isinstance(exc, openai.APITimeoutError) and not _caused_by(exc, httpx2.ConnectTimeout):
            return self._timeout_error("no response")
        return LlmError(f"cannot reach the LLM server at {self._url} ({_cause(exc)})", code="llm-unreachable",
                        fix=SERVE_HINT)


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return exc.message


def _status_fix(status: int) -> str | None:
    return {401: "set [llm] api_key to the server's --api-key",
            403: "set [llm] api_key to the server's --api-key",
            404: "check [llm] base_url (it ends in /v1) and [llm] model (see `curl BASE_URL/models`)"}.get(status)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _cause(exc: BaseException) -> str:
    root: BaseException = exc
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    return f"{type(root).__name__}: {root}" if str(root) else type(root).__name__
