from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from tokenlean.backend import default_model_path, load_model, loading


def test_two_converters_racing_both_get_one_complete_folder(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        make_tiny) -> None:
    # its own home: the session's shared models folder must not receive the fake model
    monkeypatch.setenv("TOKENLEAN_HOME", str(tmp_path / "home"))
    barrier = threading.Barrier(2)
    calls: list[Path] = []

    def convert(gguf: Path, out: Path) -> None:  # both finish converting, then race to rename
        make_tiny().save_pretrained(out)
        calls.append(out)
        barrier.wait(timeout=30)

    monkeypatch.setattr(loading, "_convert_gguf", convert)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(default_model_path()))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(calls) == 2 and len(results) == 2
    assert results[0] == results[1]
    assert (results[0] / "config.json").is_file()
    leftovers = [p.name for p in results[0].parent.iterdir() if p != results[0]]
    assert leftovers == []  # the loser's temporary folder was removed
    # once complete, the folder is reused without converting again
    assert default_model_path() == results[0] and len(calls) == 2


@pytest.mark.slow
def test_default_smollm2_converts_loads_and_answers() -> None:
    torch.set_num_threads(1)
    folder = default_model_path()
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    model, tok = load_model()
    assert model.config.num_attention_heads == 9 and model.config.num_key_value_heads == 3
    assert not hasattr(model.config, "quantization_config")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
