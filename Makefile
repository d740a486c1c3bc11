# The two commands of the README. Each sets up .venv first (idempotent).
.PHONY: setup quickstart test test-fast

setup:
	@bash scripts/setup.sh

quickstart: setup
	.venv/bin/rayalign quickstart

# All tests, the slow end-to-end ones included (CI runs this). Exit code 5 (no tests) fails.
test: setup
	.venv/bin/python -m pytest -q

test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"
