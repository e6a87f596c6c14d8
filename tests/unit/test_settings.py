"""server/settings.py as a fresh checkout meets it: the generated secret key, var/ and the SQLite file are
private from their first byte, processes starting together agree on one key, DEBUG stays on loopback, and
``check --deploy`` says what docs/deploy.md says it does.

Each test imports the settings in real subprocesses, with umask 0: every mode asserted here is the one
the code asks for, not one the umask gave.
"""

import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.privatefiles import create_once

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
SUBPROCESS_TIMEOUT = 60

# Waits for a line on stdin (so that several start together), then imports the settings and reports.
IMPORT_SETTINGS = """
import json, os, sys
sys.stdin.readline()
from server import settings
print(json.dumps({"key": settings.SECRET_KEY, "database": str(settings.DATABASES["default"]["NAME"])}))
"""

# Opens the database as Django would (WAL) and reports the modes of the files SQLite made beside it.
WRITE_IN_WAL_MODE = """
import os, sqlite3, stat, sys
from server import settings
name = settings.DATABASES["default"]["NAME"]
connection = sqlite3.connect(name)
connection.execute("PRAGMA journal_mode=WAL")
connection.execute("CREATE TABLE t (x)")
connection.execute("INSERT INTO t VALUES (1)")
connection.commit()
for suffix in ("", "-wal", "-shm"):
    print(suffix or "db", oct(stat.S_IMODE(os.stat(name + suffix).st_mode)))
connection.close()
"""


