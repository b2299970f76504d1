# Two entry points for a fresh clone: `make repro` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Stage commands in dvc.yaml say `python`: put the project's interpreter first on PATH (dvc
# started without make does the same through the hook of digits/runtime/venv_hook.py).
export PATH := $(abspath $(BIN)):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export TORCH TORCH_INDEX TORCH_FIND_LINKS

.PHONY: lock install install-test install-team install-search install-demo stack stack-servers stack-down repro report check-pipeline test test-extended
.PHONY: lint format browser ui clean-venv serve demo promote check-metrics best search exps quick docs

# Installs come from uv.lock, one lock for Linux (x86_64, aarch64), macOS arm64 and Windows,
# with uv, itself installed at a pinned version into build/uv by any Python 3
# (docs/installing.md). uv finds a Python the project supports (3.11-3.13) or fetches one.
UV_VERSION := 0.13.8
UV := build/uv/bin/uv
# TensorFlow on x86_64 Linux and Windows: the CPU wheel, or GPU=1 for NVIDIA's CUDA build
# (macOS and aarch64 take TensorFlow's own wheel either way).
TF_EXTRA := $(if $(GPU),gpu,cpu)
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
# --inexact: each target adds its extras and removes nothing another target installed. Then
# the hook that gives the environment's programs (dvc, its stages) its interpreter on PATH,
# activated or not (digits/runtime/venv_hook.py).
SYNC = $(UV) sync --frozen --inexact --quiet --extra $(TF_EXTRA)
HOOK = $(BIN)/python -m digits.runtime.venv_hook

$(UV):
	$(PYTHON_BOOTSTRAP) -m venv build/uv
	build/uv/bin/python -m pip install --quiet uv==$(UV_VERSION) 2> >(grep -v "is ignored: it is neither" >&2)

# Stamps: sync again only when the lock or pyproject.toml changes.
$(VENV)/.installed: uv.lock pyproject.toml digits/runtime/venv_hook.py | $(UV)
	$(SYNC)
	$(HOOK)
	touch $@

# The tests include the team stack's (tests/e2e/test_team.py), so they install its extra too.
$(VENV)/.installed-test: uv.lock pyproject.toml digits/runtime/venv_hook.py | $(UV)
	$(SYNC) --extra test --extra team
	$(HOOK)
	touch $@ $(VENV)/.installed $(VENV)/.installed-team $(VENV)/.installed-search \
		$(VENV)/.installed-docs $(VENV)/.installed-demo

$(VENV)/.installed-team: uv.lock pyproject.toml digits/runtime/venv_hook.py | $(UV)
	$(SYNC) --extra team
	$(HOOK)
	touch $@ $(VENV)/.installed

$(VENV)/.installed-search: uv.lock pyproject.toml digits/runtime/venv_hook.py | $(UV)
	$(SYNC) --extra search
	$(HOOK)
	touch $@ $(VENV)/.installed

$(VENV)/.installed-demo: uv.lock pyproject.toml digits/runtime/venv_hook.py | $(UV)
	$(SYNC) --extra demo
	$(HOOK)
	touch $@ $(VENV)/.installed

# The lock again after a change to pyproject.toml's dependencies; UPGRADE=1: newest releases.
lock: | $(UV)
	$(UV) lock $(if $(UPGRADE),--upgrade)

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-team: $(VENV)/.installed-team
install-search: $(VENV)/.installed-search
install-demo: $(VENV)/.installed-demo

repro: install plots-page
	$(BIN)/dvc repro

# The whole pipeline on a few steps, as an experiment (params.yaml then holds these two values;
# the last line gives the command for the full run, digits/tracking/quick_hint.py).
# QUICK_STEPS / QUICK_EVAL_EVERY change them.
QUICK_STEPS ?= 500
QUICK_EVAL_EVERY ?= 100
quick: install
	$(BIN)/dvc exp run -S train.steps=$(QUICK_STEPS) -S train.eval_every=$(QUICK_EVAL_EVERY)
	@printf '%s ' "quick run done; params.yaml now says train.steps=$(QUICK_STEPS), train.eval_every=$(QUICK_EVAL_EVERY):"
	@$(BIN)/python -m digits.tracking.quick_hint

# The experiments of the current commit, readable in 80 columns, queued ones included: the
# params that differ and the headline metrics (test and validation accuracy); DVC's Created,
# State and Executor columns, the losses, counts and deps are left out. First, the line that says
# what to commit when the commit holds no results yet (digits/tracking/committed.py).
EXPS_DROP := ^(Created|State|Executor|loss|val_loss|macro_f1|train_images|validation_images|test_images|steps|best_step|stopped_step)$$|.*/
exps: install
	@$(BIN)/python -m digits.tracking.committed
	@$(BIN)/dvc exp show --only-changed --no-pager --drop '$(EXPS_DROP)'

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

