"""``lean_prompt``: a LangChain prompt template rewritten once by tokenlean.templates.

The rewrite runs when you call ``lean_prompt`` (memoised per template text), so
formatting the returned template costs nothing extra per call. Variables are
checked with LangChain's own parser: a message whose rewrite would change its
input variables is kept as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar, overload

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompts import BasePromptTemplate, ChatPromptTemplate, PromptTemplate
from langchain_core.prompts.chat import (
    AIMessagePromptTemplate,
    HumanMessagePromptTemplate,
    SystemMessagePromptTemplate,
)

from tokenlean.core import InvalidRequestError
from tokenlean.core._optional import require

__all__ = ["lean_prompt"]

P = TypeVar("P", PromptTemplate, ChatPromptTemplate)
_ROLE_OF_TEMPLATE: dict[type, str] = {SystemMessagePromptTemplate: "system",
                                      HumanMessagePromptTemplate: "human",
                                      AIMessagePromptTemplate: "ai"}
_ROLE_OF_MESSAGE: dict[type, str] = {SystemMessage: "system", HumanMessage: "human",
                                     AIMessage: "ai"}


_REWRITERS: dict[str, Any] = {}  # one memoising rewriter per mode, shared by every call


def _rewriter(mode: str, rewriter: Any) -> Any:
    if rewriter is not None:
        return rewriter
    if mode not in _REWRITERS:
        templates = require("tokenlean.templates", extra="templates", feature="lean_prompt")
        _REWRITERS[mode] = templates.TemplateRewriter(mode=mode)
    return _REWRITERS[mode]


def _lean_string_prompt(prompt: PromptTemplate, rewriter: Any, results: list[Any]
                        ) -> PromptTemplate:
    result = rewriter.rewrite(prompt.template)
    results.append(result)
    if not result.changed:
        return prompt
    try:
        check = PromptTemplate.from_template(result.text, template_format=prompt.template_format)
    except Exception:  # the rewrite no longer parses as this format: keep the original
        return prompt
    if set(check.input_variables) != set(PromptTemplate.from_template(
            prompt.template, template_format=prompt.template_format).input_variables):
        return prompt
    return prompt.model_copy(update={"template": result.text})


def _lean_chat_prompt(prompt: ChatPromptTemplate, rewriter: Any, roles: frozenset[str],
                      results: list[Any]) -> ChatPromptTemplate:
    messages: list[Any] = []
    for message in prompt.messages:
        role = _ROLE_OF_TEMPLATE.get(type(message))
        inner = getattr(message, "prompt", None)
        if role in roles and isinstance(inner, PromptTemplate):
            new_prompt = _lean_string_prompt(inner, rewriter, results)
            messages.append(message if new_prompt is inner
                            else message.model_copy(update={"prompt": new_prompt}))
            continue
        role = _ROLE_OF_MESSAGE.get(type(message))
        if role in roles and isinstance(message, BaseMessage) and isinstance(message.content, str):
            result = rewriter.rewrite(message.content)
            results.append(result)
            messages.append(message.model_copy(update={"content": result.text})
                            if result.changed else message)
            continue
        messages.append(message)
    return prompt.model_copy(update={"messages": messages})


@overload
def lean_prompt(prompt: P, *, mode: Literal["safe", "whitespace", "all"] = ...,
                roles: Sequence[str] = ..., rewriter: Any = ...,
                with_report: Literal[False] = ...) -> P: ...


@overload
def lean_prompt(prompt: P, *, mode: Literal["safe", "whitespace", "all"] = ...,
                roles: Sequence[str] = ..., rewriter: Any = ...,
                with_report: Literal[True]) -> tuple[P, list[Any]]: ...


def lean_prompt(prompt: P, *, mode: Literal["safe", "whitespace", "all"] = "safe",
                roles: Sequence[str] = ("system", "human"), rewriter: Any = None,
                with_report: bool = False) -> P | tuple[P, list[Any]]:
    """A copy of ``prompt`` (a ``PromptTemplate`` or ``ChatPromptTemplate``) whose
    text is rewritten by :mod:`tokenlean.templates` (``mode="safe"`` by default;
    ``"all"`` adds the structural passes).

    ``roles`` picks which chat messages are rewritten (``"system"``, ``"human"``,
    ``"ai"``); placeholders are never touched. ``rewriter`` is a
    :class:`tokenlean.templates.TemplateRewriter` (default: one with ``mode``).
    With ``with_report=True`` the rewrite results (tokens, per-pass savings,
    similarity, ``diff()``) come back too.
    """
    if isinstance(roles, str) or not set(roles) <= {"system", "human", "ai"}:
        raise InvalidRequestError("roles must be a list drawn from 'system', 'human', 'ai'")
    engine = _rewriter(mode, rewriter)
    results: list[Any] = []
    out: Any
    if isinstance(prompt, ChatPromptTemplate):
        out = _lean_chat_prompt(prompt, engine, frozenset(roles), results)
    elif isinstance(prompt, PromptTemplate):
        out = _lean_string_prompt(prompt, engine, results)
    elif isinstance(prompt, BasePromptTemplate):
        raise InvalidRequestError(f"lean_prompt supports PromptTemplate and ChatPromptTemplate, "
                                  f"not {type(prompt).__name__}")
    else:
        raise InvalidRequestError(f"lean_prompt needs a LangChain prompt template, "
                                  f"got {type(prompt).__name__}")
    return (out, results) if with_report else out
