"""Migration 0006: existing runs take their task's queue and function, and its indexes replace three.

Migrates this worker's test database back to 0005, writes rows with the models as they were then,
migrates forward, and leaves the schema at the latest migration for the tests after it.
"""

from collections.abc import Iterator

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from app.taskrun import TaskRun

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("conductor", "0005_task_stamps_by_database_clock")]
AFTER = [("conductor", "0006_run_queue_func")]
GONE = {"run_task_recent", "conductor_taskrun_task_id_f602d490", "conductor_taskrun_runner_id_8d69dcd9"}
NEW = {"run_queue_page", "run_func_page"}


def migrate(targets: list[tuple[str, str]]) -> Apps:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()  # what is applied now
    return executor.loader.project_state(targets).apps


def latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def run_indexes() -> set[str]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TaskRun._meta.db_table)
    return {name for name, facts in constraints.items() if facts["index"] and not facts["primary_key"]}


@pytest.fixture
def at_0005() -> Iterator[Apps]:
    yield migrate(BEFORE)
    migrate(latest())


def test_0006_fills_existing_runs_from_their_task_and_swaps_the_indexes(at_0005):
    Task, Run = at_0005.get_model("conductor", "Task"), at_0005.get_model("conductor", "TaskRun")
    mail = Task.objects.create(name="mail", task_id="mail", func="tests.functions.add", queue="mail")
    plain = Task.objects.create(name="plain", task_id="plain", func="tests.functions.say")
    runs = {Run.objects.create(task=task).pk: task for task in (mail, mail, plain)}
    assert run_indexes() & (GONE | NEW) == GONE

    migrate(AFTER)

    stored = dict(TaskRun.objects.values_list("pk", "queue"))
    assert stored == {pk: task.queue for pk, task in runs.items()}
    assert dict(TaskRun.objects.values_list("pk", "func")) == {pk: task.func for pk, task in runs.items()}
    assert run_indexes() & (GONE | NEW) == NEW


def test_0006_reversed_gives_back_the_indexes_it_dropped(at_0005):
    migrate(AFTER)
    migrate(BEFORE)
    assert run_indexes() & (GONE | NEW) == GONE
