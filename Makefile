# The README's two commands: `make demo` and `make test`. Both set up first.
.PHONY: setup demo test docs

setup:
	@bash scripts/setup.sh

demo: setup
	@.venv/bin/tokenlean demo

test: setup
	@.venv/bin/python -m pytest -q

docs: setup
	@.venv/bin/mkdocs build --strict
