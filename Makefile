# Shortcuts to the commands the README shows. Needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format install clean

run: $(VENV)/.installed  ## web + worker + beat on http://127.0.0.1:8000
	$(PY) -m octopus.launcher run

test: $(VENV)/.installed  ## the whole suite (embedded defaults; honours DATABASE_URL/REDIS_URL)
	$(PY) -m octopus.launcher test $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "octopus: Python 3.11+ is needed, found " + sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) var/*.sqlite3 staticfiles
