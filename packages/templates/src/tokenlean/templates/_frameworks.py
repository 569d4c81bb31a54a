"""The prompt templates in LangChain and LlamaIndex objects, and every one the installed
frameworks ship: what ``tokenlean templates lint --from-langchain/--from-llamaindex``
and ``tokenlean bench templates langchain|llamaindex`` read. The frameworks are
imported only when asked for."""

from __future__ import annotations

from typing import Any

__all__ = ["langchain_corpus", "langchain_texts", "llamaindex_corpus", "llamaindex_texts"]


def _unique_templates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` without repeated templates (the first row of each kept), in order."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if row["template"] not in seen:
            seen.add(row["template"])
            out.append(row)
    return out


def llamaindex_corpus() -> list[dict[str, Any]]:
    """Every default prompt llama-index-core ships (``default_prompts``, ``chat_prompts``)."""
    import importlib

    rows: list[dict[str, Any]] = []
    for module_name in ("llama_index.core.prompts.default_prompts",
                        "llama_index.core.prompts.chat_prompts"):
        module = importlib.import_module(module_name)
        for name in sorted(vars(module)):
            value = getattr(module, name)
            if name.startswith("_"):
                continue
            if isinstance(getattr(value, "template", None), str):
                rows.append({"id": f"{module_name}.{name}", "template": value.template})
            for i, message in enumerate(getattr(value, "message_templates", None) or []):
                content = getattr(message, "content", None)
                if isinstance(content, str) and content.strip():
                    rows.append({"id": f"{module_name}.{name}[{i}]", "template": content})
    return _unique_templates(rows)


def langchain_corpus() -> list[dict[str, Any]]:
    """Every prompt template the installed LangChain ships: the ``*prompt*`` modules of
    ``langchain_classic`` (chains, agents, evaluation, ...) and ``langchain_core``."""
    import importlib
    import pkgutil
    import warnings

    from langchain_core.prompts import BasePromptTemplate

    rows: list[dict[str, Any]] = []
    for package_name in ("langchain_classic", "langchain_core"):
        try:
            package = importlib.import_module(package_name)
        except ImportError:
            continue
        with warnings.catch_warnings():  # walking imports packages; some warn on import
            warnings.simplefilter("ignore")
            names = [m.name for m in pkgutil.walk_packages(
                package.__path__, package_name + ".", onerror=lambda _name: None)
                if "prompt" in m.name.rsplit(".", 1)[-1]]
        for module_name in sorted(names):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    module = importlib.import_module(module_name)
            except Exception:  # an optional dependency of that module is missing
                continue
            for name in sorted(vars(module)):
                value = getattr(module, name)
                if name.startswith("_") or not isinstance(value, BasePromptTemplate):
                    continue
                rows.extend(langchain_texts(f"{module_name}.{name}", value))
    return _unique_templates(rows)


def langchain_texts(key: str, prompt: Any) -> list[dict[str, Any]]:
    if isinstance(getattr(prompt, "template", None), str):
        return [{"id": key, "template": prompt.template}]
    out = []
    for i, message in enumerate(getattr(prompt, "messages", None) or []):
        inner = getattr(getattr(message, "prompt", None), "template", None)
        content = inner if isinstance(inner, str) else getattr(message, "content", None)
        if isinstance(content, str) and content.strip():
            out.append({"id": f"{key}[{i}]", "template": content})
    return out


def llamaindex_texts(prompt: object) -> list[str]:
    default = getattr(prompt, "default_template", None)
    if default is not None:
        return llamaindex_texts(default)
    for attr in ("template_str", "template"):
        if isinstance(getattr(prompt, attr, None), str):
            return [getattr(prompt, attr)]
    return [m.content for m in getattr(prompt, "message_templates", None) or []
            if isinstance(getattr(m, "content", None), str) and m.content.strip()]
