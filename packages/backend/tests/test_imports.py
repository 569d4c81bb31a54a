import subprocess
import sys

import tokenlean.backend as backend


def test_all_is_pinned() -> None:
    assert backend.__all__ == [
        "Importance",
        "PruneReport",
        "compare_speed",
        "count_parameters",
        "default_gguf_path",
        "default_model_path",
        "distill",
        "evaluate",
        "flash_attn_available",
        "importance_scores",
        "load_model",
        "logits_match",
        "mixed_blocks",
        "model_size",
        "plan_shape",
        "prune_model",
        "prune_pipeline",
        "quality",
        "read_texts",
        "register_attention",
        "save_pruned",
        "select_attn_implementation",
        "speculative",
        "speed",
        "token_blocks",
        "tokenlean_home",
    ]
    for name in backend.__all__:
        assert getattr(backend, name) is not None


def test_import_does_not_import_torch() -> None:
    code = "import sys, tokenlean.backend; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
