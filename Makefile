# `make run`: create .venv if missing, install kexue with the reproduce extra, run the main job.
# `make test`: install the test extra (all extras, pytest, references, ruff, mypy), run the default suite.
# `make lint`: ruff and mypy, as CI runs them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# one stamp per extra installed: `make run` needs the reproduce extra, `make test` the test extra (which holds it)
RUN_STAMP  := $(VENV)/.kexue-reproduce
TEST_STAMP := $(VENV)/.kexue-test
# worker processes of the main job (one torch thread each; entries that time code run alone afterwards)
JOBS   ?= 2
# where the main job writes its report, and which entries it runs (default: all)
OUT    ?= report/
NAMES  ?=

.PHONY: run test test-all install bench lint clean

install: $(TEST_STAMP)

$(RUN_STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[reproduce]'
	@touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(TEST_STAMP) $(RUN_STAMP)

# The data folder: $KEXUE_DATA if set; else ../shared/data when it exists (the project's copy); else kexue's own
# default, the per-user cache (~/.cache/kexue/data), filled by `kexue data fetch NAME... | --all`.
ifeq ($(KEXUE_DATA),)
ifneq ($(wildcard ../shared/data/.),)
run: export KEXUE_DATA := $(abspath ../shared/data)
endif
endif

run: $(RUN_STAMP)
	@echo "data folder: $${KEXUE_DATA:-the per-user cache (see kexue data list)}"
	$(VENV)/bin/kexue reproduce --quick --jobs $(JOBS) --out $(OUT) $(NAMES)

test: $(TEST_STAMP)
	$(PY) -m pytest -m "not slow" -q

test-all: $(TEST_STAMP)
	$(PY) -m pytest -q

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench: $(TEST_STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) report .pytest_cache .hypothesis
