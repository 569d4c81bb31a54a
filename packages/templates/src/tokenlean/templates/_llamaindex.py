"""LlamaIndex prompts: rewrite every prompt of a ``PromptMixin`` (a query engine,
a response synthesizer, ...) through ``get_prompts`` / ``update_prompts``.

Duck-typed: nothing here imports llama-index-core at module import; it is
imported lazily only to rebuild chat messages. Supported prompt kinds:
``PromptTemplate`` (``template``), ``RichPromptTemplate`` (``template_str``),
``ChatPromptTemplate`` (``message_templates``) and ``SelectorPromptTemplate``
(``default_template`` + ``conditionals``); anything else is left as it is.
A prompt whose rewrite would change its template variables is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from tokenlean.core import InvalidRequestError
from tokenlean.core._optional import require

from ._rewrite import RewriteResult, TemplateRewriter

__all__ = ["lean_llamaindex_prompts", "lean_llamaindex_template"]

_VAR = re.compile(r"\{\{\s*([\w.]+)\s*\}\}|\{([\w.]+)\}")


def _vars(text: str) -> set[str]:
    return {a or b for a, b in _VAR.findall(text)}


def _rewrite_text(text: str, rewriter: TemplateRewriter, results: list[RewriteResult]) -> str:
    result = rewriter.rewrite(text)
    results.append(result)
    if not result.changed or _vars(result.text) != _vars(text):
        return text
    return result.text


def _lean(prompt: Any, rewriter: TemplateRewriter, roles: frozenset[str],
          results: list[RewriteResult]) -> Any:
    if hasattr(prompt, "default_template") and hasattr(prompt, "conditionals"):
        default = _lean(prompt.default_template, rewriter, roles, results)
        conditionals = [(cond, _lean(p, rewriter, roles, results))
                        for cond, p in (prompt.conditionals or [])]
        return prompt.model_copy(update={"default_template": default,
                                          "conditionals": conditionals})
    if isinstance(getattr(prompt, "template_str", None), str):
        new = _rewrite_text(prompt.template_str, rewriter, results)
        return prompt if new == prompt.template_str else \
            prompt.model_copy(update={"template_str": new})
    if isinstance(getattr(prompt, "template", None), str):
        new = _rewrite_text(prompt.template, rewriter, results)
        return prompt if new == prompt.template else prompt.model_copy(update={"template": new})
    if isinstance(getattr(prompt, "message_templates", None), list):
        llms = require("llama_index.core.llms", extra="llamaindex",
                       feature="rewriting LlamaIndex chat prompts")
        messages = []
        for message in prompt.message_templates:
            role = getattr(getattr(message, "role", None), "value", getattr(message, "role", ""))
            content = getattr(message, "content", None)
            if str(role) in roles and isinstance(content, str) and content.strip():
                new = _rewrite_text(content, rewriter, results)
                if new != content:
                    message = llms.ChatMessage(role=message.role, content=new,
                                               additional_kwargs=message.additional_kwargs)
            messages.append(message)
        return prompt.model_copy(update={"message_templates": messages})
    return prompt


def lean_llamaindex_template(prompt: Any, *, rewriter: TemplateRewriter | None = None,
                             mode: Literal["safe", "whitespace"] = "safe",
                             roles: Sequence[str] = ("system", "user")
                             ) -> tuple[Any, list[RewriteResult]]:
    """One LlamaIndex prompt template rewritten, and the rewrite results."""
    if isinstance(roles, str):
        raise InvalidRequestError("roles must be a list of chat roles, e.g. ['system']")
    results: list[RewriteResult] = []
    engine = rewriter or TemplateRewriter(mode=mode)
    return _lean(prompt, engine, frozenset(roles), results), results


def lean_llamaindex_prompts(module: Any, *, rewriter: TemplateRewriter | None = None,
                            mode: Literal["safe", "whitespace"] = "safe",
                            keys: Sequence[str] | None = None,
                            roles: Sequence[str] = ("system", "user"),
                            ) -> dict[str, list[RewriteResult]]:
    """Rewrite the prompts of ``module`` (anything with ``get_prompts()`` and
    ``update_prompts()``, e.g. a query engine) in place; returns, per prompt
    key, the rewrite results (tokens, per-pass savings, similarity, ``diff()``).

    ``keys`` limits which prompts are rewritten (default: all).
    """
    if not (callable(getattr(module, "get_prompts", None))
            and callable(getattr(module, "update_prompts", None))):
        raise InvalidRequestError("module must have get_prompts() and update_prompts() "
                                  "(a LlamaIndex PromptMixin such as a query engine)")
    engine = rewriter or TemplateRewriter(mode=mode)
    prompts = module.get_prompts()
    wanted = set(prompts) if keys is None else set(keys)
    missing = wanted - set(prompts)
    if missing:
        raise InvalidRequestError(f"no prompts named {sorted(missing)}; this module has "
                                  f"{sorted(prompts)}")
    updates: dict[str, Any] = {}
    report: dict[str, list[RewriteResult]] = {}
    for key in sorted(wanted):
        new, results = lean_llamaindex_template(prompts[key], rewriter=engine, roles=roles)
        report[key] = results
        if any(r.changed for r in results):
            updates[key] = new
    if updates:
        module.update_prompts(updates)
    return report
