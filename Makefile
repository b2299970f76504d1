# Two entry points for a fresh clone: `make repro` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Stage commands in dvc.yaml say `python`: put the project's interpreter first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: lock install install-test install-team install-search stack stack-servers stack-down repro report check-pipeline test test-extended
.PHONY: lint format browser ui clean-venv serve promote check-metrics best search

# Installs come from uv.lock, one lock for Linux (x86_64, aarch64), macOS arm64 and Windows,
# with uv, itself installed at a pinned version into build/uv by any Python 3 (README,
# "Installing"). uv finds a Python the project supports (3.11-3.13) or fetches one.
UV_VERSION := 0.13.8
UV := build/uv/bin/uv
# TensorFlow on x86_64 Linux and Windows: the CPU wheel, or GPU=1 for NVIDIA's CUDA build
# (macOS and aarch64 take TensorFlow's own wheel either way).
TF_EXTRA := $(if $(GPU),gpu,cpu)
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
# --inexact: each target adds its extras and removes nothing another target installed.
SYNC = $(UV) sync --frozen --inexact --quiet --extra $(TF_EXTRA)

$(UV):
	$(PYTHON_BOOTSTRAP) -m venv build/uv
	build/uv/bin/python -m pip install --quiet uv==$(UV_VERSION) 2> >(grep -v "is ignored: it is neither" >&2)

# Stamps: sync again only when the lock or pyproject.toml changes.
$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	$(SYNC)
	touch $@

# The tests include the team stack's (tests/test_team.py), so they install its extra too.
$(VENV)/.installed-test: uv.lock pyproject.toml | $(UV)
	$(SYNC) --extra test --extra team
	touch $@ $(VENV)/.installed $(VENV)/.installed-team $(VENV)/.installed-search

$(VENV)/.installed-team: uv.lock pyproject.toml | $(UV)
	$(SYNC) --extra team
	touch $@ $(VENV)/.installed

$(VENV)/.installed-search: uv.lock pyproject.toml | $(UV)
	$(SYNC) --extra search
	touch $@ $(VENV)/.installed

# The lock again after a change to pyproject.toml's dependencies; UPGRADE=1: newest releases.
lock: | $(UV)
	$(UV) lock $(if $(UPGRADE),--upgrade)

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-team: $(VENV)/.installed-team
install-search: $(VENV)/.installed-search

repro: install plots-page
	$(BIN)/dvc repro

# `dvc plots show` without internet: a page template with vega, vega-lite and vega-embed
# inlined (review/plots_page.py), from the npm registry at these versions, set as this
# checkout's plots.html_template (.dvc/config.local). Without npm, DVC's CDN page is used.
VEGA_PACKAGES := vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
PLOTS_PAGE := build/plots/page.html
.PHONY: plots-page
plots-page: install
	@if [ ! -f $(PLOTS_PAGE) ] || [ Makefile -nt $(PLOTS_PAGE) ] || [ review/plots_page.py -nt $(PLOTS_PAGE) ]; then \
		rm -rf build/npm && mkdir -p build/npm && \
		if (cd build/npm && npm pack --silent $(VEGA_PACKAGES) >/dev/null); then \
			$(BIN)/python -m review.plots_page --packages build/npm --out $(PLOTS_PAGE); \
		else echo "npm pack failed: dvc plots show keeps DVC's page, which needs internet"; fi; \
	fi
	@if [ -f $(PLOTS_PAGE) ]; then $(BIN)/dvc config --local plots.html_template ../$(PLOTS_PAGE); fi

# Values a user or CI sets (BASE, MODEL, STACK_DIR, ...) reach commands through the
# environment ("$$BASE"), never pasted into a shell line: a value with a backquote or a quote
# stays one argument and runs nothing. Each target exports the ones it uses.

# Pull-request review: report.md + report/*.png comparing the workspace with BASE (README).
BASE ?= main
# The metric gate: the largest fall of test accuracy (eval.accuracy) a pull request may cause.
ALLOWED_DROP ?= 0.005
report check-metrics: export BASE := $(BASE)
report check-metrics: export ALLOWED_DROP := $(ALLOWED_DROP)
report: install
	$(BIN)/python -m review.report --base "$$BASE" --out report.md \
		--allowed-drop "$$ALLOWED_DROP"

# Fails when a stage would rerun (missing data aside): the metrics do not match the code.
check-pipeline: install
	$(BIN)/python -m review.status

