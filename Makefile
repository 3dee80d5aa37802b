# Two set-up commands: `make run` and `make test`. Each creates .venv and installs what it
# needs on first use (and again whenever pyproject.toml or requirements.lock changes), at
# the exact versions requirements.lock pins.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock

# Demo credentials for `make run` only; set the variables to override them.
DEMO_ENV := EDUME_WEBHOOK_SECRETS="$${EDUME_WEBHOOK_SECRETS:-demo-webhook-secret}" \
            EDUME_LINK_SECRET="$${EDUME_LINK_SECRET:-demo-link-secret}" \
            WORKER_API_TOKENS="$${WORKER_API_TOKENS:-demo-api-token}" \
            WORKER_LINK_TOKENS="$${WORKER_LINK_TOKENS:-demo-link-token}"

.PHONY: run test bench lint lock clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade -c $(LOCK) pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(DEMO_ENV) $(BIN)/edume-streams dev

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -c "import granian" 2>/dev/null || $(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[bench]'
	$(BIN)/python bench/worker_bench.py --broker $${BENCH_BROKER:-both}
	@command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
	$(BIN)/python bench/ingress_bench.py --broker $${BENCH_BROKER:-both}

lint: $(STAMP)
	$(BIN)/ruff check streams schemas tests bench
	$(BIN)/mypy

# Pin again: the newest versions pyproject.toml allows, installed in a scratch virtualenv
# and frozen (pip included; setuptools, wheel and the project itself left out). Run the
# tests before committing the new file.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev,bench]'
	{ sed -n '/^#/p' $(LOCK); .lock-venv/bin/python -m pip freeze --all --exclude-editable \
	  | grep -v '^setuptools==\|^wheel=='; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
