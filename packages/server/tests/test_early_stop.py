"""Early stopping past a soft budget, over real HTTP with the real `openai` and `anthropic` SDKs.

The model is the tiny random Llama with its output layer restricted to a few
words, sentence ends and a newline (every other token's logit is 0), so its
greedy answers have sentence boundaries at varied places and a small, varying
P(eos). Every expectation comes from a reference computed here, apart from the
server: a plain greedy loop with full forward passes (no KV cache) that records,
after each answer length ``k``, the answer's text and ``P(eos | prompt, answer[:k])``.
"""

from __future__ import annotations

import copy
import math
import queue
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
from typer.testing import CliRunner

from tokenlean.core import ConfigError, InvalidRequestError
from tokenlean.server import (
    Engine,
    Finished,
    PrefixCache,
    SamplingParams,
    ServerThread,
    create_app,
)
from tokenlean.server._early import at_boundary

MODEL = "chatty"
SAY = [{"role": "user", "content": "Say hello."}]
STORY = [{"role": "user", "content": "Write a story."}]
WORDS = " the a cat dog sat ran on mat big small and then it was very red blue tree house"
# the spec's boundary, restated: a sentence end (closing quotes/brackets) or a newline, then spaces
BOUNDARY = re.compile(r"(?:[.!?][\"')\]]*|\n)[ \t]*\Z")
EOS = 2  # SmolLM2's <|im_end|>, the tiny model's end-of-sequence id


@pytest.fixture(scope="module")
def chatty(tiny: tuple[Any, Any]) -> tuple[Any, Any]:
    import torch

    model, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    ids = [tokenizer.encode(" " + w, add_special_tokens=False)[0] for w in WORDS.split()]
    ids += [tokenizer.encode(s, add_special_tokens=False)[0] for s in (".", "!", "?", "\n")]
    generator = torch.Generator().manual_seed(0)
    weight = torch.zeros_like(model.lm_head.weight)
    weight[ids] = torch.randn(len(ids), weight.shape[1], generator=generator) * 0.5
    weight[tokenizer.eos_token_id] = torch.randn(weight.shape[1], generator=generator) * 0.5
    model.lm_head.weight = torch.nn.Parameter(weight)  # unties it from the input embeddings
    return model, tokenizer


@dataclass
class Reference:
    tokens: list[int]  # the greedy answer, with its end-of-sequence token if it has one
    texts: list[str]  # texts[k]: the answer's first k tokens as text
    p_eos: list[float]  # p_eos[k]: P(eos) of the token after the first k

    def boundaries(self, soft: int, max_tokens: int) -> list[int]:
        """Answer lengths k at which the server checks P(eos): a boundary, k >= soft, a next
        step exists (the answer neither ended nor reached max_tokens at k), and its token
        is not the end of the answer (the model's own end is not an early stop)."""
        last = min(len(self.tokens), max_tokens) - 1
        return [k for k in range(max(soft, 1), last + 1)
                if BOUNDARY.search(self.texts[k]) and self.tokens[k] != EOS]

    def early_stop(self, soft: int, confidence: float, max_tokens: int) -> int | None:
        return next((k for k in self.boundaries(soft, max_tokens)
                     if self.p_eos[k] >= confidence), None)


def reference(chatty: tuple[Any, Any], messages: list[dict[str, str]], max_tokens: int
              ) -> Reference:
    import torch

    model, tokenizer = chatty
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    tokens: list[int] = []
    p_eos: list[float] = []
    with torch.inference_mode():
        while len(tokens) < max_tokens:
            logits = model(torch.tensor([prompt + tokens])).logits[0, -1].float()
            p_eos.append(float(torch.softmax(logits, -1)[tokenizer.eos_token_id]))
            tokens.append(int(logits.argmax()))
            if tokens[-1] == tokenizer.eos_token_id:
                break
    texts = [tokenizer.decode(tokens[:k], skip_special_tokens=True) for k in range(len(tokens) + 1)]
    return Reference(tokens, texts, p_eos)


