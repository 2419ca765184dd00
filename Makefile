# `make pipeline` runs the whole DVC pipeline; `make test` runs the test suite.
# Both create .venv and install the pinned dependencies on first use.
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install pipeline test bench mutation clean-venv

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

# mutation testing (not part of `make test` or CI; 2-3 hours on 2 cores): mutmut, pinned in
# requirements-dev.txt, mutates the modules below and runs the in-process tests pyproject.toml
# [tool.mutmut] selects; train.py and predict.py only in fit / the training step and the scoring path.
# MUTANTS='imdb_rnn.split.*' runs a part; `mutmut results` / `mutmut show NAME` tell what survived.
MUTANTS ?= 'imdb_rnn.model.*' 'imdb_rnn.batches.*' 'imdb_rnn.split.*' 'imdb_rnn.evaluate.*' \
	'imdb_rnn.train.x_fit*' 'imdb_rnn.train.x_update*' 'imdb_rnn.train.x?EmbeddingAttack?*' \
	'imdb_rnn.train.x_make_optimizer*' 'imdb_rnn.train.x_accuracy*' 'imdb_rnn.train.x_loss_and_accuracy*' \
	'imdb_rnn.predict.x?Predictor?encode*' 'imdb_rnn.predict.x?Predictor?logits*' \
	'imdb_rnn.predict.x?Predictor?probabilities*' 'imdb_rnn.predict.x_apply_precision*'
mutation: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	mutmut run --max-children 1 $(MUTANTS)
	mutmut results

clean-venv:
	rm -rf $(VENV)
