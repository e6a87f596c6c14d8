"""app.rows: the hot path's shortcuts give what the ORM's own field methods give, on this database."""

from datetime import UTC, datetime

import pytest
from django.db import connection

from app.rows import preparer
from app.status import RunStatus
from app.task import Task
from app.taskrun import TaskRun

pytestmark = pytest.mark.django_db

MOMENT = datetime(2026, 11, 25, 12, 30, 15, 123456, tzinfo=UTC)
VALUES = {
    "status": [RunStatus.FINISHED, "finished", None],
    "error": ["Traceback ...\n", "", 5],
    "duration": [0.25, 3, None],
    "thread_ident": [140000000000, None, 2.0],
    "progress": [0.5, 1, None],
    "started_at": [MOMENT, None],
    "output": [{"a": [1, 2]}, "text", 3, None],
}


@pytest.mark.parametrize(("attname", "value"), [(a, v) for a, values in VALUES.items() for v in values])
def test_a_run_field_is_prepared_as_get_db_prep_save_prepares_it(attname: str, value) -> None:
    field = TaskRun._meta.get_field(attname)
    expected = None if value is None else field.get_db_prep_save(value, connection)
    assert _comparable(preparer(field, connection)(value)) == _comparable(expected)


@pytest.mark.parametrize("attname", ["next_run", "last_run", "updated_at", "output", "status", "priority"])
def test_a_task_field_is_prepared_as_get_db_prep_save_prepares_it(attname: str) -> None:
    field = Task._meta.get_field(attname)
    value = {"output": [1, "x"], "status": "waiting", "priority": 3}.get(attname, MOMENT)
    prepared = preparer(field, connection)(value)
    assert _comparable(prepared) == _comparable(field.get_db_prep_save(value, connection))


def _comparable(value):
    """JSON adapters (psycopg's Jsonb) compare by identity: compare what they wrap."""
    return getattr(value, "obj", value)
