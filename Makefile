# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3

.PHONY: install chromium redis demo test lint coverage docs

install:
	$(PYTHON) -m pip install --quiet -e '.[test]'

# Browser tests use Debian's Chromium: `playwright install` cannot download here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

# The scrapy-redis tests start a real redis-server (Debian's package) on 127.0.0.1.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null; fi; }

demo: install chromium
	$(PYTHON) example_project/demo.py

test: install chromium redis lint
	$(PYTHON) -m pytest -q

coverage: install chromium redis
	$(PYTHON) -m coverage run -m pytest -q
	$(PYTHON) -m coverage report --skip-covered

lint: docs
	$(PYTHON) -m ruff check scrapy_resilience tests benchmarks example_project docs
	$(PYTHON) -m mypy

# The Sphinx pages of docs/, warnings (a broken link, a page left out of the index) as errors.
docs:
	$(PYTHON) -m sphinx -W --keep-going -q -b html docs docs/_build/html
