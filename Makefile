# `make demo` and `make test` work on a fresh machine with only Python 3.11:
# both create .venv and install the project into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
WORKDIR ?= runs/demo
GROUNDED_QUESTIONS ?= 60
# CPU runs: without JAX_PLATFORMS JAX probes for a TPU first. XLA:CPU's large
# buffers are mmap'd and freed every step, so each step faults their pages in
# again; glibc's hugetlb tunable asks for transparent huge pages there: a
# `bench` bf16 step's faults fall from 1.5M to 0.13M, its time by ~20%
# (BENCHMARKS.md). A no-op where THP is off or glibc is older than 2.35.
CPU_ENV := JAX_PLATFORMS=cpu GLIBC_TUNABLES=glibc.malloc.hugetlb=1
RUN := $(CPU_ENV) $(BIN)/python -m lamda_jax.main

.PHONY: demo chat chat-research data lint test test-slow bench plan lock venv clean

venv: $(INSTALLED)

# Installs the exact versions the suite passed with (requirements.lock, made by
# `make lock` from setup.py's ranges), so a fresh machine next year gets today's.
$(INSTALLED): setup.py pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

# Re-resolves setup.py's ranges to the newest releases; run `make test` after.
lock: $(INSTALLED)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra=dev --strip-extras --no-emit-index-url \
	  --no-emit-find-links --output-file=requirements.lock setup.py

# Debian's WordNet and fortune files join the embedded corpora, and FreeDict's
# dictionaries give the toolset its translator, when apt-get and root are
# available; otherwise the demo says so and runs on the rest.
DEBIAN_CORPORA := wordnet-base fortunes dict-freedict-eng-fra dict-freedict-fra-eng \
  dict-freedict-eng-deu dict-freedict-deu-eng dict-freedict-eng-spa dict-freedict-spa-eng
data:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  if dpkg -s $(DEBIAN_CORPORA) >/dev/null 2>&1 || \
	     { apt-get update -qq >/dev/null 2>&1; \
	       DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	         $(DEBIAN_CORPORA) >/dev/null 2>&1; }; then \
	    echo "== Debian corpora present: $(DEBIAN_CORPORA)"; \
	  else echo "== Could not install $(DEBIAN_CORPORA); the demo continues without them."; fi; \
	else echo "== No apt-get or not root: $(DEBIAN_CORPORA) skipped; the demo continues without them."; fi

