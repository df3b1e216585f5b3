# microprop — the two set-up commands of the README:
#   make demo   install the pinned dependencies, run the whole workflow on the
#               embedded virtual specimen and write the report
#   make test   install the pinned dependencies and run the test suite
#   make slurm-check  (root, Debian; not part of make test) a one-node Slurm
#               cluster on loopback: the tiny studies through profiles/slurm,
#               every result compared with a local run (README, "Running on
#               a Slurm cluster")
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: install demo demo-learning report test test-slow test-all lint real clean-demo slurm-check

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

demo: install
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html
	@echo "Report: results/report.html; validation: results/demo/validation/A1.json"

demo-learning: install
	$(BIN)/snakemake --cores $(CORES) --configfile configs/demo_learning.yaml
	$(BIN)/snakemake --configfile configs/demo_learning.yaml --report results/report_learning.html
	@echo "Model table: results/demo/learning/summary.csv"

report: install
	$(BIN)/snakemake --report results/report.html

real: install
	$(BIN)/snakemake --cores $(CORES) --configfile configs/real_bse_B.yaml
	$(BIN)/snakemake --configfile configs/real_bse_B.yaml --report results/report_real_bse_B.html

test: install
	$(BIN)/pytest

test-slow: install
	$(BIN)/pytest -m slow

test-all: install
	$(BIN)/pytest -m "slow or not slow"

slurm-check: install
	PYTHON=$(abspath $(BIN))/python benchmarks/slurm_integration.sh

lint: install
	$(BIN)/snakemake --lint

clean-demo:
	rm -rf results/demo results/backscatter resources/demo resources/truth/demo
