# `make run`: create .venv if missing, install, run the main job. `make test`: the default suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kexue-installed
# worker processes of the main job (one torch thread each; entries that time code run alone afterwards)
JOBS   ?= 2

.PHONY: run test test-all install bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

# The data folder: $KEXUE_DATA if set; else ../shared/data when it exists (the project's copy); else kexue's own
# default, the per-user cache (~/.cache/kexue/data), filled by `kexue data fetch NAME... | --all`.
ifeq ($(KEXUE_DATA),)
ifneq ($(wildcard ../shared/data/.),)
run: export KEXUE_DATA := $(abspath ../shared/data)
endif
endif

run: $(STAMP)
	@echo "data folder: $${KEXUE_DATA:-the per-user cache (see kexue data list)}"
	$(VENV)/bin/kexue reproduce --quick --jobs $(JOBS) --out report/

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) report .pytest_cache .hypothesis
