"""app.rows: the hot path's shortcuts give what the ORM's own field methods give, on this database."""

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from app.rows import Rows, preparer
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


MOMENTS = [
    MOMENT,
    MOMENT.replace(microsecond=0),
    MOMENT.astimezone(timezone(timedelta(hours=5, minutes=30))),
    MOMENT.astimezone(ZoneInfo("America/New_York")),
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_datetime_in_any_zone_is_prepared_as_the_orm_prepares_it(moment: datetime) -> None:
    field = Task._meta.get_field("next_run")
    assert _comparable(preparer(field, connection)(moment)) == _comparable(
        field.get_db_prep_save(moment, connection)
    )


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_stored_datetime_is_read_back_as_the_orm_reads_it(moment: datetime) -> None:
    task = Task.objects.create(name="t", func="tests.functions.add", args_in={"a": 1}, next_run=moment)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT next_run FROM {Task._meta.db_table} WHERE id = %s", [task.pk])
        (raw,) = cursor.fetchone()
    read = Rows(Task, connection).convert("next_run", raw)
    by_orm = Task.objects.get(pk=task.pk).next_run
    assert (read, read.utcoffset(), read.tzinfo) == (by_orm, by_orm.utcoffset(), by_orm.tzinfo)


def test_a_null_datetime_is_read_as_none() -> None:
    assert Rows(Task, connection).convert("next_run", None) is None


def _comparable(value):
    """JSON adapters (psycopg's Jsonb) compare by identity: compare what they wrap."""
    return getattr(value, "obj", value)
