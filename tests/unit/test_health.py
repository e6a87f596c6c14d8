"""Tests for app.health and the /health view: healthy with a database, 503 when it cannot be reached."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_a_process_that_reaches_its_database_is_healthy(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["healthy"] is True
    assert response.json()["checks"]["database"]["ok"] is True


def test_a_process_whose_database_is_unreachable_answers_503():
    # A real server that is not there: port 9 of this machine refuses connections at once.
    env = {**os.environ, "DATABASE_URL": "postgres://postgres@127.0.0.1:9/nowhere"}
    env.pop("REDIS_URL", None)
    code = (
        "import json; from django.test import Client;"
        "r = Client(HTTP_HOST='localhost').get('/health'); print(json.dumps([r.status_code, r.json()]))"
    )
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    status, report = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 503
    assert report["healthy"] is False
    assert report["checks"]["database"]["ok"] is False
    assert "OperationalError" in report["checks"]["database"]["detail"]