def settings_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """A machine with nothing configured: no secret, no database URL, var/ where the test says."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_"))}
    env.update(CONDUCTOR_VAR_DIR=str(var_dir), PYTHONPATH=str(REPO_ROOT))
    env.update(extra)
    return env


def start_python(code: str, env: dict[str, str]) -> subprocess.Popen:
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, umask=0, text=True, **pipes)


def run_python(code: str, env: dict[str, str]) -> str:
    process = start_python(code, env)
    out, err = process.communicate("go\n", timeout=SUBPROCESS_TIMEOUT)
    assert process.returncode == 0, err
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the generated secret key, var/ and the database file ----------------------------------------


def test_a_fresh_start_makes_var_0700_and_the_key_and_the_database_0600(tmp_path):
    var = tmp_path / "var"

    run_python(IMPORT_SETTINGS, settings_env(var))

    assert mode(var) == 0o700
    assert mode(var / "secret_key") == 0o600
    assert mode(var / "conductor.sqlite3") == 0o600
    assert sorted(p.name for p in var.iterdir()) == ["conductor.sqlite3", "secret_key"]  # nothing staged


def test_the_generated_key_is_long_and_random_and_kept(tmp_path):
    var = tmp_path / "var"

    first = run_python(IMPORT_SETTINGS, settings_env(var))
    again = run_python(IMPORT_SETTINGS, settings_env(var))

    key = (var / "secret_key").read_text().strip()
    assert len(key) >= 50
    assert f'"key": "{key}"' in first
    assert first == again


def test_processes_starting_together_end_with_the_same_key(tmp_path):
    var = tmp_path / "var"
    env = settings_env(var)
    processes = [start_python(IMPORT_SETTINGS, env) for _ in range(8)]
    for process in processes:  # all of them import the settings once every one has started
        process.stdin.write("go\n")
        process.stdin.flush()

    outputs = [process.communicate(timeout=SUBPROCESS_TIMEOUT) for process in processes]

    assert [process.returncode for process in processes] == [0] * 8, [err for _, err in outputs]
    keys = {re.search(r'"key": "([^"]+)"', out).group(1) for out, _ in outputs}
    assert keys == {(var / "secret_key").read_text().strip()}
    assert mode(var / "secret_key") == 0o600
    assert sorted(p.name for p in var.iterdir()) == ["conductor.sqlite3", "secret_key"]


def test_the_loser_of_a_race_reads_the_winners_key_and_writes_nothing(tmp_path):
    path = tmp_path / "secret_key"
    assert create_once(path, "winner") == "winner"

    assert create_once(path, "loser") == "winner"
    assert path.read_text() == "winner"
    assert list(tmp_path.iterdir()) == [path]


def test_an_empty_key_file_is_refused_with_what_to_do(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    (var / "secret_key").write_text("")

    process = start_python(IMPORT_SETTINGS, settings_env(var))
    _, err = process.communicate("go\n", timeout=SUBPROCESS_TIMEOUT)

    assert process.returncode != 0
    assert f"{var / 'secret_key'} is empty: delete it" in err


def test_a_key_from_the_environment_writes_no_file(tmp_path):
    var = tmp_path / "var"

    out = run_python(IMPORT_SETTINGS, settings_env(var, DJANGO_SECRET_KEY="k" * 60))

    assert '"key": "' + "k" * 60 in out
    assert not (var / "secret_key").exists()


def test_sqlite_wal_and_shm_files_are_0600_like_the_database(tmp_path):
    out = run_python(WRITE_IN_WAL_MODE, settings_env(tmp_path / "var"))

    assert out.split("\n")[:3] == ["db 0o600", "-wal 0o600", "-shm 0o600"]


def test_a_database_url_in_a_new_directory_makes_it_0700_and_the_file_0600(tmp_path):
    database = tmp_path / "elsewhere" / "conductor.db"

    run_python(IMPORT_SETTINGS, settings_env(tmp_path / "var", DATABASE_URL=f"sqlite:///{database}"))

    assert mode(database.parent) == 0o700
    assert mode(database) == 0o600


def test_an_in_memory_database_makes_no_file(tmp_path):
    env = settings_env(tmp_path / "var", DATABASE_URL="sqlite:///:memory:", DJANGO_SECRET_KEY="k" * 60)
    process = subprocess.run([sys.executable, "-c", IMPORT_SETTINGS], cwd=tmp_path, env=env, input="go\n",
                             capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)  # fmt: skip

    assert process.returncode == 0, process.stderr
    assert list(tmp_path.iterdir()) == []


# --- make run: DEBUG only on a loopback address ----------------------------------------------------


def make_run_command(addr: str) -> str:
    """The line make run would run to start the server (make -n prints it and runs nothing)."""
    made = subprocess.run(["make", "-n", "run", f"ADDR={addr}"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT)  # fmt: skip
    assert made.returncode == 0, made.stderr
    [line] = [line for line in made.stdout.splitlines() if "runtasks --serve" in line]
    return line


@pytest.mark.parametrize(
    "addr", ["0.0.0.0:8000", "[::]:8000", "192.168.1.20:8000", "example.com:80", "127.evil.example:8000"]
)
def test_make_run_on_an_address_others_reach_turns_debug_off(addr):
    command = make_run_command(addr)

    assert command.startswith(f"DJANGO_DEBUG=0 .venv/bin/python manage.py runtasks --serve {addr}")


@pytest.mark.parametrize("addr", ["127.0.0.1:8000", "127.0.0.2:8080", "localhost:8000", "[::1]:8000", "8000"])
def test_make_run_on_loopback_turns_debug_on_unless_told_otherwise(addr):
    command = make_run_command(addr)

    assert command.startswith("DJANGO_DEBUG=${DJANGO_DEBUG:-1} .venv/bin/python manage.py runtasks --serve")


# --- behind TLS: what check --deploy says, as docs/deploy.md says it -------------------------------


def doc_block(marker: str) -> str:
    """The fenced block after ``<!-- deploy: marker -->`` in docs/deploy.md."""
    text = DEPLOY_DOC.read_text()
    found = re.search(rf"<!-- deploy: {re.escape(marker)} -->\n```\w*\n(.*?)```", text, re.DOTALL)
    assert found, f"docs/deploy.md has no block marked {marker!r}"
    return found.group(1)


def deploy_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """docs/deploy.md's environment file, on this machine: var/ in tmp_path, and no task modules (the
    page's are an example project's)."""
    env = dict(line.split("=", 1) for line in doc_block("conductor.env").splitlines() if line)
    del env["CONDUCTOR_TASK_MODULES"]
    env.update(CONDUCTOR_VAR_DIR=str(tmp_path / "var"), PATH=os.environ["PATH"], **overrides)
    return env


def check_deploy(env: dict[str, str]) -> str:
    checked = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    return checked.stdout + checked.stderr


def test_check_deploy_says_exactly_what_the_deploy_doc_says(tmp_path):
    secret = secrets.token_urlsafe(50)  # generated as the page says

    said = check_deploy(deploy_env(tmp_path, DJANGO_SECRET_KEY=secret))

    assert said == doc_block("check --deploy")


def test_the_deploy_docs_placeholder_secret_is_reported(tmp_path):
    env = deploy_env(tmp_path)
    assert env["DJANGO_SECRET_KEY"] == "CHANGE-ME"

    said = check_deploy(env)

    assert "(conductor.W003) SECRET_KEY is a well-known placeholder" in said
    assert "(security.W009)" in said
    assert "secrets.token_urlsafe(50)" in said


SECURE_REQUEST = """
import django
django.setup()
from django.test import Client
response = Client().get("/admin/login/", HTTP_HOST="conductor.example.com", HTTP_X_FORWARDED_PROTO="{proto}")
print(response.status_code, response.headers.get("Strict-Transport-Security"),
      response.cookies["csrftoken"]["secure"])
"""


@pytest.mark.parametrize(
    ("proto", "expected"),
    [
        ("https", "200 max-age=31536000; includeSubDomains True"),
        ("http", "200 None True"),  # no HSTS over plain HTTP (RFC 6797), the cookie still Secure
    ],
)
def test_behind_the_tls_proxy_pages_carry_hsts_and_secure_cookies(tmp_path, proto, expected):
    env = deploy_env(tmp_path, DJANGO_SECRET_KEY=secrets.token_urlsafe(50), DATABASE_URL="sqlite://:memory:",
                     REDIS_URL="", DJANGO_SETTINGS_MODULE="server.settings")  # fmt: skip
    code = SECURE_REQUEST.format(proto=proto)
    answered = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=SUBPROCESS_TIMEOUT)  # fmt: skip
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == expected