def _server(chatty: tuple[Any, Any], **app_options: Any) -> ServerThread:
    model, tokenizer = chatty
    engine = Engine(model, tokenizer, max_batch=8, max_queue=16,
                    prefix_cache=PrefixCache(capacity_tokens=2048))
    return ServerThread(create_app(engine, model_name=MODEL, **app_options))


@pytest.fixture(scope="module")
def server(chatty: tuple[Any, Any]) -> Iterator[ServerThread]:
    with _server(chatty) as running:
        yield running


@pytest.fixture(scope="module")
def ref(chatty: tuple[Any, Any]) -> Reference:
    return reference(chatty, SAY, 40)


@pytest.fixture
def oai(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)


@pytest.fixture
def claude(server: ServerThread) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="local", max_retries=0)


def chat(oai: openai.OpenAI, messages: list[dict[str, str]], max_tokens: int,
         **tokenlean: Any) -> Any:
    extra = {"tokenlean": tokenlean} if tokenlean else None
    return oai.chat.completions.create(model=MODEL, messages=messages,  # type: ignore[arg-type]
                                       max_tokens=max_tokens, temperature=0, extra_body=extra)


def detail(response: Any) -> dict[str, Any]:
    extra = response.model_extra or {}
    assert "tokenlean" in extra, f"no tokenlean field in {response}"
    return dict(extra["tokenlean"])


def test_the_fixture_gives_boundaries_an_early_stop_can_skip(ref: Reference) -> None:
    """The setting the tests below rely on (so none of them can pass vacuously)."""
    found = ref.boundaries(0, 40)
    assert len(found) >= 3, ref.texts[-1]
    assert len({round(math.log10(ref.p_eos[k]), 1) for k in found}) >= 3  # distinct P(eos)
    assert ref.tokens[-1] == EOS or len(ref.tokens) == 40  # ended by eos or the hard limit
    assert all(0 < ref.p_eos[k] < 1 for k in found)


@pytest.mark.parametrize("soft_index", [0, 1, 2])
def test_threshold_zero_stops_at_the_first_boundary_past_the_soft_budget(
        oai: openai.OpenAI, ref: Reference, soft_index: int) -> None:
    found = ref.boundaries(0, 40)
    soft = found[soft_index - 1] + 1 if soft_index else 0  # just past an earlier boundary
    k = ref.early_stop(soft, 0.0, 40)
    assert k is not None and k >= soft
    assert all(not BOUNDARY.search(ref.texts[j]) for j in range(soft, k))
    out = chat(oai, SAY, 40, soft_max_tokens=soft, stop_confidence=0)
    assert out.choices[0].message.content == ref.texts[k]
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.completion_tokens == k
    info = detail(out)
    assert info["stopped"] == "early" and info["at_token"] == k
    assert info["soft_budget"] == soft and info["stop_confidence"] == 0
    assert info["eos_probability"] == pytest.approx(ref.p_eos[k], rel=1e-3)
    assert info["boundaries_checked"] == 1
    assert at_boundary(out.choices[0].message.content)


def test_threshold_one_never_stops_early(oai: openai.OpenAI, ref: Reference) -> None:
    plain = chat(oai, SAY, 40)
    assert "tokenlean" not in (plain.model_extra or {})  # no soft budget, no field
    out = chat(oai, SAY, 40, soft_max_tokens=0, stop_confidence=1)
    assert out.choices[0].message.content == plain.choices[0].message.content == ref.texts[-1]
    assert out.usage is not None and plain.usage is not None
    assert out.usage.completion_tokens == plain.usage.completion_tokens == len(ref.tokens)
    info = detail(out)
    assert info["stopped"] == ("eos" if ref.tokens[-1] == EOS else "max_tokens")
    assert "at_token" not in info
    checked = ref.boundaries(0, 40)
    assert info["boundaries_checked"] == len(checked)
    assert info["max_eos_probability"] == pytest.approx(max(ref.p_eos[k] for k in checked),
                                                        rel=1e-3)


