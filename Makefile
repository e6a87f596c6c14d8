# Conductor: `make run` and `make test` set everything up on a fresh clone.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
# The second pass of make test (make test PG_URL=... REDIS_URL=...); the first is always SQLite and the
# in-memory layer. scripts/require-services.py and the acceptance tests read TEST_POSTGRES_URL and
# TEST_REDIS_URL instead (README, "Layout and tests").
PG_URL ?= postgres://postgres@127.0.0.1:5432/conductor
REDIS_URL ?= redis://127.0.0.1:6379/0
ADDR ?= 127.0.0.1:8000
# DEBUG pages show tracebacks and settings to whoever connects: make run turns DEBUG on (unless
# DJANGO_DEBUG says otherwise) only for a loopback ADDR, and forces it off for any other.
RUN_DEBUG := $(if $(shell scripts/is-loopback '$(ADDR)' && echo loopback),$${DJANGO_DEBUG:-1},0)
# Debian packages the tests use: Chromium (driven by Playwright, no browser download), libfaketime
# (runners with skewed clocks), tmux (a real terminal for use_pdb) and Node.js (the dashboard's modules).
DEBIAN_TOOLS := /usr/bin/chromium /usr/bin/faketime /usr/bin/tmux /usr/bin/node
DEBIAN_PACKAGES := chromium faketime tmux nodejs
# make bench measures peer task runners too, installed into a virtualenv of their own (never Conductor's).
BENCH_VENV := .bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed-$(shell cat bench/requirements-peers.txt | cksum | cut -d' ' -f1)

.PHONY: run test lint bench bench-venv venv clean

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
	@$(PY) manage.py ensureadmin
	@echo "==> Loading the demo tasks"
	@$(PY) manage.py loaddemo
	@echo "==> Starting the runner with the dashboard at http://$(ADDR)/dashboard/"
	@echo "    (Ctrl-C once to finish running tasks, twice to stop at once)"
	@DJANGO_DEBUG=$(RUN_DEBUG) $(PY) manage.py runtasks --serve $(ADDR)

$(DEBIAN_TOOLS):
	@echo "==> Installing the Debian packages the tests use: $(DEBIAN_PACKAGES) (needs root)"
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(DEBIAN_PACKAGES)

test: venv $(DEBIAN_TOOLS)
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) manage.py check --fail-level WARNING
	@$(PY) manage.py makemigrations --check --dry-run >/dev/null || \
		(echo "Models and migrations differ: run manage.py makemigrations" && exit 1)
	@$(PY) scripts/require-services.py
	@echo "==> Tests on SQLite (the embedded default)"
	@DATABASE_URL= REDIS_URL= $(PY) -m pytest -n 2 --dist loadgroup
	@echo "==> The unit, integration and acceptance tests again on PostgreSQL and Redis"
	@DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) -m pytest -n 2 --dist loadgroup tests/unit tests/integration tests/acceptance tests/conformance

lint: venv
	@$(PY) -m ruff check --fix .
	@$(PY) -m ruff format .

bench-venv: $(BENCH_STAMP)

$(BENCH_STAMP): bench/requirements-peers.txt
	@echo "==> Creating $(BENCH_VENV) with the peer task runners that make bench measures"
	@test -x $(BENCH_VENV)/bin/python || "$$(scripts/find-python)" -m venv $(BENCH_VENV)
	@echo '*' > $(BENCH_VENV)/.gitignore
	@$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements-peers.txt
	@rm -f $(BENCH_VENV)/.installed-*
	@touch $@

bench: venv bench-venv
	@$(PY) bench/run.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) var test-output
