"""Django settings of the two Django peers: django-tasks-db (BENCH_PEER=tasks_db) and django-q2 (q2).

The SQLite options are Conductor's own (server.settings.sqlite_options: WAL, synchronous=NORMAL, a 30 s busy
timeout, IMMEDIATE transactions), so the peers and Conductor run on the same kind of file; everything else is
each peer's default, apart from one worker (django-q2's default is one per CPU).
"""

import os

PEER = os.environ.get("BENCH_PEER", "tasks_db")

SECRET_KEY = "bench-peers-only"
DEBUG = False  # DEBUG would keep every query in memory, and turn on db_worker's autoreloader
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_PEER_DB", "peer.sqlite3"),
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
        },
    }
}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]

if PEER == "tasks_db":
    INSTALLED_APPS += ["django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
elif PEER == "q2":
    INSTALLED_APPS += ["django_q", "bench.peers.q2_app.BenchQ2Config"]
    Q_CLUSTER = {"name": "bench", "orm": "default", "workers": 1}
