# The two set-up commands of the README. Each creates/refreshes .venv on first use.
VENV ?= .venv
STAMP := $(VENV)/.videoqa-installed

.PHONY: demo test install bench

# install.sh prints its own lines (flavour, then the installed versions); make's echo would repeat them
$(STAMP): pyproject.toml scripts/install.sh
	@bash scripts/install.sh $(VENV)
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/videoqa demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/videoqa bench --quick --json outputs/bench.json
