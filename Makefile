# Shortcuts for the README's commands.
.PHONY: serve test bench lint format

serve:
	./scripts/serve

test:
	./scripts/test

bench:
	./bench/run.sh

lint:
	.venv/bin/ruff check .

format:
	.venv/bin/ruff format .
