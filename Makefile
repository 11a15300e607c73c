# The two set-up commands of the README. Each creates/refreshes .venv on first use.
VENV ?= .venv
STAMP := $(VENV)/.videoqa-installed

.PHONY: demo test install bench lint

# install.sh prints its own lines (flavour, then the installed versions); make's echo would repeat them
$(STAMP): pyproject.toml scripts/install.sh
	@bash scripts/install.sh $(VENV)
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/videoqa demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# ruff and mypy come with the dev extra; mypy's files and settings are in pyproject.toml
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/videoqa bench --quick --json outputs/bench.json
