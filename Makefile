# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3

.PHONY: install chromium demo test lint coverage

install:
	$(PYTHON) -m pip install --quiet -e '.[test]'

# Browser tests use Debian's Chromium: `playwright install` cannot download here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

demo: install chromium
	$(PYTHON) example_project/demo.py

test: install chromium lint
	$(PYTHON) -m pytest -q

coverage: install chromium
	$(PYTHON) -m coverage run -m pytest -q
	$(PYTHON) -m coverage report --skip-covered

lint:
	$(PYTHON) -m ruff check scrapy_resilience tests benchmarks example_project
	$(PYTHON) -m mypy
