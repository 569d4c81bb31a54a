"""LangChain and LlamaIndex clients pointed at the server by base URL."""

from __future__ import annotations

from tokenlean.server import ServerThread

MODEL = "tiny-llama"


def test_langchain_chat_openai(server: ServerThread) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url=server.url + "/v1",
                     api_key="local",  # type: ignore[arg-type]
                     max_tokens=5, temperature=0, max_retries=0)
    out = llm.invoke("Say hello.")
    assert isinstance(out.content, str)
    assert out.usage_metadata is not None and out.usage_metadata["output_tokens"] >= 1
    streamed = "".join(str(c.content) for c in llm.stream("Say hello."))
    assert streamed == out.content


async def test_langchain_chat_anthropic_async(server: ServerThread) -> None:
    from langchain_anthropic import ChatAnthropic

    llm = ChatAnthropic(model=MODEL, base_url=server.url,  # type: ignore[call-arg]
                        api_key="local",  # type: ignore[arg-type]
                        max_tokens=5, temperature=0, max_retries=0)
    out = await llm.ainvoke("Say hello.")
    assert out.usage_metadata is not None and out.usage_metadata["output_tokens"] >= 1
    sync = llm.invoke("Say hello.")
    assert sync.content == out.content
    streamed = "".join(str(c.content) for c in llm.stream("Say hello."))
    assert streamed == out.content


def test_llamaindex_openai_like(server: ServerThread) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(model=MODEL, api_base=server.url + "/v1", api_key="local",
                     is_chat_model=True, max_tokens=5, temperature=0, context_window=512)
    out = llm.chat([ChatMessage(role="user", content="Say hello.")])
    assert out.message.content is not None
    streamed = "".join(r.delta or "" for r in llm.stream_chat(
        [ChatMessage(role="user", content="Say hello.")]))
    assert streamed == out.message.content


async def test_llamaindex_openai_like_async(server: ServerThread) -> None:
    import httpx
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    async with httpx.AsyncClient() as http:  # closed here, not left to the garbage collector
        llm = OpenAILike(model=MODEL, api_base=server.url + "/v1", api_key="local",
                         is_chat_model=True, max_tokens=5, temperature=0, context_window=512,
                         async_http_client=http)
        out = await llm.achat([ChatMessage(role="user", content="Say hello.")])
    raw = out.raw
    usage = raw["usage"] if isinstance(raw, dict) else raw.usage
    completion = usage["completion_tokens"] if isinstance(usage, dict) \
        else usage.completion_tokens
    assert out.message.content is not None and completion >= 1