# The paper's runs, each train step compiled ahead of time for the paper's
# chips on simulated CPU devices (a v3 chip is two devices).
plan: $(INSTALLED)
	@for run in lamda_2b:128 lamda_8b:128 lamda_137b:2048; do \
	  config=$${run%:*}; devices=$${run#*:}; echo "== plan configs/$$config.py, compiled for $$devices devices"; \
	  XLA_FLAGS=--xla_force_host_platform_device_count=$$devices $(RUN) --config configs/$$config.py \
	    --mode plan --workdir runs/plan/$$config --config.plan.compile=True || exit 1; \
	done

demo: $(INSTALLED) data
	@for config in configs/tiny.py configs/bench.py configs/lamda_2b.py configs/lamda_8b.py \
	    configs/lamda_137b.py; do \
	  echo "== describe $$config"; $(RUN) --config $$config --mode describe || exit 1; \
	done
	@for config in configs/lamda_2b.py configs/lamda_8b.py configs/lamda_137b.py; do \
	  echo "== plan $$config on the paper's TPU v3 chips"; \
	  $(RUN) --config $$config --mode plan --workdir $(WORKDIR)-plan || exit 1; \
	done
	@echo "== forward pass of configs/tiny.py on real tokens (workdir $(WORKDIR))"
	$(RUN) --config configs/tiny.py --mode forward --workdir $(WORKDIR)
	@echo "== train configs/tiny.py on the mixture (resumes from $(WORKDIR); watch the loss fall)"
	$(RUN) --config configs/tiny.py --mode train --workdir $(WORKDIR)
	@echo "== fine-tune it as generator + SSI/safety discriminators on weakly labelled chitchat"
	$(RUN) --config configs/tiny.py --mode finetune --workdir $(WORKDIR)-finetune \
	  --config.finetune.init_from=$(WORKDIR) --config.train.steps=200
	@echo "== their loss, accuracy and tokens/s curves: $(WORKDIR)/curves.png"
	$(BIN)/python -m experiments.plot_run $(WORKDIR) $(WORKDIR)-finetune --output $(WORKDIR)/curves.png
	@echo "== chat with it: 16 sampled candidates, unsafe ones dropped, ranked by 3 P(sensible) + P(specific) + P(interesting)"
	printf '%s\n' 'hi! how are you doing today?' /candidates 'what do you like to do on weekends?' \
	  /quit | $(RUN) --config configs/tiny.py --mode chat --config.decode.from_run=$(WORKDIR)-finetune
	@echo "== stage two: fine-tune it as LaMDA-Research on dialogs the toolset makes (arithmetic, look-ups, translations, chitchat)"
	$(RUN) --config configs/tiny_research.py --mode finetune --workdir $(WORKDIR)-research \
	  --config.finetune.init_from=$(WORKDIR)-finetune
	@echo "== LaMDA-Base alone vs LaMDA-Base + Research on held-out questions: accuracy, groundedness, citations"
	$(RUN) --config configs/tiny_research.py --mode eval_grounded \
	  --workdir $(WORKDIR)-research/eval_grounded --config.decode.from_run=$(WORKDIR)-research \
	  --config.research.max_questions=$(GROUNDED_QUESTIONS)
	@echo "== a grounded exchange: the model asks the toolset, then answers (/transcript shows how)"
	printf '%s\n' 'what is 135 plus 7721?' /transcript 'what is 2024 minus 1986?' /transcript \
	  'how do you say house in French?' /transcript /quit | \
	  $(RUN) --config configs/tiny_research.py --mode chat --config.decode.from_run=$(WORKDIR)-research
	@echo "== done. Talk to it yourself: make chat (sample-and-rank) or make chat-research"

# An interactive chat with the demo's fine-tuned model (run `make demo` first),
# by sample-and-rank alone or through the research loop.
chat: $(INSTALLED)
	$(RUN) --config configs/tiny.py --mode chat --config.decode.from_run=$(WORKDIR)-finetune

chat-research: $(INSTALLED)
	$(RUN) --config configs/tiny_research.py --mode chat --config.decode.from_run=$(WORKDIR)-research

lint: $(INSTALLED)
	$(BIN)/ruff check .

# Two pytest workers (pytest-xdist): on two cores, one test's compiling and
# Python overlap the other's XLA kernels (measured in the commit that added it).
TEST_WORKERS ?= 2
# Every test not marked slow: under 20 minutes on 2 cores.
test: lint data
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m 'not slow'

# The tests marked slow (training to a goal, whole pipelines, notebooks, crashes
# and resumes in subprocesses); CI (.ci/run) runs them after `make test`.
test-slow: lint data
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m slow

# The benchmark's peer (PyTorch + transformers) lives in its own environment.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet torch==2.13.0 transformers==5.23.0
	touch $@

bench: $(INSTALLED) $(BENCH_VENV)/.installed data
	$(CPU_ENV) $(BIN)/python -m benchmarks.train_throughput \
	  --peer_python=$(BENCH_VENV)/bin/python
	$(CPU_ENV) $(BIN)/python -m benchmarks.input_pipeline
	$(CPU_ENV) $(BIN)/python -m benchmarks.decode_throughput \
	  --peer_python=$(BENCH_VENV)/bin/python
	$(CPU_ENV) $(BIN)/python -m benchmarks.serve_load
	$(CPU_ENV) $(BIN)/python -m benchmarks.research_loop

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs .pytest_cache
