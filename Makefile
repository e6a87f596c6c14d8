# Conductor: `make run` and `make test` set everything up on a fresh clone.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
ADDR ?= 127.0.0.1:8000

.PHONY: run test lint bench venv clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@echo "==> Creating the virtualenv in $(VENV) and installing pinned dependencies"
	@test -x $(PY) || "$$(scripts/find-python)" -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

run: venv
	@echo "==> Migrating the database (var/conductor.sqlite3 unless DATABASE_URL is set)"
	@$(PY) manage.py migrate --noinput
	@echo "==> Loading the demo tasks"
	@$(PY) manage.py loaddemo
	@echo "==> Starting the runner (Ctrl-C once to finish running tasks, twice to stop at once)"
	@$(PY) manage.py runtasks

test: venv
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) manage.py check --fail-level WARNING
	@$(PY) manage.py makemigrations --check --dry-run >/dev/null || \
		(echo "Models and migrations differ: run manage.py makemigrations" && exit 1)
	@$(PY) -m pytest -n 2 --dist loadgroup

lint: venv
	@$(PY) -m ruff check --fix .
	@$(PY) -m ruff format .

bench: venv
	@$(PY) bench/run.py

clean:
	rm -rf $(VENV) var test-output
