# `make pipeline` runs the whole DVC pipeline; `make test` runs the test suite.
# Both create .venv and install the pinned dependencies on first use.
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install pipeline test bench clean-venv

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# SOURCE=path/to/aclImdb_v1.tar.gz (or an aclImdb/ folder) runs on a local copy instead of the download
pipeline: $(STAMP)
ifdef SOURCE
	dvc exp run -S 'ingest.source=$(SOURCE)'
else
	dvc repro
endif

test: $(STAMP)
	python -m pytest -q tests

# speed figures (print ratios against a baseline measured in the same run); see README "Benchmarks"
bench: $(STAMP)
	python benchmarks/bench_text.py --stages
	python benchmarks/bench_train.py
	python benchmarks/bench_predict.py
	python benchmarks/bench_ddp.py

clean-venv:
	rm -rf $(VENV)
