import pytest

from tokenlean.core import InvalidRequestError
from tokenlean.templates import TemplateRewriter, lean_llamaindex_prompts, lean_llamaindex_template

core = pytest.importorskip("llama_index.core")
from llama_index.core import PromptTemplate  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.prompts import ChatMessage, ChatPromptTemplate  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.retrievers import BaseRetriever  # noqa: E402
from llama_index.core.schema import NodeWithScore, TextNode  # noqa: E402

VERBOSE_QA = ("I want you to act as a careful analyst. Please read the context below.\n"
              "---------------------\n{context_str}\n---------------------\n"
              "In order to answer, you must only use the context. Do not guess. Do not guess.\n"
              "Query: {query_str}\nAnswer: ")


def fast() -> TemplateRewriter:
    return TemplateRewriter(scorer=None)


class _Retriever(BaseRetriever):
    def _retrieve(self, query_bundle):
        return [NodeWithScore(node=TextNode(text="Paris is the capital of France."), score=1.0)]


def test_prompt_template_rewritten_keeps_vars_and_formats():
    prompt = PromptTemplate(VERBOSE_QA)
    new, results = lean_llamaindex_template(prompt, rewriter=fast())
    assert set(new.template_vars) == {"context_str", "query_str"}
    text = new.format(context_str="CTX", query_str="Q?")
    assert text.startswith("Act as a careful analyst. Read the context below.")
    assert "---------------------\nCTX\n---------------------" in text  # fences kept
    assert text.count("Don't guess.") == 1 and "must only use the context" in text
    assert results[0].saved_tokens > 0


def test_chat_prompt_template_messages_rewritten():
    chat = ChatPromptTemplate(message_templates=[
        ChatMessage(role="system", content="Please   always answer in {language}."),
        ChatMessage(role="user", content="{question}"),
    ])
    new, _ = lean_llamaindex_template(chat, rewriter=fast())
    messages = new.format_messages(language="French", question="Hi?")
    assert messages[0].content == "Always answer in French."
    assert messages[1].content == "Hi?"


def test_query_engine_prompts_updated_in_place():
    engine = RetrieverQueryEngine.from_args(_Retriever(), llm=MockLLM())
    engine.update_prompts({"response_synthesizer:text_qa_template": PromptTemplate(VERBOSE_QA)})
    report = lean_llamaindex_prompts(engine, rewriter=fast())
    key = "response_synthesizer:text_qa_template"
    assert key in report and any(r.changed for r in report[key])
    updated = engine.get_prompts()[key]
    assert updated.get_template().startswith("Act as a careful analyst.")
    # the engine still runs with the rewritten prompt (MockLLM echoes its prompt)
    answer = str(engine.query("What is the capital of France?"))
    assert answer  # a response came back through the real synthesizer
    # the framework's own default prompts are already terse: few or no changes, none broken
    for results in report.values():
        for r in results:
            assert r.violations == ()


def test_keys_and_bad_module():
    engine = RetrieverQueryEngine.from_args(_Retriever(), llm=MockLLM())
    with pytest.raises(InvalidRequestError):
        lean_llamaindex_prompts(engine, rewriter=fast(), keys=["nope"])
    with pytest.raises(InvalidRequestError):
        lean_llamaindex_prompts(object(), rewriter=fast())
