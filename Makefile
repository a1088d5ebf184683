# Entry points named in the README. Each one installs what it needs first.
.PHONY: demo test lint bench bench-quick

demo:
	@scripts/bootstrap.sh
	@.venv/bin/python -m chainwarden.demo

test:
	@scripts/bootstrap.sh
	@.venv/bin/python -m pytest -q -rs -p no:cacheprovider

lint:
	@scripts/bootstrap.sh
	@.venv/bin/ruff check daemon tests bench
	@.venv/bin/mypy

bench:
	@scripts/bootstrap.sh
	@.venv/bin/python -m bench

bench-quick:
	@scripts/bootstrap.sh
	@.venv/bin/python -m bench --quick
