# tfsp — quick start: `make demo`, then `make test`.
# Both create .venv from requirements.txt when missing or out of date (idempotent).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-stamp
TASK   ?= ssd
DATA   ?= data/synth
RUNS   ?= runs
EXPORTS ?= exports
OUTPUTS ?= outputs
PYTEST_ARGS ?=

.PHONY: venv data preview demo test clean help

help:
	@echo "make demo [TASK=$(TASK)]   set up .venv, generate the synthetic data set, run the main job"
	@echo "                          (TASK: ssd, pose, dense, attributes, maskrcnn)"
	@echo "make test                 set up .venv, run the test suite"

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

data: venv
	@$(PY) -m tfsp.data.synthetic --out $(DATA) --train 2000 --val 200 --size 256 --seed 0 --if-stale

preview: data
	$(PY) -m tfsp.data.preview --data $(DATA) --split val --out $(OUTPUTS)/synth_contact_sheet.png

demo: data
	$(PY) -m training.demo --task $(TASK) --data $(DATA) --runs $(RUNS) --exports $(EXPORTS) --outputs $(OUTPUTS)

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(RUNS) $(EXPORTS) $(OUTPUTS) .pytest_cache
