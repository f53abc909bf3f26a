# Two commands set everything up on a fresh machine:
#   make demo   install into .venv and the sandboxes, then run the main job on embedded defaults (prt demo)
#   make test   install into .venv and the sandboxes, then run the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false

.PHONY: install sandbox demo test lint docs bench-docs examples image base-trixie lock clean deploy

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The sandboxes the machine supports: Docker (+ gVisor) and the bubblewrap rootfs. Needs root on
# Debian; elsewhere it says what is missing and carries on (QA then uses what can run, or stops).
sandbox:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  docker/setup-host.sh && docker/build-offline.sh; \
	else \
	  echo "make sandbox: not root on Debian; install docker, bubblewrap and debootstrap yourself, then run docker/build-offline.sh"; \
	fi

demo: install sandbox
	$(BIN)/prt demo

test: install sandbox
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The tables in docs/ that describe code (verdicts, quarantine reasons, rubric, heuristic rules,
# settings, commands, docs/tables.md), regenerated from it; tests/docs fails when they drift.
docs: install
	$(BIN)/python docs/generate.py

# Measure every benchmark on this machine and put the results into docs/performance.md.
bench-docs: install sandbox
	$(BIN)/prt bench --json docs/bench/ingest.json
	$(BIN)/prt bench --traces 2000 --events 500 --repeat 3 --json docs/bench/ingest-2000x500.json
	$(BIN)/prt bench --qa --json docs/bench/qa.json
	$(BIN)/prt bench --judge --json docs/bench/judge.json
	$(BIN)/prt bench --read --json docs/bench/read.json
	$(BIN)/prt bench --export --json docs/bench/export.json
	$(BIN)/prt bench --latency --json docs/bench/latency.json
	$(BIN)/prt bench --freshness --json docs/bench/freshness.json
	$(BIN)/python docs/generate.py

examples: install
	$(BIN)/python examples/make_examples.py

image:
	PRT_REBUILD_IMAGE=1 docker/build-offline.sh

# Another base for QA environments: Debian trixie (Python 3.13); bullseye gives 3.9 the same way.
base-trixie:
	PRT_DEBIAN_SUITE=trixie docker/build-offline.sh

# Register the deployments of prefect.yaml with the Prefect server at $PREFECT_API_URL.
deploy: install
	$(BIN)/prefect work-pool create process --type process --overwrite >/dev/null
	PRT_PROJECT_DIR=$(CURDIR) $(BIN)/prefect --no-prompt deploy --all

lock: install
	(echo "# Constraints for 'pip install -c requirements.lock -e .[dev]' (Python 3.11, Linux x86_64)."; \
	 echo "# Regenerate: make lock"; $(BIN)/pip freeze --exclude-editable) > requirements.lock

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
