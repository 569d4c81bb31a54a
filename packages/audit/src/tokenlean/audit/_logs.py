"""Reading traffic logs: OpenAI request/response JSONL, the prompts shape, ledger exports.

One JSON object per line; the shape is detected per line:

* **OpenAI chat completions** as gateways and SDK loggers write them:
  ``{"request": {<body: model, messages, ...>}, "response": {<chat.completion>}}``
  (``response`` may also be the answer text).
* **prompts**: ``{"id", "messages", "response": "<answer text>", "model", "source"}``
  (the evaluation files in ``../shared/data/``).
* **tokenlean ledger export**: one ``CallRecord.to_dict()`` per line
  (``JSONLLedger`` files, ``tokenlean ledger``); no message text, so the audit
  reports what the layers recorded instead of replaying them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tokenlean.core import CallRecord, InvalidRequestError, Message, Request, read_jsonl
from tokenlean.core.settings import build_request

__all__ = ["LogEntry", "LogFormat", "read_log"]

LogFormat = Literal["openai", "prompts", "ledger"]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One logged call: the request, the answer it got and how the log said it ended."""

    line: int
    format: LogFormat
    request: Request | None  # None for ledger records (no message text)
    response_text: str | None
    finish_reason: str | None = None
    usage_input: int | None = None  # as the log reported them (the original model's tokenizer)
    usage_output: int | None = None
    record: CallRecord | None = None
    id: str | None = None


def _response_parts(response: Any) -> tuple[str | None, str | None, int | None, int | None]:
    """(text, finish_reason, prompt_tokens, completion_tokens) of a logged response."""
    if response is None:
        return None, None, None, None
    if isinstance(response, str):
        return response, None, None, None
    if not isinstance(response, Mapping):
        raise InvalidRequestError("response must be a chat.completion object or a string")
    inner = response.get("body")
    body: Mapping[str, Any] = inner if isinstance(inner, Mapping) else response
    choices = body.get("choices") or []
    text, finish = None, None
    if choices and isinstance(choices[0], Mapping):
        message = choices[0].get("message") or {}
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        text = content if isinstance(content, str) else ("" if message else None)
        finish = choices[0].get("finish_reason")
    usage = body.get("usage") or {}
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return (text, finish, None if prompt is None else int(prompt),
            None if completion is None else int(completion))


def _request(body: Mapping[str, Any]) -> Request:
    """The :class:`Request` ``lean()`` would build for a logged chat-completions body:
    core's one request mapping (:func:`tokenlean.core.settings.build_request`), with the
    body as the call's settings."""
    if "messages" not in body or "model" not in body:
        raise InvalidRequestError("a chat-completions body needs 'model' and 'messages'")
    messages = body["messages"]
    if isinstance(messages, (str, bytes)) or not isinstance(messages, list):
        raise InvalidRequestError("'messages' must be a list of chat messages")
    return build_request([m if isinstance(m, Message) else Message.from_openai(m)
                          for m in messages],
                         {k: v for k, v in body.items() if k != "messages"})


def parse_line(obj: Mapping[str, Any], line: int) -> LogEntry:
    """One log object as a :class:`LogEntry` (shape detected from its keys)."""
    if "request_id" in obj and "layers" in obj and "input_tokens" in obj:
        record = CallRecord.from_dict(obj)
        return LogEntry(line=line, format="ledger", request=None, response_text=None,
                        finish_reason=record.finish_reason,
                        usage_input=record.usage.input_tokens,
                        usage_output=record.usage.output_tokens, record=record,
                        id=record.request_id)
    if isinstance(obj.get("request"), Mapping):
        body = obj["request"]
        body = body.get("body") if isinstance(body.get("body"), Mapping) else body
        request = _request(body)
        text, finish, prompt, completion = _response_parts(obj.get("response"))
        return LogEntry(line=line, format="openai", request=request, response_text=text,
                        finish_reason=finish, usage_input=prompt, usage_output=completion,
                        id=str(obj.get("id") or obj.get("request_id") or line))
    if isinstance(obj.get("messages"), list):
        request = _request({"messages": obj["messages"],
                            "model": str(obj.get("model") or "unknown")})
        text, finish, prompt, completion = _response_parts(obj.get("response"))
        return LogEntry(line=line, format="prompts", request=request, response_text=text,
                        finish_reason=finish, usage_input=prompt, usage_output=completion,
                        id=str(obj.get("id") or line))
    raise InvalidRequestError(
        "not a recognised log line; expected {'request': {...}, 'response': "
        "{...}} (OpenAI), {'messages': [...], 'response': '...'} (prompts) or a tokenlean "
        "ledger record")


def read_log(path: str | Path, *, limit: int | None = None) -> Iterator[LogEntry]:
    """The entries of a JSONL log, in order (blank lines skipped); a line that is
    not JSON or not a known log shape names its file and line."""
    for n, (number, obj) in enumerate(read_jsonl(path)):
        if limit is not None and n >= limit:
            return
        try:
            entry = parse_line(obj, number)
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"{path}:{number}: {exc}") from None
        yield entry
