# wfbook: one entry point. `make study` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= default
RUN ?= $(PROFILE)
# GGUF weights (wfutils.weights registry names) the prompted arm of each profile serves, fetched by
# `make models`: the default profile's Qwen2.5-Coder-0.5B, the large one's 1.5B too; smoke serves the
# SmolLM2 GGUF of the environment and paper a remote endpoint. Override: make models MODELS="..."
MODELS_smoke :=
MODELS_paper :=
MODELS_large := qwen2.5-coder-0.5b qwen2.5-coder-1.5b
MODELS ?= $(if $(filter smoke paper large,$(PROFILE)),$(MODELS_$(PROFILE)),qwen2.5-coder-0.5b)

.PHONY: help env models study smoke book book-reference reference check-book test test-integration test-all bench lab clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/\1\t\2/' | awk -F'\t' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

env: $(STAMP)  ## create or update the virtual environment

models: env  ## fetch and verify the GGUF weights of the prompted arm (MODELS="qwen2.5-coder-0.5b qwen2.5-coder-1.5b")
	@for name in $(MODELS); do \
	  $(PY) -m wfutils.weights fetch $$name >/dev/null && $(PY) -m wfutils.weights verify $$name || exit 1; \
	done
	@echo "weights ready: $(or $(strip $(MODELS)),none needed for PROFILE=$(PROFILE))"

# The book's "Adapt it to your domain" chapter renders the n8n worked example (results/n8n) beside
# the default run; `make study` runs it after the default profile (EXAMPLE= to skip it).
ADAPT_EXAMPLE := n8n
EXAMPLE ?= $(if $(filter default,$(PROFILE)),$(ADAPT_EXAMPLE),)

study: env models  ## run the whole study (PROFILE=default, then the n8n worked example) and build the book
	$(PY) -m wfutils.pipeline --profile $(PROFILE) --run $(RUN)
	$(if $(EXAMPLE),$(PY) -m wfutils.pipeline --profile $(EXAMPLE) --run $(EXAMPLE))
	$(MAKE) book RUN=$(RUN)

book: env  ## render results/RUN (default: the profile name) as the book in _build/html
	$(PY) -m wfutils.book --run results/$(RUN)

# The committed reference run (results/reference): what the book and a reader need of a default-profile run
# and its n8n worked example, computed on a clean checkout of HEAD (wfutils.study.reference).
REFERENCE := results/reference

book-reference: env  ## render the committed reference run as the book (no model loaded; about a minute)
	$(PY) -m wfutils.book --reference $(REFERENCE)

reference: env  ## maintainers: refresh results/reference (make study on a clean checkout of HEAD, ~2 h)
	@git diff --quiet HEAD -- || echo "note: uncommitted changes are not in the reference; it is computed from HEAD $$(git rev-parse --short HEAD)"
	@set -e; work=$$(mktemp -d); checkout=$$work/wfbook; \
	shared=$$($(PY) -c 'from wfutils.data.corpora import shared_data_root; print(shared_data_root().resolve())'); \
	git clone --quiet --no-checkout "$(CURDIR)" "$$checkout"; \
	git -C "$$checkout" checkout --quiet --detach "$$(git rev-parse HEAD)"; \
	start=$$(date +%s); \
	WFBOOK_SHARED_DATA="$$shared" $(MAKE) -C "$$checkout" study PROFILE=default EXAMPLE=$(ADAPT_EXAMPLE) \
	  || { echo "the study failed; its checkout is kept in $$checkout"; exit 1; }; \
	$(PY) -m wfutils.study.reference copy "$$checkout/results/default" --adapt-run "$$checkout/results/$(ADAPT_EXAMPLE)" \
	  --to $(REFERENCE) --study-seconds $$(( $$(date +%s) - start )); \
	rm -rf "$$work"
	$(PY) -m wfutils.study.reference check $(REFERENCE)

check-book:  ## open the built book in headless Chromium: figures load, glued numbers present
	$(PY) -m wfutils.study.bookcheck --html _build/html --screenshot results/$(RUN)/book-evaluation.png

smoke: env  ## the smoke profile end to end (minutes), then the browser check
	$(MAKE) study PROFILE=smoke
	$(MAKE) check-book RUN=smoke

test: env  ## the test suite (fast; slow end-to-end checks are `make test-all`)
	$(PY) -m pytest -m "not slow and not integration" -q

test-integration: env  ## the longer integration checks CI runs after `make test` (the own-corpus end-to-end run included)
	$(PY) -m pytest -m integration -q

test-all: env  ## every test, the slow end-to-end ones included
	$(PY) -m pytest -q

bench: env  ## speed benchmarks, printing ratios against baselines measured in the same run
	$(PY) benchmarks/flowsim_bench.py
	$(PY) benchmarks/data_bench.py
	$(PY) benchmarks/eval_bench.py
	$(PY) benchmarks/slm_bench.py
	$(PY) benchmarks/llm_bench.py

lab: env  ## open the notebooks in JupyterLab (jupyter notebook works too: .venv/bin/jupyter notebook)
	$(VENV)/bin/jupyter lab notebooks

clean:  ## remove the built book
	rm -rf _build
