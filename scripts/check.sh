#!/usr/bin/env bash
# Static checks: ruff (rules in ruff.toml) over all Python in the repo, and mypy
# (settings in mypy.ini) over every package's src/. Prints each finding, then one
# summary line; exits 1 on any finding, 2 when a tool is missing or cannot run.
set -uo pipefail
cd "$(dirname "$0")/.."

RUFF=.venv/bin/ruff
MYPY=.venv/bin/mypy
for tool in "$RUFF" "$MYPY"; do
  [ -x "$tool" ] || { echo "check: $tool not found (run make setup)" >&2; exit 2; }
done

# mypy maps files to modules through mypy.ini's mypy_path, which lists each src
# folder by name: a package added without an entry there would be checked under
# the wrong module name.
missing=()
for src in packages/*/src integrations/*/src; do
  grep -Eq "^[[:space:]]*$src,?[[:space:]]*$" mypy.ini || missing+=("$src")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "check: mypy.ini's mypy_path lacks ${missing[*]}" >&2
  exit 2
fi

ruff_out=$("$RUFF" check --output-format concise packages integrations tests scripts examples \
  conftest.py 2>&1)
ruff_rc=$?
[ -n "$ruff_out" ] && printf '%s\n' "$ruff_out"
ruff_n=$(printf '%s\n' "$ruff_out" | grep -cE '^[^ :]+:[0-9]+:[0-9]+: ')

mypy_out=$("$MYPY" 2>&1)  # what to check: mypy.ini's files
mypy_rc=$?
printf '%s\n' "$mypy_out"
mypy_n=$(printf '%s\n' "$mypy_out" | grep -cE '^[^ :]+:[0-9]+: error: ')

if [ "$ruff_rc" -gt 1 ] || [ "$mypy_rc" -gt 1 ] \
    || { [ "$ruff_rc" -ne 0 ] && [ "$ruff_n" -eq 0 ]; } \
    || { [ "$mypy_rc" -ne 0 ] && [ "$mypy_n" -eq 0 ]; }; then
  echo "check: a tool failed to run (ruff exit $ruff_rc, mypy exit $mypy_rc)"
  exit 2
fi
if [ "$ruff_n" -eq 0 ] && [ "$mypy_n" -eq 0 ]; then
  echo "check: OK (ruff: 0 findings, mypy: 0 errors)"
  exit 0
fi
echo "check: FAILED (ruff: $ruff_n finding(s), mypy: $mypy_n error(s))"
exit 1
