# Everyday commands. `make run` and `make test` work on a fresh clone.
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format check serve demo screenshot chromium clean

# Development is asked for, never assumed: DEBUG is off unless set (playground/settings.py).
# These targets turn it on (a DEBUG in the environment still wins); `serve` refuses it.
run test lint format demo screenshot: export DEBUG ?= true

$(PY):
	"$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

## run: set up, migrate, start the offline demo upstream (when no API key is set) and the app
run: $(VENV)/.runtime
	@$(PY) manage.py migrate --noinput
	@$(PY) manage.py demo_upstream --only-if-demo & demo=$$!; \
	trap 'kill $$demo 2>/dev/null' EXIT INT TERM; \
	$(PY) manage.py upstream_status; \
	echo "Open http://$(HOST):$(PORT)/ and sign up (any username, a password of 8+ characters) to start chatting."; \
	$(PY) manage.py runserver $(HOST):$(PORT)

## test: set up (including Debian's Chromium for the browser tests) and run the whole suite
test: $(VENV)/.dev chromium
	$(PY) -m pytest $(PYTEST_ARGS)

## chromium: install Debian's Chromium for the browser tests if it is missing
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

## lint: ruff and the migrations check
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## demo: only the offline demo upstream, on port 8001
demo: $(VENV)/.runtime
	$(PY) manage.py demo_upstream

## serve: the production server (see docs/deploy.md); needs SECRET_KEY, DEBUG=false, ALLOWED_HOSTS
serve: $(VENV)/.runtime
	@$(PY) -c "import playground.asgi"  # refuses DEBUG=true with a message, before anything runs
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput
	$(VENV)/bin/uvicorn playground.asgi:application --host "$${HOST:-0.0.0.0}" --port "$${PORT:-8000}" \
	  --workers "$${WEB_CONCURRENCY:-2}" --timeout-graceful-shutdown 30

## screenshot: regenerate docs/screenshot.png in the real browser
screenshot: $(VENV)/.dev chromium
	$(PY) scripts/screenshot.py docs/screenshot.png

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