# Pull-request review: report.md + report/*.png comparing the workspace with BASE (docs/team.md).
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

# Rank the experiments of the current commit on a validation metric (docs/experiments.md);
# APPLY=1 applies the winner with `dvc exp apply`.
METRIC ?= train.val_accuracy
best: export METRIC := $(METRIC)
best: install
	$(BIN)/python -m search.best --metric "$$METRIC" $(if $(APPLY),--apply)

# Optuna search, each trial a queued DVC experiment (docs/experiments.md). SEARCH_STORAGE: a shared
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

# The MLflow UI on the store the stages write (docs/tracking.md), reachable from this machine
# only. No background job runners (they serve GenAI features) and one worker: light on a laptop.
UI_PORT ?= 5000
ui: export UI_PORT := $(UI_PORT)
ui: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --host 127.0.0.1 --port "$$UI_PORT" \
		--workers 1 --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db"

# The logged model over HTTP with `mlflow models serve`, this environment, 127.0.0.1 only
# (docs/using-the-model.md). MODEL: an MLflow model URI; default: the last run's model.
MODEL ?=
PORT ?= 5002
serve: export MODEL := $(MODEL)
serve: export PORT := $(PORT)
serve: install
	$(BIN)/python -m digits.serving.server --port "$$PORT" $(if $(MODEL),--model "$$MODEL")

# A page to draw a digit on, with the network's view, top three and first layer
# (docs/using-the-model.md), on 127.0.0.1: PORT if given, else a free port; it prints the address.
# MODEL: a .keras file or an MLflow model URI; default models/model.keras.
demo: export MODEL := $(MODEL)
demo: export DEMO_PORT := $(if $(filter file,$(origin PORT)),0,$(PORT))
demo: install-demo
	$(BIN)/python -m digits.serving.demo --port "$$DEMO_PORT" $(if $(MODEL),--model "$$MODEL")

# Fails when test accuracy fell by more than ALLOWED_DROP against BASE (docs/using-the-model.md).
check-metrics: install
	$(BIN)/python -m review.gate --base "$$BASE" --allowed-drop "$$ALLOWED_DROP"

# Point an alias (default champion) at a registered version unless it is worse on the test
# metric (docs/using-the-model.md). NAME default: tracking.register_model; VERSION: latest.
ALIAS ?= champion
PROMOTE_ARGS = $(if $(NAME),--name "$$NAME") $(if $(VERSION),--version "$$VERSION") \
	$(if $(FORCE),--force)
promote: export ALIAS := $(ALIAS)
promote: export NAME := $(NAME)
promote: export VERSION := $(VERSION)
promote: install
	$(BIN)/python -m digits.tracking.promote --alias "$$ALIAS" $(strip $(PROMOTE_ARGS))

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

# A local team stack in $(STACK_DIR) on 127.0.0.1 (docs/team.md): SeaweedFS S3,
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

# The documentation site from docs/ (mkdocs.yml) into build/site; --strict: a broken link, a
# missing anchor or a page left out of the navigation is an error.
$(VENV)/.installed-docs: uv.lock pyproject.toml digits/runtime/venv_hook.py | $(UV)
	$(SYNC) --extra docs
	$(HOOK)
	touch $@ $(VENV)/.installed

docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Training and inference throughput against model.fit, a TF1 loop and PyTorch eager, pipeline
# timings, peak memory -> metrics/bench.json (docs: Performance). DATA_MIRROR set: real
# Fashion-MNIST. BENCH_ARGS="--only portability": the train stage against PyTorch eager
# (full instruction set, capped at AVX2) and the recipes only. TF_CPP_MIN_LOG_LEVEL=2 keeps
# TensorFlow's start-up notices out of the table (errors still show).
.PHONY: bench bench-torch
bench: install bench-torch
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# PyTorch's CPU build, the benchmark's contender (not in the lock: PyPI's Linux x86_64 wheel is
# the CUDA build, several GB). From PyTorch's CPU index by default; TORCH_FIND_LINKS: a folder
# of wheels to take it from instead, with TORCH naming the release (say torch==2.13.0+cpu).
TORCH ?= torch
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
bench-torch: install
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		if [ -n "$$TORCH_FIND_LINKS" ]; then where="--find-links $$TORCH_FIND_LINKS"; \
		else where="--index-url $$TORCH_INDEX --extra-index-url https://pypi.org/simple"; fi; \
		$(UV) pip install --quiet --python $(BIN)/python $$where "$$TORCH" \
			|| echo "PyTorch not installed: the bench times the train stage without it"; \
	fi

clean-venv:
	rm -rf $(VENV)
