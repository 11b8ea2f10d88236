# Students: `make lab`. Instructors: `make demo`. Maintainers and CI: `make test`;
# contributors' fast loop: `make test-fast` (the suite without the markers of FAST_MARKERS).
#
# Two environments, so that a student's has no nbgrader (its Validate button would approve
# notebooks that the grader does not):
#   .venv-student  fusionlab[student]: JupyterLab, fusionlab and its self-checks     (make lab)
#   .venv          fusionlab[student,instructor,dev]: everything the tests need      (the rest)
# Both pin torch, the CPU build by default; `make lab TORCH_INDEX=` takes PyPI's default
# build instead (with CUDA on Linux: several GB). The package itself accepts torch>=2.1.
#
# No target overwrites a file a student may have edited: `make lab` copies the notebooks into
# work/ only when a copy is not there yet, `make demo` writes only under grading-output/, and
# `make notebooks` backs up an edited notebooks/ or solutions/ file before regenerating it.
PYTHON ?= python3
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STUDENT_VENV := .venv-student
STUDENT_STAMP := $(STUDENT_VENV)/.installed
WORK := work
NOTEBOOKS_ARGS ?=
ALL_EXTRAS := student,instructor,dev

# markers of pyproject.toml that test-fast leaves out: multi-seed training, real nbgrader,
# notebooks
FAST_MARKERS ?= not slow and not grading and not notebooks

# `make test` runs the test files on two processes (pytest-xdist): each test uses one torch
# thread, so a 2-core machine (CI's) does twice the work. One file stays on one process, so
# its module fixtures (a grading batch, a multi-seed run) are computed once. TEST_WORKERS=0
# runs everything in this process.
TEST_WORKERS ?= 2

.PHONY: lab workspace demo test test-fast claims-cpus notebooks bench lint clean

# $(call install,VENV,EXTRAS): a venv with the pinned torch and fusionlab[EXTRAS]
define install
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is required, this is " + sys.version.split()[0]'
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(1)/bin/python -m pip install --quiet -e '.[$(2)]'
	touch $(1)/.installed
endef

$(STAMP): pyproject.toml
	$(call install,$(VENV),$(ALL_EXTRAS))

$(STUDENT_STAMP): pyproject.toml
	$(call install,$(STUDENT_VENV),student)

# Students: your own copy of every notebook in work/, then JupyterLab there. As root (many
# containers), JupyterLab refuses to start without --allow-root: it is passed when the uid is 0.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)
lab: $(STUDENT_STAMP) workspace
	$(STUDENT_VENV)/bin/jupyter lab $(LAB_ARGS) $(WORK)

workspace:
	@mkdir -p $(WORK)
	@for nb in notebooks/*.ipynb; do \
	  if [ -e "$(WORK)/$${nb##*/}" ]; then \
	    echo "kept your $(WORK)/$${nb##*/} (never overwritten; the released version is $$nb)"; \
	  else \
	    cp -n "$$nb" "$(WORK)/" && echo "copied $$nb to $(WORK)/: work there"; \
	  fi; \
	done

# Instructors: example submissions graded end to end, everything under grading-output/
# (every assignment, or those of DEMO_ASSIGNMENTS, e.g. `make demo DEMO_ASSIGNMENTS=part1_fusion_strategies`).
DEMO_ASSIGNMENTS ?=
demo: $(STAMP)
	$(BIN)/python -m autograder demo $(DEMO_ASSIGNMENTS) --out grading-output

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "$(FAST_MARKERS)"

# Maintainers: every claim test (tests/part*/test_claims.py) once per torch CPU kernel path,
# the vectorised code another CPU would run: ATEN_CPU_CAPABILITY=default and avx2, and avx512
# where this CPU has it (CLAIMS_PATHS=... to choose). tests/conftest.py prints the active path
# in the header and stops the run when it is not the one asked for. Every path runs, and the
# target fails when any did. CLAIMS_TESTS="tests/part1/test_claims.py ..." runs some parts only.
CLAIMS_TESTS ?= tests/part*/test_claims.py
CLAIMS_PATHS ?= $(shell env -u ATEN_CPU_CAPABILITY $(BIN)/python -c 'import torch; best = torch.backends.cpu.get_cpu_capability(); print("default", "avx2" if best in ("AVX2", "AVX512") else "", "avx512" if best == "AVX512" else "")' 2>/dev/null || echo default)
claims-cpus: $(STAMP)
	@status=0; for path in $(CLAIMS_PATHS); do \
	  echo "== claim tests under ATEN_CPU_CAPABILITY=$$path"; \
	  ATEN_CPU_CAPABILITY=$$path $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile \
	    $(CLAIMS_TESTS) || status=1; \
	done; exit $$status

# Maintainers: regenerate notebooks/ and solutions/ from source/.
notebooks: $(STAMP)
	$(BIN)/python -m autograder.authoring.notebooks $(NOTEBOOKS_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check fusionlab autograder tests benchmarks

# Environments and outputs only: never work/ or backups/.
clean:
	rm -rf $(VENV) $(STUDENT_VENV) build grading-output .pytest_cache
