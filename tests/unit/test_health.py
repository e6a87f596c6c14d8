"""Tests for app.health and the /health view: healthy with a database, 503 when it cannot be reached."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_a_process_that_reaches_its_database_is_healthy(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["healthy"] is True
    assert body["checks"]["database"] == {"ok": True}
    assert all(check == {"ok": True} for check in body["checks"].values())  # no details, any checks


@pytest.mark.django_db
def test_staff_see_what_each_check_found(admin_client):
    # Through dashboard/health: /health answers before authentication, so always without details.
    check = admin_client.get("/dashboard/health").json()["checks"]["database"]
    assert check == {"ok": True, "detail": connection.vendor}


@pytest.mark.django_db
def test_health_answers_a_probe_that_sends_an_ip_as_host_and_nothing_else_does(client, settings):
    # What a Kubernetes httpGet probe or an AWS ALB health check sends: the pod's address, port included.
    probe = {"Host": "10.1.2.3:8716"}
    assert "10.1.2.3" not in settings.ALLOWED_HOSTS
    response = client.get("/health", headers=probe)
    assert response.status_code == 200
    assert response.json()["healthy"] is True
    assert "no-cache" in response["Cache-Control"]
    # Only that exact path: everything else still gets Django's host check.
    assert client.get("/health/", headers=probe).status_code == 400
    assert client.get("/dashboard/health", headers=probe).status_code == 400
    assert client.get("/admin/login/", headers=probe).status_code == 400


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
    # Anonymous callers learn which check failed; the driver's text (host, port, user) goes to the log.
    assert report["checks"] == {"database": {"ok": False}}
    assert "Health check database failed: OperationalError" in done.stderr
