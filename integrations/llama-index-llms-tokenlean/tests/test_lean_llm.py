"""lean() around real LlamaIndex LLM classes and a real query engine."""

from __future__ import annotations

import asyncio

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM

from llama_index.llms.tokenlean import LeanLLM, lean, lean_query_engine
from tokenlean.core import LayerNote, Request, SQLiteLedger, count_tokens


class Shorten:
    name = "shorten"

    def process(self, request: Request) -> Request:
        out = [m.with_text(m.text[:40]) if m.role == "user" else m for m in request.messages]
        return request.with_messages(out).with_note(LayerNote(layer=self.name,
                                                              quality={"retention": 0.8}))

    async def aprocess(self, request: Request) -> Request:
        return self.process(request)


LONG = "Tell me about the history of the city of Lisbon and its earthquake of 1755. " * 5


def test_complete_goes_through_layers_and_ledger(tmp_path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    llm = lean(MockLLM(), layers=[Shorten()], ledger=ledger, model="gpt-4o")
    out = llm.complete(LONG)
    assert out.text == LONG[:40]  # MockLLM echoes the prompt it received
    meta = out.additional_kwargs["tokenlean"]
    assert meta["saved_tokens"]["shorten"] > 0
    (record,) = ledger.records()
    # MockLLM reports no usage: tokenlean counts it as the model would bill it
    assert record.usage.output_tokens == count_tokens(LONG[:40], model="gpt-4o").tokens


def test_chat_stream_and_async(tmp_path) -> None:
    llm = lean(MockLLM(), ledger=SQLiteLedger(tmp_path / "l.sqlite"), model="gpt-4o",
               preset="off")
    messages = [ChatMessage(role=MessageRole.USER, content="hello there")]
    assert "hello there" in llm.chat(messages).message.content
    streamed = list(llm.stream_complete("abc def"))
    assert streamed[-1].text == "abc def"

    async def go() -> tuple[str, str]:
        one = await llm.acomplete("xyz")
        last = None
        async for piece in await llm.astream_complete("uvw"):
            last = piece
        return one.text, last.text if last else ""

    assert asyncio.run(go()) == ("xyz", "uvw")


def test_query_engine_helper(tmp_path) -> None:
    docs = [Document(text="Lisbon was hit by an earthquake in 1755."),
            Document(text="Porto is known for port wine.")]
    index = VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=8))
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    engine = lean_query_engine(index, MockLLM(), ledger=ledger, model="gpt-4o", preset="off",
                               similarity_top_k=1)
    assert isinstance(engine._response_synthesizer._llm, LeanLLM)
    answer = engine.query("When was the Lisbon earthquake?")
    assert str(answer)
    assert ledger.count() >= 1
