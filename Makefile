# Two commands for users: `make demo` and `make test`. Both create .venv when it is absent.
# `make test-fast` is the contributors' loop: the suite without the markers below.
# torch is pinned for the test setup; the package itself accepts torch>=2.1.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# markers of pyproject.toml that test-fast leaves out: multi-seed training, real nbgrader, notebooks
FAST_MARKERS ?= not slow and not grading and not notebooks

.PHONY: demo test test-fast notebooks bench lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is required, this is " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[course,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m autograder.notebooks
	$(BIN)/python -m autograder demo --out grading-output

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "$(FAST_MARKERS)"

notebooks: $(STAMP)
	$(BIN)/python -m autograder.notebooks

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check fusionlab autograder tests benchmarks

clean:
	rm -rf $(VENV) build grading-output .pytest_cache
