import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder, PromptTemplate

from langchain_tokenlean import lean_prompt
from tokenlean.core import InvalidRequestError

templates = pytest.importorskip("tokenlean.templates")

SYSTEM = ("I want you to act as a travel guide for {city}. Please suggest places to visit "
          "in order to help me. Do not write explanations. Do not use emojis.")


def fast():
    return templates.TemplateRewriter(scorer=None)


def test_prompt_template_rewritten_and_still_formats():
    prompt = PromptTemplate.from_template(SYSTEM + " Question: {question}")
    lean, report = lean_prompt(prompt, rewriter=fast(), with_report=True)
    assert isinstance(lean, PromptTemplate)
    assert set(lean.input_variables) == {"city", "question"}
    text = lean.format(city="Rome", question="Where to eat?")
    assert text.startswith("Act as a travel guide for Rome. Suggest places to visit to help me.")
    assert "Don't write explanations or use emojis." in text
    assert text.endswith("Question: Where to eat?")
    assert report[0].saved_tokens > 5
    assert prompt.template.startswith("I want you")  # the original is untouched


def test_fstring_escaped_braces_survive():
    prompt = PromptTemplate.from_template('Please reply as JSON like {{"a": 1}} about {topic}.')
    lean = lean_prompt(prompt, rewriter=fast())
    assert lean.input_variables == ["topic"]
    assert lean.format(topic="cats") == 'Reply as JSON like {"a": 1} about cats.'


def test_chat_prompt_template_system_and_human_rewritten_placeholder_kept():
    chat = ChatPromptTemplate.from_messages([
        ("system", SYSTEM),
        SystemMessage(content="Please   be   brief."),
        MessagesPlaceholder("history"),
        ("human", "Please answer {question}"),
    ])
    lean = lean_prompt(chat, rewriter=fast())
    assert isinstance(lean, ChatPromptTemplate)
    assert set(lean.input_variables) == {"city", "history", "question"}
    messages = lean.format_messages(city="Oslo", question="what now?",
                                    history=[HumanMessage(content="hi")])
    assert messages[0].content.startswith("Act as a travel guide for Oslo.")
    assert messages[1].content == "Be brief."
    assert messages[2].content == "hi"
    assert messages[3].content == "Answer what now?"


def test_roles_limit_what_is_rewritten():
    chat = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", "Please answer {q}")])
    lean = lean_prompt(chat, rewriter=fast(), roles=["system"])
    assert lean.format_messages(city="x", q="y")[1].content == "Please answer y"


def test_bad_input():
    with pytest.raises(InvalidRequestError):
        lean_prompt("a string")
    with pytest.raises(InvalidRequestError):
        lean_prompt(PromptTemplate.from_template("{x}"), roles="system")


def test_all_mode_structural_rewrite_keeps_variables_and_placeholder():
    chat = ChatPromptTemplate.from_messages([
        ("system", "I want you to act as a tour guide for {city}. I will give you the "
                   "traveller's budget and you will plan the day. Do not book anything."),
        MessagesPlaceholder("history"),
        ("human", "{question}"),
    ])
    lean, report = lean_prompt(chat, rewriter=templates.TemplateRewriter(mode="all", scorer=None),
                               with_report=True)
    assert set(lean.input_variables) == {"city", "question", "history"}
    text = lean.format_messages(city="Rome", question="Where?", history=[])[0].content
    assert text == ("Role: tour guide for Rome. Input: traveller's budget. Task: plan day. "
                    "Don't book anything.")
    assert report[0].saved_ratio > 0.3
