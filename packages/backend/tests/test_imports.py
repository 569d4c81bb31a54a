import subprocess
import sys

import tokenlean.backend as backend


def test_all_is_pinned() -> None:
    assert backend.__all__ == [
        "default_gguf_path",
        "default_model_path",
        "flash_attn_available",
        "load_model",
        "select_attn_implementation",
        "tokenlean_home",
    ]
    for name in backend.__all__:
        assert getattr(backend, name) is not None


def test_import_does_not_import_torch() -> None:
    code = "import sys, tokenlean.backend; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
