# The project's vocabulary: run, test, train, lint.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test train lint bench tools clean

$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

## run: start Redis (bundled unless REDIS_URL is set), a worker and the API in the foreground
run: $(STAMP)
	$(PY) -m core.launcher

## train: train the Iris classifier and register it as a new model version
train: $(STAMP)
	$(PY) -m training.train

## test: the whole suite against a real Redis and real Celery workers
test: $(STAMP) tools
	$(PY) -m pytest

## bench: measure the service on a private Redis and print figures beside their baselines
bench: $(STAMP)
	$(PY) -m bench

## tools: docker-compose (Debian's package) validates docker-compose.yml without an engine
tools:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null) \
	      || echo "note: could not install docker-compose; its check will be skipped"; \
	  else echo "note: docker-compose not installed; its check will be skipped"; fi; }

lint: $(STAMP)
	$(VENV)/bin/ruff check core api worker training cli bench tests
	$(VENV)/bin/ruff format --check core api worker training cli bench tests

clean:
	rm -rf $(VENV) models .pytest_cache