def test_only_a_boundary_whose_p_eos_passes_the_threshold_ends_the_answer(
        oai: openai.OpenAI, ref: Reference) -> None:
    found = ref.boundaries(0, 40)
    first = found[0]
    higher = [k for k in found if ref.p_eos[k] > 10 * ref.p_eos[first]]
    assert higher, "the fixture needs a later boundary more likely to end the answer"
    threshold = math.sqrt(ref.p_eos[first] * ref.p_eos[higher[0]])
    k = ref.early_stop(0, threshold, 40)
    assert k is not None and k > first  # the first boundary was passed over
    out = chat(oai, SAY, 40, soft_max_tokens=0, stop_confidence=threshold)
    assert out.choices[0].message.content == ref.texts[k]
    info = detail(out)
    assert info["at_token"] == k and info["eos_probability"] >= threshold
    assert info["boundaries_checked"] == found.index(k) + 1
    # the reported probability itself as the threshold stops at the same place
    again = chat(oai, SAY, 40, soft_max_tokens=0,
                 stop_confidence=min(1.0, info["eos_probability"] * 0.999))
    assert detail(again)["at_token"] == k


def test_the_hard_max_tokens_is_unchanged(oai: openai.OpenAI, ref: Reference) -> None:
    found = ref.boundaries(0, 40)
    cap = found[0]  # the answer reaches its first boundary exactly at max_tokens
    out = chat(oai, SAY, cap, soft_max_tokens=0, stop_confidence=0)
    assert out.choices[0].finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == cap
    assert out.choices[0].message.content == ref.texts[cap]
    assert detail(out)["stopped"] == "max_tokens"
    beyond = chat(oai, SAY, 40, soft_max_tokens=40, stop_confidence=0)  # budget >= max_tokens
    assert beyond.choices[0].message.content == ref.texts[-1]
    assert detail(beyond)["boundaries_checked"] == 0


def test_streaming_agrees_with_non_streaming(oai: openai.OpenAI, claude: anthropic.Anthropic,
                                             ref: Reference) -> None:
    soft = ref.boundaries(0, 40)[0] + 1
    ext = {"tokenlean": {"soft_max_tokens": soft, "stop_confidence": 0}}
    k = ref.early_stop(soft, 0, 40)
    assert k is not None
    whole = chat(oai, SAY, 40, soft_max_tokens=soft, stop_confidence=0)
    chunks = list(oai.chat.completions.create(
        model=MODEL, messages=SAY, max_tokens=40, temperature=0, stream=True,  # type: ignore[call-overload]
        stream_options={"include_usage": True}, extra_body=ext))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) \
        == whole.choices[0].message.content == ref.texts[k]
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in last] == ["stop"]
    assert detail(last[0]) == detail(whole)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == k

    message = claude.messages.create(model=MODEL, max_tokens=40, messages=SAY,  # type: ignore[arg-type]
                                     extra_body={"temperature": 0, **ext})
    assert message.content[0].text == ref.texts[k]  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == k
    assert detail(message) == detail(whole)
    with claude.messages.stream(model=MODEL, max_tokens=40, messages=SAY,  # type: ignore[arg-type]
                                extra_body={"temperature": 0, **ext}) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.content[0].text == ref.texts[k]  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == k
    delta = [e for e in events if e.type == "message_delta"]
    assert len(delta) == 1 and detail(delta[0]) == detail(whole)

    text = oai.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=30,
                                  temperature=0, extra_body=ext)
    streamed = list(oai.completions.create(model=MODEL, prompt="Once upon a time",
                                           max_tokens=30, temperature=0, stream=True,
                                           extra_body=ext))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == text.choices[0].text
    assert detail([c for c in streamed if c.choices[0].finish_reason][0]) == detail(text)


