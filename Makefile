# The README's two commands: `make demo` and `make test`. Both set up first
# (scripts/setup.sh installs exactly requirements/lock.txt into .venv).
.PHONY: setup demo test check lock test-latest docs footprint

setup:
	@bash scripts/setup.sh

demo: setup
	@.venv/bin/tokenlean demo

test: setup
	@.venv/bin/python -m pytest -q

# ruff (lint rules in ruff.toml) and mypy (mypy.ini) over the packages' src/
check: setup
	@bash scripts/check.sh

# Upgrade on purpose: resolve the newest allowed releases into requirements/lock.txt,
# then run every test on what it wrote.
lock:
	@bash scripts/lock.sh
	@$(MAKE) --no-print-directory test

# The newest releases the pyproject ranges allow, in a separate .venv-latest (made anew
# each run), running the tests that touch models, HTTP SDKs and the frameworks.
LATEST_TESTS = packages/backend packages/server packages/compress packages/cache \
	integrations tests
test-latest:
	@bash scripts/resolve.sh .venv-latest
	@.venv-latest/bin/python -m pytest -q $(LATEST_TESTS)

# What each package pulls in when installed alone with no extras (docs/contributing.md).
footprint: setup
	@.venv/bin/python scripts/footprint.py

docs: setup
	@.venv/bin/mkdocs build --strict
