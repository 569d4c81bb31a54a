from __future__ import annotations

import pytest
import torch

from tokenlean.backend import attention, select_attn_implementation


def test_cpu_uses_sdpa() -> None:
    assert select_attn_implementation("cpu") == "sdpa"
    assert select_attn_implementation(torch.device("cpu")) == "sdpa"


def test_cuda_without_flash_attn_uses_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention, "flash_attn_available", lambda: False)
    assert select_attn_implementation("cuda:0") == "sdpa"


def test_cuda_with_flash_attn_uses_flash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention, "flash_attn_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_attn_implementation("cuda") == "flash_attention_2"
    assert select_attn_implementation("cpu") == "sdpa"


@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_matches_eager(padded: bool, make_tiny) -> None:  # type: ignore[no-untyped-def]
    model = make_tiny(seed=3)
    torch.manual_seed(0)
    ids = torch.randint(3, 256, (2, 24))
    mask = torch.ones_like(ids)
    if padded:
        mask[1, :5] = 0  # left padding on the second row
    out = {}
    for impl in ("eager", "sdpa"):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            out[impl] = model(input_ids=ids, attention_mask=mask).logits
    keep = mask.bool()
    assert torch.allclose(out["eager"][keep], out["sdpa"][keep], atol=1e-4, rtol=1e-4)
    assert out["sdpa"].abs().max() > 0
