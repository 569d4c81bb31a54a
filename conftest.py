"""Test-wide guards: no network but loopback, no model hub, no stray home files."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Fuzzing (hypothesis) has two profiles (docs/contributing.md, "Fuzz tests"):
# * "ci" (every run by default): derandomized, no example database, so a run is
#   repeatable and CI never turns red on a new random find;
# * "fuzz" (selected by `-m fuzz`, which runs only the fuzz-marked property tests, or by
#   TOKENLEAN_HYPOTHESIS=fuzz): random seeds, FUZZ_EXAMPLES examples per test (property
#   tests ask for max(their own count, the profile's)) and a saved example database in
#   .hypothesis/fuzz (git-ignored) that replays earlier finds first.
# Pin what it finds with @example.
FUZZ_EXAMPLES = 2_000


def _hypothesis_profile(config: pytest.Config) -> str:
    chosen = os.environ.get("TOKENLEAN_HYPOTHESIS", "").strip()
    if chosen:
        return "fuzz" if chosen == "explore" else chosen  # "explore": the old name
    markexpr = str(config.getoption("markexpr", "") or "")
    return "fuzz" if re.search(r"(?<!not )\bfuzz\b", markexpr) else "ci"


def pytest_configure(config: pytest.Config) -> None:
    try:
        from hypothesis import settings
        from hypothesis.database import DirectoryBasedExampleDatabase
    except ImportError:  # hypothesis is a dev dependency
        return
    settings.register_profile("ci", derandomize=True, database=None)
    settings.register_profile(
        "fuzz", derandomize=False, max_examples=FUZZ_EXAMPLES,
        database=DirectoryBasedExampleDatabase(str(config.rootpath / ".hypothesis" / "fuzz")))
    settings.load_profile(_hypothesis_profile(config))


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
