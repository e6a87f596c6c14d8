"""Fail loudly, with the fix, when a service the tests need is not reachable (never skip)."""

import os
import sys

import psycopg

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def main() -> int:
    try:
        psycopg.connect(PG_URL, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        print(
            f"PostgreSQL is not reachable at {PG_URL}: {exc}\n"
            "The tests run on PostgreSQL too. Start it, e.g. "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
