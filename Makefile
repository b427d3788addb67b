# Claire de Binare — `make run` starts the system, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15
STRATEGY_CACHE_TEST_URL ?= redis://127.0.0.1:6379/14
PORT ?= 8000

.PHONY: run test test-embedded lint install install-dev migrate clean chromium frontend

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## Front-end libraries (lightweight-charts) from the npm registry, pinned by package-lock.json; Django serves
## node_modules/lightweight-charts/dist as static/vendor/lightweight-charts/ (nothing from a CDN, nothing committed).
node_modules/.installed: package.json package-lock.json
	npm ci
	touch $@

frontend: node_modules/.installed
install: $(VENV)/.runtime frontend
install-dev: $(VENV)/.dev frontend

## Embedded mode: SQLite, in-process tasks, simulated market, http://127.0.0.1:$(PORT) (make run PORT=8080)
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	$(PY) manage.py serve --port "$(PORT)"

## Debian's Chromium for the Playwright browser tests (Playwright's own browser download is not used).
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) \
		|| echo "could not install chromium: the browser tests will skip (or fail under CI)"

## The whole suite against this machine's PostgreSQL and Redis, after the layer contract (pyproject.toml).
test: install-dev chromium
	$(VENV)/bin/lint-imports
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) STRATEGY_CACHE_URL=$(STRATEGY_CACHE_TEST_URL) $(PY) -m pytest $(PYTEST_ARGS)

## The suite without PostgreSQL or Redis; tests that need them are skipped.
test-embedded: install-dev
	$(VENV)/bin/lint-imports
	env -u DATABASE_URL -u REDIS_URL -u STRATEGY_CACHE_URL CDB_EMBEDDED_TESTS=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache node_modules
