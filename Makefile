# framesvc developer commands.  `make serve` and `make test` bootstrap .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: serve test test-postgres lint fmt bench bench-deps load fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/framesvc serve

test: $(STAMP)
	$(BIN)/ruff check framesvc tests benchmarks
	$(BIN)/pytest

# The same suite on PostgreSQL (docs/configuration.md, "PostgreSQL"): a throwaway cluster
# in a temp dir for the run; PYTEST_ARGS narrows it (e.g. PYTEST_ARGS="tests/test_auth.py").
PG_STAMP := $(VENV)/.postgres-stamp
PYTEST_ARGS ?=
$(PG_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(PG_STAMP)

test-postgres: $(PG_STAMP)
	command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)
	tests/with-postgres.sh $(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check framesvc tests benchmarks

fmt: $(STAMP)
	$(BIN)/ruff check --fix framesvc tests benchmarks

# Benchmarks compare against references measured in the same run (ffmpeg, nginx).
bench-deps:
	command -v ffmpeg >/dev/null && command -v nginx >/dev/null && command -v wrk >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ffmpeg nginx-light wrk)

bench: $(STAMP) bench-deps
	$(BIN)/pytest benchmarks --benchmark-only -p no:cacheprovider -o testpaths=benchmarks -o python_files="bench_*.py"

# Soak: simulated annotators against a framesvc started in a temp dir (benchmarks/README.md).
DURATION ?= 600
CONNECTIONS ?= 64
LOAD_REPORT ?= /tmp/framesvc-load-report.json
load: $(STAMP)
	$(BIN)/python benchmarks/load.py --spawn --duration $(DURATION) --connections $(CONNECTIONS) \
		--report $(LOAD_REPORT)

# Schema-driven fuzzing (tests/test_fuzz.py) with a bigger budget and a fresh random seed;
# `make test` runs the same tests derandomized with a small budget.
FUZZ_EXAMPLES ?= 100
FUZZ_SEED ?= random
fuzz: $(STAMP)
	FRAMESVC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FRAMESVC_FUZZ_SEED=$(FUZZ_SEED) \
		$(BIN)/pytest tests/test_fuzz.py -p no:cacheprovider --timeout=1800 -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
