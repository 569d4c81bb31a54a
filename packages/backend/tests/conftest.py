"""Shared fixtures: a tiny randomly-initialised Llama model saved as an HF folder."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

torch.set_num_threads(1)


def tiny_config(**overrides: object):
    cfg = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, head_dim=16,
               max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=1,
               eos_token_id=2, pad_token_id=0)
    cfg.update(overrides)
    return transformers.LlamaConfig(**cfg)


def tiny_model(seed: int = 0, **overrides: object):
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(tiny_config(**overrides))
    model.eval()
    return model


def tiny_tokenizer():
    """A real byte-level BPE tokenizer (byte tokens, no merges), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    # 253 of the 256 byte symbols (sorted: the order must not depend on set iteration)
    vocab = {t: i + 3 for i, t in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet())[:253])}
    vocab.update({"<pad>": 0, "<s>": 1, "</s>": 2})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                                eos_token="</s>", pad_token="<pad>")


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    tiny_model().save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def make_tiny():
    """``make_tiny(seed=0, **config_overrides)`` -> a fresh tiny LlamaForCausalLM."""
    return tiny_model


@pytest.fixture
def tiny_tok():
    return tiny_tokenizer()
