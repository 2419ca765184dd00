# `make pipeline` runs the whole DVC pipeline; `make test` runs the test suite.
# Both create .venv and install the pinned dependencies on first use.
VENV := .venv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
export PATH := $(abspath $(VENV))/bin:$(PATH)

# `dvc plots show` fills $(PLOTS)/page.html (.dvc/config: plots.html_template): DVC's own page
# with vega, vega-lite and vega-embed inlined from npm, at the versions DVC's page loads from a
# CDN, so the plots draw offline. Its stamp is only written once that worked: without npm the page
# is DVC's CDN one (the configured file must exist, or DVC stops) and the next make tries again.
PLOTS := build/plots
PLOTS_STAMP := $(PLOTS)/.offline
NPM := npm
# fail in seconds where the registry cannot be reached (npm's defaults retry for minutes)
NPM_FLAGS := --prefix $(PLOTS) --save-exact --no-audit --no-fund --ignore-scripts --loglevel=error \
	--fetch-retries=1 --fetch-retry-mintimeout=1000 --fetch-retry-maxtimeout=2000 --fetch-timeout=30000 --prefer-offline

.PHONY: install pipeline quick test bench mutation clean-venv

install: $(STAMP) $(PLOTS_STAMP)

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $(TEST_STAMP)

# DVC's page goes first, so the configured template exists whatever happens to npm.
# --legacy-peer-deps: vega-lite 5.2.0 asks for vega ^5.21 as a peer, DVC's page pairs it with 5.20.2.
$(PLOTS_STAMP): $(STAMP) tools/plots_page.py
	@mkdir -p $(PLOTS) && $(VENV)/bin/python tools/plots_page.py $(PLOTS)/page.html
	@if ! command -v $(NPM) >/dev/null 2>&1; then \
		echo "$(NPM) not found: dvc plots show will load vega from a CDN (blank plots offline)"; \
	elif { $(NPM) install $(NPM_FLAGS) --legacy-peer-deps $$($(VENV)/bin/python tools/plots_page.py --packages) \
			&& $(VENV)/bin/python tools/plots_page.py --modules $(PLOTS)/node_modules $(PLOTS)/page.html; } \
			>$(PLOTS)/install.log 2>&1; then \
		touch $@; echo "dvc plots show: vega inlined from npm into $(PLOTS)/page.html (draws offline)"; \
	else \
		echo "vega not installed from npm ($(PLOTS)/install.log): dvc plots show will load it from a CDN (blank plots offline)"; \
	fi

# `dvc repro` with independent stages side by side, one lane of the cores each (tools/parallel_repro.py;
# JOBS=1 runs one at a time). SOURCE=path/to/aclImdb_v1.tar.gz (or an aclImdb/ folder) runs on a local
# copy instead of the download: written into params.yaml as `dvc exp run -S` would.
JOBS ?= 0
pipeline: install
ifdef SOURCE
	python tools/parallel_repro.py --jobs $(JOBS) -S 'ingest.source=$(SOURCE)'
else
	python tools/parallel_repro.py --jobs $(JOBS)
endif
	python tools/readme.py  # README's tables from the files this run wrote

# A first result in minutes: the same stages and code as `pipeline`, up to the leaderboard, for three of
# the chapter's models with fewer epochs and shorter reviews (DVC parameters, set as `dvc exp run -S`
# sets them), then a prediction. It runs in $(QUICK_DIR), a git worktree of the last commit, so this
# workspace's params.yaml, dvc.lock and metrics stay as they are.
QUICK := -S 'architectures=[rnn,lstm,gru]' -S 'pretrained_architectures.word2vec=[]' -S 'report.architectures=[]' \
	-S arch_defaults.seq_len=256 -S rnn.epochs=3 -S lstm.epochs=2 -S gru.epochs=2
QUICK_DIR := build/quick
quick: install
	@rm -rf $(QUICK_DIR) && git worktree prune && git worktree add --quiet --detach $(QUICK_DIR) HEAD
	cd $(QUICK_DIR) && python tools/parallel_repro.py --jobs $(JOBS) $(QUICK) \
		$(if $(SOURCE),-S 'ingest.source=$(abspath $(SOURCE))') compare
	@cd $(QUICK_DIR) && python tools/readme.py --show metrics/leaderboard.md
	cd $(QUICK_DIR) && imdb-predict "A moving, beautifully acted film." "Dull, badly acted and far too long: avoid it."

# First the formatting and the lint rules of pyproject.toml (ruff). Then the tests: whole files to each
# worker, the longest first (tests/conftest.py: LONGEST_FIRST); the 15 slowest are listed. Then the tests marked
# `precision` (bfloat16, int8, CPU-feature detection) once more with oneDNN's and ATen's kernels limited
# to AVX2, as on a CPU without AVX-512 or native bfloat16: any machine catches what would break there
# (it shows AVX2's failures, not its speed).
test: install $(TEST_STAMP)
	ruff format --check --quiet .
	ruff check --quiet .
	python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=15 tests
	ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python -m pytest -q -n auto --dist loadfile -m precision tests

# speed figures (print ratios against a baseline measured in the same run); see docs/benchmarks.md
bench: install
	python benchmarks/bench_text.py --stages
	python benchmarks/bench_cells.py
	python benchmarks/bench_train.py
	python benchmarks/bench_predict.py
	python benchmarks/bench_ddp.py
	python benchmarks/bench_lanes.py
	python benchmarks/roofline.py --arch bilstm gru lstm stacked_lstm attention rnn

# mutation testing (not part of `make test` or CI; 2-3 hours on 2 cores): mutmut, pinned in
# requirements-dev.txt, mutates the modules below and runs the in-process tests pyproject.toml
# [tool.mutmut] selects; train.py and predict.py only in fit and the scoring path.
# MUTANTS='imdb_rnn.split.*' runs a part; `mutmut results` / `mutmut show NAME` tell what survived.
MUTANTS ?= 'imdb_rnn.model.*' 'imdb_rnn.batches.*' 'imdb_rnn.split.*' 'imdb_rnn.evaluate.*' \
	'imdb_rnn.train.x_fit*' 'imdb_rnn.optim.*' 'imdb_rnn.adversarial.*' 'imdb_rnn.inference.*' \
	'imdb_rnn.predict.x?Predictor?encode*' 'imdb_rnn.predict.x?Predictor?logits*' \
	'imdb_rnn.predict.x?Predictor?probabilities*' 'imdb_rnn.predict.x_apply_precision*'
mutation: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	mutmut run --max-children 1 $(MUTANTS)
	mutmut results

clean-venv:
	rm -rf $(VENV)
