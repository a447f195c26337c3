# Every target sets up .venv first when it is missing (Python 3.11, pinned requirements.txt,
# then this package in editable mode), so a fresh clone needs only `make demo` / `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint format bench clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -e .
	touch $(STAMP)

# The main job on the bundled real CT sample.
demo: venv
	$(BIN)/python experiments/train_federated.py --flagfile=experiments/configs/train_federated.DEMO.flags

# Lint, format check, doctests and the unit tests (what .ci/run calls).
test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -q --doctest-modules tests ccfl_jax ledger

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv
	$(BIN)/python -m pip install -q SimpleITK
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) runs