# Rank the experiments of the current commit on a validation metric (README, "Sweeps");
# APPLY=1 applies the winner with `dvc exp apply`.
METRIC ?= train.val_accuracy
best: export METRIC := $(METRIC)
best: install
	$(BIN)/python -m search.best --metric "$$METRIC" $(if $(APPLY),--apply)

# Optuna search, each trial a queued DVC experiment (README, "Search"). SEARCH_STORAGE: a shared
# study (PostgreSQL); default optuna.db in the workspace.
TRIALS ?= 20
JOBS ?= 1
search: export TRIALS := $(TRIALS)
search: export JOBS := $(JOBS)
search: install-search
	$(BIN)/python -m search.tune --trials "$$TRIALS" --jobs "$$JOBS"

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The MLflow UI on the store the stages write (README, "Tracking"), reachable from this machine
# only. No background job runners (they serve GenAI features) and one worker: light on a laptop.
UI_PORT ?= 5000
ui: export UI_PORT := $(UI_PORT)
ui: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --host 127.0.0.1 --port "$$UI_PORT" \
		--workers 1 --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db"

# The logged model over HTTP with `mlflow models serve`, this environment, 127.0.0.1 only
# (README, "Using the model"). MODEL: an MLflow model URI; default: the last run's model.
MODEL ?=
PORT ?= 5002
serve: export MODEL := $(MODEL)
serve: export PORT := $(PORT)
serve: install
	$(BIN)/python -m digits.serving --port "$$PORT" $(if $(MODEL),--model "$$MODEL")

# Fails when test accuracy fell by more than ALLOWED_DROP against BASE (README).
check-metrics: install
	$(BIN)/python -m review.gate --base "$$BASE" --allowed-drop "$$ALLOWED_DROP"

# Point an alias (default champion) at a registered version unless it is worse on the test
# metric (README, "Using the model"). NAME default: tracking.register_model; VERSION: latest.
ALIAS ?= champion
PROMOTE_ARGS = $(if $(NAME),--name "$$NAME") $(if $(VERSION),--version "$$VERSION") \
	$(if $(FORCE),--force)
promote: export ALIAS := $(ALIAS)
promote: export NAME := $(NAME)
promote: export VERSION := $(VERSION)
promote: install
	$(BIN)/python -m digits.promote --alias "$$ALIAS" $(strip $(PROMOTE_ARGS))

# Browser tests need Debian's headless Chromium; install it when we can (root), else they skip.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver (browser tests)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver >/dev/null) || echo "chromium install failed: browser tests will skip"; \
	else echo "chromium not installed and not root: browser tests will skip"; fi

# The team stack's PostgreSQL server: Debian's package, installed when missing and we are root.
# (SeaweedFS and MLflow come with the `team` extra.)
stack-servers:
	@if $(BIN)/python -c "import teamstack.postgres as s; s.postgres_bin()" 2>/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing postgresql (team stack)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends postgresql >/dev/null) || echo "postgresql install failed"; \
	else echo "PostgreSQL is not installed and we are not root: install it (Debian: apt-get install postgresql)"; fi

# A local team stack in $(STACK_DIR) on 127.0.0.1 (README, "Working as a team"): SeaweedFS S3,
# PostgreSQL and an MLflow server with login. Writes $(STACK_DIR)/env and the DVC remote.
STACK_DIR ?= .stack
stack stack-down: export STACK_DIR := $(STACK_DIR)
stack: install-team stack-servers
	$(BIN)/python -m teamstack.stack start --dir "$$STACK_DIR"

stack-down:
	$(BIN)/python -m teamstack.stack stop --dir "$$STACK_DIR"

# Test files run on TEST_WORKERS processes (pytest-xdist), a file's tests in one process, so
# that module fixtures (a team stack, a trained project) are built once. Most of a test's
# time is one process (dvc, a stage's imports), so two workers keep both cores busy.
TEST_WORKERS ?= 2
test: install-test lint browser stack-servers plots-page
	$(BIN)/python -m pytest -m "not extended" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The two-machine team-stack tests and the multi-process search tests (about 30 min here).
test-extended: install-test browser stack-servers
	$(BIN)/python -m pytest -m extended $(PYTEST_ARGS)

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Training and inference throughput against model.fit and a TF1 loop, pipeline timings, peak
# memory -> metrics/bench.json (README, "Performance"). DATA_MIRROR set: real Fashion-MNIST.
# TF_CPP_MIN_LOG_LEVEL=2 keeps TensorFlow's start-up notices out of the table (errors still show).
.PHONY: bench
bench: install
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m benchmarks.run

clean-venv:
	rm -rf $(VENV)
