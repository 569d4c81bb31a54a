"""A LangChain RAG app, run raw and then through tokenlean, side by side.

The app is ordinary LangChain: a retriever over a small corpus, a prompt, a chat
model (``ChatOpenAI``) pointed at tokenlean's local OpenAI-compatible server
(SmolLM2-135M-Instruct, offline). The lean run changes two lines:

    llm = lean(ChatOpenAI(...), preset="max-savings", model="gpt-4o")        # 1
    retriever = ContextualCompressionRetriever(base_compressor=TokenleanCompressor(),
                                               base_retriever=retriever)        # 2

Both runs are priced as gpt-4o (``model=`` only names the price list and the
tokenizer: the answers come from the local model). Run:

    .venv/bin/python examples/langchain_rag.py [--questions N] [--base-url URL]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_openai import ChatOpenAI

from langchain_tokenlean import TokenleanCompressor, lean
from tokenlean.core import SQLiteLedger
from tokenlean.server import DEFAULT_MODEL_NAME

from _shared import local_server, parse_args, report, totals

CORPUS = [
    "Aurora Bikes was founded in 2011 in Porto by two former bicycle couriers. The company "
    "builds steel-frame city bikes and sells them directly online and in three shops.",
    "Every Aurora frame carries a lifetime warranty against cracks. Paint, tyres, chains and "
    "brake pads are wear parts and are covered for 12 months from delivery.",
    "Orders ship within 5 working days. Delivery inside Portugal and Spain is free; the rest "
    "of the EU costs 39 euros, and shipping outside the EU is not offered.",
    "Returns are accepted within 30 days if the bike has been ridden less than 100 km. The "
    "customer pays return shipping unless the bike arrived damaged.",
    "The Aurora Commuter weighs 13.2 kg, has an 8-speed hub gear and hydraulic disc brakes. "
    "It comes in three frame sizes: 50, 54 and 58 cm.",
    "The Aurora Cargo carries up to 80 kg in its front box and has a 500 Wh battery with a "
    "range of about 70 km. Its motor is limited to 25 km/h as EU rules require.",
    "Servicing is free for the first year at any Aurora shop. After that a standard service "
    "costs 60 euros and takes two working days.",
    "Aurora's shops are in Porto, Lisbon and Madrid. They open Tuesday to Saturday from 10:00 "
    "to 19:00 and are closed on public holidays.",
]

# A scripted session as real users ask: repeats and paraphrases included.
QUESTIONS = [
    "How long is the warranty on the frame?",
    "How much does delivery to Germany cost?",
    "How long does the frame warranty last?",
    "How much does delivery to Germany cost?",
    "What is the range of the Cargo's battery?",
    "When are the shops open?",
    "How heavy is the Commuter?",
    "When are the shops open?",
]

SYSTEM = ("You are Aurora Bikes' support assistant. Answer in one short sentence using only "
          "the context.\n\nContext:\n{context}")


class KeywordRetriever(BaseRetriever):
    """Top-k paragraphs by word overlap with the question (enough for a small corpus)."""

    documents: list[Document]
    k: int = 3

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        words = {w.strip("?.,'s").lower() for w in query.split() if len(w) > 3}
        scored = sorted(self.documents, key=lambda d: -sum(w in d.page_content.lower()
                                                           for w in words))
        return scored[: self.k]


def run_session(llm, retriever, questions: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    prompt = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", "{question}")])
    answers = []
    for question in questions:
        docs = retriever.invoke(question)
        context = "\n\n".join(d.page_content for d in docs)
        answers.append(str(llm.invoke(prompt.invoke({"context": context,
                                                     "question": question})).content))
    return answers


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(__doc__, argv, questions=len(QUESTIONS), max_tokens=40)
    questions = QUESTIONS[: args.questions]
    documents = [Document(page_content=text, metadata={"id": i}) for i, text in enumerate(CORPUS)]

    with local_server(args.base_url) as base_url, tempfile.TemporaryDirectory() as tmp:
        chat = ChatOpenAI(model=DEFAULT_MODEL_NAME, base_url=base_url, api_key="local",
                          temperature=0, max_tokens=args.max_tokens)
        retriever = KeywordRetriever(documents=documents)

        # raw: the app as it is (lean() with no layers only keeps the books)
        raw_ledger = SQLiteLedger(Path(tmp) / "raw.sqlite")
        raw_answers = run_session(lean(chat, preset="off", model="gpt-4o", ledger=raw_ledger),
                                  retriever, questions)

        # lean: the same app, two lines changed
        lean_ledger = SQLiteLedger(Path(tmp) / "lean.sqlite")
        llm = lean(chat, preset="max-savings", model="gpt-4o", ledger=lean_ledger,
                   tenant="example")
        compressing = ContextualCompressionRetriever(
            base_compressor=TokenleanCompressor(ratio=2), base_retriever=retriever)
        lean_answers = run_session(llm, compressing, questions)

        result = {"raw": totals(raw_ledger), "lean": totals(lean_ledger)}
    report(result, questions, raw_answers, lean_answers)
    return result


if __name__ == "__main__":
    main()
