# The two commands in the README: `make demo` runs the built-in demo, `make test` runs the tests.
# Both create the virtual environment themselves (scripts/setup_env.sh).
VENV ?= .venv
OUT ?= runs/demo

.PHONY: setup demo test test-fast bench

setup:
	VENV=$(VENV) scripts/setup_env.sh

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/reasoner demo --out $(OUT)

test: setup
	VENV=$(VENV) scripts/test.sh

test-fast: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -q -m "not slow and not hostile and not vllm and not distributed"