def test_batched_sequences_stop_independently(chatty: tuple[Any, Any], ref: Reference) -> None:
    model, tokenizer = chatty
    found = ref.boundaries(0, 40)
    story = reference(chatty, STORY, 40)
    jobs = [(SAY, ref, 0, 0.0), (SAY, ref, found[1] + 1, 0.0), (SAY, ref, 0, 1.0),
            (STORY, story, 2, 0.0), (SAY, ref, found[0] + 1, 0.0)]
    engine = Engine(model, tokenizer, max_batch=8, prefix_cache=PrefixCache(capacity_tokens=0))
    sinks = []
    for messages, _, soft, confidence in jobs:  # all queued before the engine starts: one batch
        sink: queue.Queue[Any] = queue.Queue()
        engine.submit(engine.encode_chat(messages), SamplingParams(
            max_tokens=40, temperature=0, soft_max_tokens=soft, stop_confidence=confidence),
            sink=sink.put)
        sinks.append(sink)
    with engine:
        results = [_drain(sink) for sink in sinks]
    ends: set[int] = set()
    for (_, r, soft, confidence), (text, finish) in zip(jobs, results, strict=True):
        k = r.early_stop(soft, confidence, 40)
        assert finish.early is not None
        if k is None:
            assert text == r.texts[-1] and finish.early.at_token is None
        else:
            assert text == r.texts[k] and finish.completion_tokens == k
            assert finish.early.at_token == k
            assert finish.early.eos_probability == pytest.approx(r.p_eos[k], rel=1e-3)
        ends.add(finish.completion_tokens)
    assert len(ends) >= 4  # the rows left the batch at different steps
    sample = engine.metrics.registry.get_sample_value
    rows = sample("tokenlean_server_decode_batch_size_sum") or 0.0
    assert rows > (sample("tokenlean_server_decode_batch_size_count") or 0.0)  # batched steps


def _drain(sink: queue.Queue[Any]) -> tuple[str, Finished]:
    parts: list[str] = []
    while True:
        event = sink.get(timeout=60)
        if isinstance(event, Finished):
            return "".join(parts), event
        parts.append(getattr(event, "text", ""))


def test_a_server_default_soft_budget(chatty: tuple[Any, Any], ref: Reference) -> None:
    with _server(chatty, soft_budget_ratio=0.5, stop_confidence=0) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="local", max_retries=0)
        out = chat(client, SAY, 40)
        k = ref.early_stop(20, 0.0, 40)  # ceil(0.5 * 40)
        assert k is not None and detail(out)["soft_budget"] == 20
        assert out.choices[0].message.content == ref.texts[k]
        own = chat(client, SAY, 40, soft_max_tokens=40)  # the request's own budget wins
        assert own.choices[0].message.content == ref.texts[-1]
        ceil = chat(client, SAY, 33)
        assert detail(ceil)["soft_budget"] == 17
    with _server(chatty) as running:  # no default: a threshold alone is a mistake
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="local", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="needs a soft budget"):
            chat(client, SAY, 40, stop_confidence=0.5)
    bad: Any
    for bad in (0, 1.5, -0.1, True, "0.5"):
        with pytest.raises(ConfigError):
            create_app(Engine(*chatty), model_name=MODEL, soft_budget_ratio=bad)
    for bad in (1.01, -0.1, None, "x"):
        with pytest.raises(ConfigError):
            create_app(Engine(*chatty), model_name=MODEL, stop_confidence=bad)


BAD_EXTENSIONS: list[Any] = [
    {"soft_max_tokens": -1}, {"soft_max_tokens": 1.5}, {"soft_max_tokens": "8"},
    {"soft_max_tokens": True}, {"soft_max_tokens": 8, "stop_confidence": 1.01},
    {"soft_max_tokens": 8, "stop_confidence": -0.1},
    {"soft_max_tokens": 8, "stop_confidence": "hi"},
    {"soft_max_tokens": 8, "stop_confidence": False},
    {"soft_max_tokens": 8, "stop_confidence": [1]},
    {"soft_max_tokens": 8, "soft_max": 4}, {"stop_confidence": 0.5}, 5, "early", [8], True,
]


