#!/usr/bin/env bash
# `make lock`: resolve the newest releases the pyproject ranges allow (in a
# scratch venv, see scripts/resolve.sh) and write them to requirements/lock.txt,
# the exact set scripts/setup.sh installs. Run it on purpose to upgrade; then
# `make test` (which `make lock` runs) must pass on what it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "tokenlean lock: resolving the newest allowed releases (a few minutes)" >&2
bash scripts/resolve.sh "$scratch/venv"
{
  echo "# tokenlean lock: the workspace's whole resolved dependency set, installed exactly"
  echo "# (pip install --no-deps -r) by scripts/setup.sh. CPython 3.11, Linux x86_64, CPU torch."
  echo "# Written by \`make lock\` (scripts/lock.sh); never edit by hand."
  echo "# inputs: $(python3 scripts/lock_inputs.py)"
  "$scratch/venv/bin/python" -m pip --disable-pip-version-check freeze --all --exclude-editable \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) | LC_ALL=C sort -f
} > requirements/lock.txt.new
mv requirements/lock.txt.new requirements/lock.txt
echo "tokenlean lock: wrote requirements/lock.txt ($(grep -vc '^#' requirements/lock.txt) packages)" >&2
