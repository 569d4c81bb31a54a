"""Test-wide guards: no network but loopback, no model hub, no stray home files."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Fuzzing (hypothesis) runs the same examples on every run, so CI never turns red
# on a new random find; explore with TOKENLEAN_HYPOTHESIS=explore and pin what it
# finds with @example.
try:
    from hypothesis import settings as _hypothesis

    _hypothesis.register_profile("ci", derandomize=True, database=None)
    _hypothesis.register_profile("explore", max_examples=1000)
    _hypothesis.load_profile(os.environ.get("TOKENLEAN_HYPOTHESIS", "ci"))
except ImportError:  # hypothesis is a dev dependency
    pass

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = str(address[0])
    if host in {"localhost", ""}:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded(real):
    def connect(self, address):
        if not _is_local(address):
            raise OSError(f"tests may not reach the network (tried {address!r})")
        return real(self, address)

    return connect


socket.socket.connect = _guarded(_real_connect)  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded(_real_connect_ex)  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def _shared_models(tmp_path_factory: pytest.TempPathFactory):
    """One models folder per test session: the default model is converted from its
    GGUF once, not once per test."""
    return tmp_path_factory.mktemp("tokenlean_models")


@pytest.fixture(autouse=True)
def _tokenlean_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                    _shared_models):
    """Every test gets its own TOKENLEAN_HOME so nothing lands in ~/.tokenlean
    (ledgers, caches, budgets stay per test); converted models are shared."""
    home = tmp_path_factory.mktemp("tokenlean_home")
    (home / "models").symlink_to(_shared_models, target_is_directory=True)
    monkeypatch.setenv("TOKENLEAN_HOME", str(home))


SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def shared_data_file(name: str) -> Path:
    """``../shared/data/NAME``; a test that needs it skips where the evaluation data
    is not checked out, and fails (with the path) under ``CI=true``, where it must be."""
    path = SHARED_DATA / name
    if path.is_file():
        return path
    message = (f"evaluation data file {name} not found at {path} (the tests read "
               "../shared/data beside the checkout: see its README)")
    if _on_ci():
        pytest.fail(f"{message}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def shared_data() -> Callable[[str], Path]:
    """``shared_data("qa_squad_dev.jsonl")``: the path of a file of ../shared/data, or a
    skip (locally) / a failure (CI=true) naming it when it is absent."""
    return shared_data_file