@pytest.mark.parametrize("ext", BAD_EXTENSIONS, ids=repr)
def test_bad_values_get_a_400_in_each_apis_shape(server: ServerThread, ext: Any) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path, body in (("/v1/chat/completions", {"messages": SAY}),
                           ("/v1/completions", {"prompt": "Hi"})):
            response = client.post(path, json={"model": MODEL, "max_tokens": 8, **body,
                                               "tokenlean": ext})
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert error["param"].startswith("tokenlean") and "tokenlean" in error["message"]
        response = client.post("/v1/messages", json={"model": MODEL, "max_tokens": 8,
                                                     "messages": SAY, "tokenlean": ext})
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert "tokenlean" in body["error"]["message"]
        assert client.get("/health").json()["status"] == "ok"


def test_sdks_raise_their_bad_request_error(oai: openai.OpenAI,
                                            claude: anthropic.Anthropic) -> None:
    with pytest.raises(openai.BadRequestError, match="soft_max_tokens"):
        chat(oai, SAY, 8, soft_max_tokens=-3)
    with pytest.raises(anthropic.BadRequestError, match="stop_confidence"):
        claude.messages.create(model=MODEL, max_tokens=8, messages=SAY,  # type: ignore[arg-type]
                               extra_body={"tokenlean": {"soft_max_tokens": 2,
                                                         "stop_confidence": 2}})


def test_sampling_params_check_their_values() -> None:
    bad: Any
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(InvalidRequestError, match="soft_max_tokens"):
            SamplingParams(max_tokens=8, soft_max_tokens=bad)
    for bad in (-0.01, 1.01, float("nan"), True, "1"):
        with pytest.raises(InvalidRequestError, match="stop_confidence"):
            SamplingParams(max_tokens=8, soft_max_tokens=2, stop_confidence=bad)


@pytest.mark.parametrize(("text", "expected"), [
    ("It is done.", True), ("Really?", True), ("Stop!  ", True), ('He said "go."', True),
    ("(see above.)", True), ("**Note.**", True), ("First line\n", True), ("a\n\n", True),
    ("终わり。", True), ("It is", False), ("3", False), ("e.g", False), ("", False),
    ("done. And", False), ("a, b;", False),
])
def test_boundaries(text: str, expected: bool) -> None:
    assert at_boundary(text) is expected


def test_serve_has_the_flags() -> None:
    from tokenlean.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--soft-budget-ratio" in result.output and "--stop-confidence" in result.output


def test_the_bench_arm_runs_the_real_server(tiny_dir: Any) -> None:
    """`tokenlean bench output`'s early-stop arm, on the tiny model (the bench uses SmolLM2)."""
    from tokenlean.bench._output_early_stop import generate
    from tokenlean.core import Message

    rows = [[Message(role="user", content="Say hello.")], [Message(role="user", content="Hi")]]
    out = generate(rows, [0, 64], max_tokens=12, stop_confidence=0, model_dir=str(tiny_dir))
    assert len(out) == 2
    for text, tokens, reason in out:
        assert isinstance(text, str) and 1 <= tokens <= 12
        assert reason in ("early", "stop", "length")
        assert reason != "early" or at_boundary(text)
    with pytest.raises(ValueError, match="soft budgets"):
        generate(rows, [0], model_dir=str(tiny_dir))


def test_the_bench_arm_uses_the_bench_runs_model_and_cap(tiny: tuple[Any, Any]) -> None:
    from tokenlean.bench._output_early_stop import generate
    from tokenlean.bench.output import LocalModel, using_model
    from tokenlean.core import Message

    model, tokenizer = tiny
    rows = [[Message(role="user", content="Say hello.")]]
    with using_model(LocalModel(tokenizer, model, 7, "tiny")):
        [(text, tokens, reason)] = generate(rows, [100])  # budget past the cap: no early stop
    assert (tokens, reason) == (7, "length") and text
