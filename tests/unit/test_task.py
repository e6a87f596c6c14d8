"""Tests for app.task (Task, its QuerySet, Task.run) and the late-write guard of lifecycle.finish."""

import ast
import math
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db.models import F
from django.utils import timezone

from app import dbclock, lifecycle
from app.lease import DB_USE, Lease
from app.lifecycle import Outcome
from app.registry import register
from app.runnerprocess import RunnerProcess
from app.status import RunStatus, TaskStatus
from app.task import MAX_SECONDS, Task
from app.taskrun import TaskRun
from tests import functions

DOCUMENTED_DEFAULTS = {
    "name": "new_task",
    "task_id": None,
    "func": None,
    "conn": None,
    "args_in": None,
    "loop": False,
    "interval": 100,
    "run_in": 0,
    "kill_time": None,
    "db_use": False,
    "use_pdb": False,
}


@register
def returns_nan() -> float:
    """Returns a float that JSON (and so the database's JSON columns) cannot hold."""
    return math.nan


def make_task(**kwargs) -> Task:
    kwargs.setdefault("func", functions.add)
    kwargs.setdefault("args_in", {"a": 1})
    task = Task(**kwargs)
    task.save()
    return task


# --- construction and defaults -------------------------------------------------------------------


@pytest.mark.parametrize(("field", "default"), DOCUMENTED_DEFAULTS.items())
def test_fresh_task_has_the_documented_default(field, default):
    value = getattr(Task(), field)

    assert value == default
    assert type(value) is type(default)


def test_docstring_documents_exactly_the_defaults_of_the_constructor():
    call = ast.parse(Task.__doc__.split("``")[1], mode="eval").body
    documented = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}

    assert documented == DOCUMENTED_DEFAULTS


def test_task_accepts_every_documented_keyword():
    values = {
        "name": "fetch",
        "task_id": "fetch-1",
        "func": "tests.functions.add",
        "conn": "client-7",
        "args_in": {"a": 2},
        "loop": True,
        "interval": 5.5,
        "run_in": 3,
        "kill_time": 9.0,
        "db_use": True,
        "use_pdb": True,
    }

    task = Task(**values)

    assert {field: getattr(task, field) for field in values} == values


def test_task_refuses_an_undocumented_keyword():
    with pytest.raises(TypeError, match="args"):
        Task(func=functions.add, args={"a": 1})


# --- save ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_save_persists_and_fills_task_id_with_a_uuid_hex():
    task = make_task(name="adder")

    assert len(task.task_id) == 32
    assert uuid.UUID(hex=task.task_id).hex == task.task_id
    stored = Task.objects.get(pk=task.pk)
    assert (stored.name, stored.task_id, stored.args_in) == ("adder", task.task_id, {"a": 1})


@pytest.mark.django_db
def test_save_gives_each_new_task_its_own_task_id():
    assert make_task().task_id != make_task().task_id


@pytest.mark.django_db
def test_save_keeps_a_given_task_id():
    task = make_task(task_id="report-2024")

    assert Task.objects.get(pk=task.pk).task_id == "report-2024"


@pytest.mark.django_db
@pytest.mark.parametrize("run_in", [0, 90, 3600.5])
def test_first_next_run_is_now_plus_run_in(run_in):
    before = timezone.now()
    task = make_task(run_in=run_in)
    after = timezone.now()

    stored = Task.objects.get(pk=task.pk).next_run
    assert before + timedelta(seconds=run_in) <= stored <= after + timedelta(seconds=run_in)


@pytest.mark.django_db
def test_saving_again_keeps_next_run():
    task = make_task(run_in=60)
    first = task.next_run
    task.run_in = 7200
    task.save()

    assert Task.objects.get(pk=task.pk).next_run == first


@pytest.mark.django_db
def test_a_new_task_is_stamped_created_updated_and_due_from_one_reading_of_the_databases_clock():
    before = dbclock.now()
    task = make_task(run_in=0)
    after = dbclock.now()

    stored = Task.objects.get(pk=task.pk)
    assert before <= stored.created_at <= after
    assert stored.created_at == stored.updated_at == stored.next_run  # one reading, not three clocks


@pytest.mark.django_db
def test_saving_again_moves_updated_at_by_the_databases_clock_and_keeps_created_at():
    task = make_task(run_in=60)
    created = task.created_at
    before = dbclock.now()
    task.name = "renamed"
    task.save()
    after = dbclock.now()

    stored = Task.objects.get(pk=task.pk)
    assert stored.created_at == created
    assert before <= stored.updated_at <= after


@pytest.mark.django_db
def test_rows_made_without_save_are_still_stamped():
    before = timezone.now()
    Task.objects.bulk_create([Task(name="bulk", task_id="bulk", func="tests.functions.add", next_run=before)])
    stored = Task.objects.get(name="bulk")
    after = timezone.now()
    assert before <= stored.created_at <= after
    assert before <= stored.updated_at <= after


@pytest.mark.django_db
def test_callable_func_is_stored_as_its_dotted_path():
    task = Task(func=functions.say, args_in={"text": "hi"})

    assert task.func == "tests.functions.say"
    task.save()
    task.refresh_from_db()
    assert task.func == "tests.functions.say"
    assert Task.objects.filter(func="tests.functions.say").count() == 1


def test_assigning_a_callable_to_func_later_stores_its_dotted_path():
    task = Task()
    task.func = functions.fail

    assert task.func == "tests.functions.fail"


# --- validation ----------------------------------------------------------------------------------

ADD = "tests.functions.add"
#: MAX_SECONDS (100 years) as the messages spell it.
MAX = "3155760000"
TOO_LARGE = 1e12

INVALID = [
    # (id, kwargs, field, fragments of the message)
    ("no-func", {}, "func", ["Choose a registered task function"]),
    ("blank-func", {"func": ""}, "func", ["Choose a registered task function"]),
    (
        "unregistered-func",
        {"func": "os.system"},
        "func",
        ["'os.system' is not a registered task function", "(from app import register)"],
    ),
    (
        "args-in-list",
        {"func": ADD, "args_in": [1, 2]},
        "args_in",
        ["args_in must be a JSON object of keyword arguments", "got list"],
    ),
    (
        "args-in-unknown-kwarg",
        {"func": ADD, "args_in": {"a": 1, "zzz": 2}},
        "args_in",
        ["do not fit tests.functions.add", "unexpected keyword argument 'zzz'"],
    ),
    (
        "args-in-missing-arg",
        {"func": ADD, "args_in": {"b": 2}},
        "args_in",
        ["do not fit tests.functions.add", "missing a required argument: 'a'"],
    ),
    ("args-in-none-missing-arg", {"func": ADD}, "args_in", ["missing a required argument: 'a'"]),
    *[
        (
            f"args-in-{name}",
            {"func": ADD, "args_in": {"a": value}},
            "args_in",
            ["args_in must be plain JSON: ", "not JSON compliant"],
        )
        for name, value in (("nan", math.nan), ("inf", math.inf), ("nested-minus-inf", [1, -math.inf]))
    ],
    *[
        (
            f"loop-interval-{value}",
            {"func": ADD, "args_in": {"a": 1}, "loop": True, "interval": value},
            "interval",
            ["A looping task needs an interval above 0 and up to 3155760000 seconds", "e.g. 60"],
        )
        for value in (0, -1, math.nan, math.inf)
    ],
    (
        "loop-interval-too-large",
        {"func": ADD, "args_in": {"a": 1}, "loop": True, "interval": TOO_LARGE},
        "interval",
        ["interval", f"got {TOO_LARGE}"],
    ),
    *[
        (
            f"interval-{value}-without-loop",
            {"func": ADD, "args_in": {"a": 1}, "interval": value},
            "interval",
            [f"interval must be 0 to {MAX} seconds", f"got {value}"],
        )
        for value in (math.nan, math.inf, -math.inf, TOO_LARGE, -TOO_LARGE, -1)
    ],
    *[
        (
            f"run-in-{value}",
            {"func": ADD, "args_in": {"a": 1}, "run_in": value},
            "run_in",
            [f"run_in must be 0 to {MAX} seconds", f"got {value}"],
        )
        for value in (-1, math.nan, math.inf, TOO_LARGE)
    ],
    *[
        (
            f"kill-time-{value}",
            {"func": ADD, "args_in": {"a": 1}, "kill_time": value},
            "kill_time",
            ["kill_time must be above 0 and up to 3155760000 seconds", "leave it empty for no time limit"],
        )
        for value in (0, -1, math.nan, math.inf)
    ],
    (
        "kill-time-too-large",
        {"func": ADD, "args_in": {"a": 1}, "kill_time": TOO_LARGE},
        "kill_time",
        ["kill_time", f"got {TOO_LARGE}"],
    ),
]


CASES = [pytest.param(kwargs, field, fragments, id=case_id) for case_id, kwargs, field, fragments in INVALID]


def assert_names_field_and_fix(exc: ValidationError, field: str, fragments: list[str]) -> None:
    assert field in exc.message_dict, exc.message_dict
    message = " ".join(exc.message_dict[field])
    for fragment in fragments:
        assert fragment in message


@pytest.mark.django_db
@pytest.mark.parametrize(("kwargs", "field", "fragments"), CASES)
def test_full_clean_rejects_with_the_field_and_the_fix(kwargs, field, fragments):
    with pytest.raises(ValidationError) as caught:
        Task(**kwargs).full_clean()

    assert_names_field_and_fix(caught.value, field, fragments)


@pytest.mark.django_db
@pytest.mark.parametrize(("kwargs", "field", "fragments"), CASES)
def test_save_rejects_with_the_field_and_the_fix(kwargs, field, fragments):
    with pytest.raises(ValidationError) as caught:
        Task(**kwargs).save()

    assert_names_field_and_fix(caught.value, field, fragments)
    assert not Task.objects.exists()


def test_max_seconds_is_a_hundred_years_as_the_messages_say():
    assert MAX_SECONDS == 100 * 365.25 * 24 * 3600
    assert f"{MAX_SECONDS:.0f}" == MAX


@pytest.mark.django_db
@pytest.mark.parametrize("via", ["full_clean", "save"])
def test_missing_func_gives_djangos_and_conductors_messages(via):
    task = Task()

    with pytest.raises(ValidationError) as caught:
        getattr(task, via)()

    messages = caught.value.message_dict["func"]
    assert "This field cannot be null." in messages
    assert any("Choose a registered task function (its dotted path)" in message for message in messages)
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_save_reports_every_invalid_field_at_once():
    task = Task(func=ADD, args_in={"a": 1}, run_in=math.nan, kill_time=-1, loop=True, interval=0)

    with pytest.raises(ValidationError) as caught:
        task.save()

    assert set(caught.value.message_dict) == {"run_in", "kill_time", "interval"}
    assert task.next_run is None  # validated before next_run is computed from run_in


VALID = [
    pytest.param({"func": ADD, "args_in": {"a": 1}}, id="required-arg"),
    pytest.param({"func": ADD, "args_in": {"a": 1, "b": 2}}, id="all-args"),
    pytest.param({"func": "tests.functions.stamp"}, id="no-args-none"),
    pytest.param({"func": functions.stamp, "args_in": {}}, id="no-args-empty"),
    pytest.param({"func": ADD, "args_in": {"a": 1}, "loop": True, "interval": 0.5}, id="loop"),
    pytest.param({"func": ADD, "args_in": {"a": 1}, "kill_time": 0.01}, id="kill-time"),
    pytest.param({"func": ADD, "args_in": {"a": 1}, "run_in": 86400}, id="run-in-a-day"),
    pytest.param({"func": ADD, "args_in": {"a": 1}, "conn": "client-1"}, id="conn"),
    pytest.param({"func": functions.hold, "args_in": {"seconds": 1}, "db_use": True}, id="db-use"),
    pytest.param({"func": ADD, "args_in": {"a": 1}, "run_in": MAX_SECONDS}, id="run-in-max"),
    pytest.param(
        {"func": ADD, "args_in": {"a": 1}, "loop": True, "interval": MAX_SECONDS}, id="loop-interval-max"
    ),
    pytest.param({"func": ADD, "args_in": {"a": 1}, "interval": MAX_SECONDS}, id="interval-max"),
    pytest.param({"func": ADD, "args_in": {"a": 1}, "kill_time": MAX_SECONDS}, id="kill-time-max"),
    pytest.param({"func": ADD, "args_in": {"a": 1.5, "b": -0.0}}, id="args-in-finite-floats"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("kwargs", VALID)
def test_valid_task_passes_full_clean_and_save(kwargs):
    Task(**kwargs).full_clean()
    Task(**kwargs).save()

    assert Task.objects.count() == 1


@pytest.mark.django_db
def test_save_with_update_fields_does_not_validate():
    task = make_task()
    Task.objects.filter(pk=task.pk).update(func="tests.functions.gone")
    task.refresh_from_db()
    task.name = "renamed"

    task.save(update_fields=["name"])

    assert Task.objects.get(pk=task.pk).name == "renamed"
    with pytest.raises(ValidationError):
        task.save()


# --- QuerySet ------------------------------------------------------------------------------------


@pytest.fixture
def mixed_tasks():
    now = timezone.now()
    return {
        "now": now,
        "overdue": make_task(name="overdue", next_run=now - timedelta(minutes=5)),
        "due": make_task(name="due", next_run=now - timedelta(seconds=1)),
        "later": make_task(name="later", next_run=now + timedelta(hours=1)),
        "running": make_task(name="running", status=TaskStatus.RUNNING, next_run=now - timedelta(hours=1)),
        "finished": make_task(name="finished", status=TaskStatus.FINISHED, next_run=now - timedelta(hours=2)),
    }


def names(queryset) -> set[str]:
    return set(queryset.values_list("name", flat=True))


@pytest.mark.django_db
def test_due_is_waiting_tasks_whose_next_run_has_come(mixed_tasks):
    assert names(lifecycle.due()) == {"overdue", "due"}


@pytest.mark.django_db
def test_due_at_a_given_time(mixed_tasks):
    now = mixed_tasks["now"]

    assert names(lifecycle.due(now - timedelta(minutes=1))) == {"overdue"}
    assert names(lifecycle.due(now + timedelta(hours=2))) == {"overdue", "due", "later"}


@pytest.mark.django_db
def test_waiting_and_running(mixed_tasks):
    assert names(Task.objects.waiting()) == {"overdue", "due", "later"}
    assert names(Task.objects.running()) == {"running"}


@pytest.mark.django_db
def test_next_due_at_is_the_earliest_waiting_next_run(mixed_tasks):
    assert lifecycle.Claimer(None).next_due_at() == mixed_tasks["overdue"].next_run


@pytest.mark.django_db
def test_next_due_at_is_none_without_waiting_tasks():
    make_task(status=TaskStatus.RUNNING)

    assert lifecycle.Claimer(None).next_due_at() is None


# --- Task.run ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_run_records_a_finished_run_with_output_and_log():
    task = make_task(func=functions.say, args_in={"text": "hello"})
    before = timezone.now()

    run = task.run()

    assert isinstance(run, TaskRun)
    assert run.status == RunStatus.FINISHED
    assert run.output == "hello"
    assert "printed: hello" in run.log
    assert "logged: hello" in run.log
    assert run.error == ""
    assert run.finished_at is not None
    assert run.attempt == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.FINISHED
    assert task.last_status == RunStatus.FINISHED
    assert task.output == "hello"
    assert task.attempts == 1
    assert task.last_run is not None
    assert task.last_run >= before - timedelta(seconds=1)
    assert task.runner is None


@pytest.mark.django_db
def test_run_happens_in_the_calling_thread():
    run = make_task().run()

    assert run.thread_ident == threading.get_ident()
    assert run.thread_name == threading.current_thread().name


@pytest.mark.django_db
def test_run_saves_an_unsaved_task_first():
    task = Task(func=functions.add, args_in={"a": 2, "b": 3})

    run = task.run()

    assert task.pk is not None
    assert run.output == 5


@pytest.mark.django_db
def test_run_of_a_failing_function_records_the_traceback():
    task = make_task(func=functions.fail, args_in={"message": "kaboom"})

    run = task.run()

    assert run.status == RunStatus.FAILED
    assert "Traceback (most recent call last)" in run.error
    assert "ValueError: kaboom" in run.error
    assert run.output is None
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert task.last_status == RunStatus.FAILED
    assert "ValueError: kaboom" in task.error
    assert task.attempts == 1
    assert task.last_run is not None


@pytest.mark.django_db
def test_each_run_increments_attempts():
    task = make_task()

    task.run()
    second = task.run()

    assert task.attempts == 2  # times started, ever
    assert second.attempt == 1  # a successful run ends its retry series: each starts at try 1
    assert task.runs.count() == 2


@pytest.mark.django_db
def test_looping_task_waits_for_previous_next_run_plus_interval():
    task = make_task(loop=True, interval=3600)
    scheduled = task.next_run

    task.run()

    assert task.status == TaskStatus.WAITING
    assert task.next_run == scheduled + timedelta(seconds=3600)


@pytest.mark.django_db
def test_looping_task_run_long_after_its_time_is_the_catch_up_and_is_followed_an_interval_later():
    task = make_task(loop=True, interval=60, next_run=timezone.now() - timedelta(hours=2))

    before = timezone.now()
    run = task.run()
    after = timezone.now()

    assert task.status == TaskStatus.WAITING
    assert run.started_at + timedelta(seconds=60) == task.next_run  # once, not a burst of two
    assert before + timedelta(seconds=60) <= task.next_run <= after + timedelta(seconds=60)


@pytest.mark.django_db
def test_looping_task_keeps_looping_after_a_failure():
    task = make_task(func=functions.fail, args_in={}, loop=True, interval=3600)
    scheduled = task.next_run

    run = task.run()

    assert run.status == RunStatus.FAILED
    assert task.status == TaskStatus.WAITING
    assert task.next_run == scheduled + timedelta(seconds=3600)


@pytest.mark.django_db
def test_db_use_task_refused_while_another_task_holds_the_lease():
    holder = make_task(name="holder", db_use=True)
    assert Lease.objects.acquire(DB_USE, holder.pk, None)
    task = make_task(name="second", db_use=True)

    with pytest.raises(RuntimeError) as caught:
        task.run()

    message = str(caught.value)
    assert task.task_id in message
    assert "db_use" in message
    assert "lease" in message
    task.refresh_from_db()
    assert task.status == TaskStatus.WAITING
    assert task.attempts == 0
    assert not task.runs.exists()
    assert Lease.objects.get(name=DB_USE).task_id == holder.pk


@pytest.mark.django_db
def test_db_use_task_takes_and_releases_the_lease():
    task = make_task(db_use=True)

    run = task.run()

    assert run.status == RunStatus.FINISHED
    assert Lease.objects.get(name=DB_USE).task_id is None


@pytest.mark.django_db
def test_run_refuses_a_task_that_is_already_running():
    task = make_task()
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.RUNNING, fence=5, attempts=1)

    with pytest.raises(RuntimeError, match="already running"):
        task.run()

    assert not task.runs.exists()
    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.fence, stored.attempts) == (TaskStatus.RUNNING, 5, 1)


@pytest.mark.django_db
def test_run_refuses_a_task_that_a_runner_is_running():
    runner = RunnerProcess.objects.create(worker_id="busy-runner", host="h", pid=1)
    task = make_task()
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.RUNNING, runner=runner)

    with pytest.raises(RuntimeError, match="already running"):
        task.run()

    assert not task.runs.exists()


@pytest.mark.django_db
def test_run_of_a_running_db_use_task_releases_the_lease_it_took():
    task = make_task(db_use=True)
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.RUNNING)
    assert not Lease.objects.filter(name=DB_USE, task__isnull=False).exists()

    with pytest.raises(RuntimeError, match="already running"):
        task.run()

    assert not task.runs.exists()
    assert not Lease.objects.filter(name=DB_USE, task__isnull=False).exists()
    other = make_task(name="other", db_use=True)
    assert other.run().status == RunStatus.FINISHED  # the lease is free for the next db_use task


@pytest.mark.django_db
def test_run_of_a_function_returning_nan_is_recorded():
    task = make_task(func=returns_nan, args_in=None)

    run = task.run()

    assert run.status == RunStatus.FINISHED
    assert run.output == "nan"
    assert task.status == TaskStatus.FINISHED
    assert task.output == "nan"


# --- run_effect / next_loop_run -----------------------------------------------------------------

T0 = timezone.now().replace(microsecond=0)


@pytest.mark.parametrize(
    ("status", "task_status"),
    [
        (RunStatus.FINISHED, TaskStatus.FINISHED),
        (RunStatus.FAILED, TaskStatus.FAILED),
        (RunStatus.TIMED_OUT, TaskStatus.TIMED_OUT),
    ],
)
def test_one_off_task_takes_the_status_of_its_run(status, task_status):
    task = Task(func=ADD, next_run=T0)

    effect = lifecycle.run_effect(task, status, T0 + timedelta(seconds=5))

    assert effect["status"] == task_status
    assert effect["series_over"] is True  # the run's retry series is over: attempt back to 0
    assert effect["next_run"] is None  # unchanged
    assert effect["loop_next_run"] is None


@pytest.mark.parametrize("loop", [False, True])
def test_interrupted_run_makes_the_task_due_again_now(loop):
    task = Task(func=ADD, loop=loop, interval=60, next_run=T0)
    now = T0 + timedelta(seconds=5)

    assert lifecycle.run_effect(task, RunStatus.INTERRUPTED, now) == {
        "status": TaskStatus.WAITING,
        "next_run": now,
        "series_over": False,
        "loop_next_run": None,
    }


def _claim_and_finish(task: Task, status: str, between=None) -> Task:
    claimed, run = lifecycle.claim_now(task)
    if between:
        between(claimed)
    assert lifecycle.finish(run, Outcome(status, T0.timestamp(), T0.timestamp() + 1))
    return Task.objects.get(pk=task.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("status", [RunStatus.FINISHED, RunStatus.FAILED, RunStatus.TIMED_OUT])
def test_looping_task_waits_for_its_next_loop_run(status):
    task = Task(func=ADD, args_in={"a": 1}, loop=True, interval=3600)
    task.save()
    scheduled = task.next_run

    after = _claim_and_finish(task, status)

    assert after.status == TaskStatus.WAITING
    assert after.next_run == scheduled + timedelta(seconds=3600)


@pytest.mark.django_db
def test_stop_looping_during_a_run_ends_the_task_after_it():
    task = Task(func=ADD, args_in={"a": 1}, loop=True, interval=3600)
    task.save()

    after = _claim_and_finish(task, RunStatus.FINISHED, between=lambda claimed: claimed.stop_looping())

    assert after.status == TaskStatus.FINISHED
    assert not after.loop


def test_next_loop_run_does_not_drift():
    task = Task(loop=True, interval=60, next_run=T0)

    assert task.next_loop_run(T0 + timedelta(seconds=59)) == T0 + timedelta(seconds=60)


def test_next_loop_run_exactly_at_the_schedule():
    task = Task(loop=True, interval=60, next_run=T0)

    assert task.next_loop_run(T0 + timedelta(seconds=60)) == T0 + timedelta(seconds=60)


def test_next_loop_run_after_an_overrun_is_now():
    task = Task(loop=True, interval=60, next_run=T0)
    now = T0 + timedelta(seconds=61)

    assert task.next_loop_run(now) == now


def test_next_loop_run_without_a_previous_schedule_counts_from_now():
    task = Task(loop=True, interval=0.5, next_run=None)

    assert task.next_loop_run(T0) == T0 + timedelta(seconds=0.5)


# --- TaskRun.finish: late writes -----------------------------------------------------------------


def late_outcome() -> Outcome:
    now = time.time()
    return Outcome(status=RunStatus.FAILED, started=now, finished=now, output="late", error="late")


TASK_FIELDS = ["status", "next_run", "last_run", "last_status", "output", "error", "updated_at"]


def snapshot(model, fields: list[str]) -> dict:
    return {field: getattr(model, field) for field in fields}


@pytest.mark.django_db
def test_finish_of_an_already_finished_run_is_refused():
    task = make_task(func=functions.say, args_in={"text": "first"})
    run = task.run()
    task_before = snapshot(Task.objects.get(pk=task.pk), TASK_FIELDS)
    run_before = snapshot(TaskRun.objects.get(pk=run.pk), ["status", "output", "error", "log"])

    assert lifecycle.finish(run, late_outcome()) is False

    assert snapshot(Task.objects.get(pk=task.pk), TASK_FIELDS) == task_before
    assert snapshot(TaskRun.objects.get(pk=run.pk), ["status", "output", "error", "log"]) == run_before


@pytest.mark.django_db
def test_finish_of_a_run_closed_by_recovery_is_refused():
    runner = RunnerProcess.objects.create(worker_id="lost-runner", host="h", pid=1)
    task = make_task(db_use=True)
    [(claimed, run)] = lifecycle.claim(runner, limit=1)
    assert claimed.pk == task.pk
    lifecycle.recover(RunnerProcess.objects.filter(pk=runner.pk), "presumed dead in a test")
    task_before = snapshot(Task.objects.get(pk=task.pk), TASK_FIELDS)

    assert lifecycle.finish(run, late_outcome()) is False

    assert snapshot(Task.objects.get(pk=task.pk), TASK_FIELDS) == task_before
    stored = TaskRun.objects.get(pk=run.pk)
    assert stored.status == RunStatus.INTERRUPTED
    assert stored.error == "presumed dead in a test"


@pytest.mark.django_db
def test_finish_of_an_open_run_is_accepted():
    task = make_task(func=functions.add, args_in={"a": 1})
    [(_, run)] = lifecycle.claim(None, limit=1)

    assert lifecycle.finish(run, late_outcome()) is True

    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert task.output == "late"


@pytest.mark.django_db
def test_finish_after_the_task_was_claimed_again_is_refused_and_keeps_the_lease():
    runner = RunnerProcess.objects.create(worker_id="slow-runner", host="h", pid=1)
    task = make_task(db_use=True)
    [(_, run)] = lifecycle.claim(runner, limit=1)
    Task.objects.filter(pk=task.pk).update(fence=F("fence") + 1)  # claimed again since
    task_before = snapshot(Task.objects.get(pk=task.pk), [*TASK_FIELDS, "fence", "runner_id"])

    assert lifecycle.finish(run, late_outcome()) is False

    assert snapshot(Task.objects.get(pk=task.pk), [*TASK_FIELDS, "fence", "runner_id"]) == task_before
    assert Task.objects.get(pk=task.pk).status == TaskStatus.RUNNING
    assert Lease.objects.get(name=DB_USE).task_id == task.pk  # still held for the newer claim
    stored = TaskRun.objects.get(pk=run.pk)  # the late run is recorded, but never as a result that counts
    assert (stored.status, stored.output) == (RunStatus.INTERRUPTED, "late")
    assert stored.error.startswith("Result refused")
    assert stored.finished_at is not None


# --- definition_fields ---------------------------------------------------------------------------

#: Every field of Task, each said to be definition or state: a field added to the model fails here until
#: it is classified (definition: a copy keeps it; state: the lifecycle's, app.task.STATE_FIELDS).
DEFINITION = [
    "name", "func", "conn", "args_in", "loop", "interval", "run_in", "kill_time", "db_use", "use_pdb",
    "cron", "timezone", "start_at", "expires_at", "max_runs", "catch_up", "max_attempts", "retry_delay",
    "retry_delay_max", "isolation", "priority", "queue",
]  # fmt: skip
STATE = [
    "id", "task_id", "paused", "run_count", "attempt", "period_start", "status", "next_run", "last_run",
    "last_status", "output", "error", "attempts", "runner", "fence", "created_at", "updated_at",
]  # fmt: skip


def test_every_field_of_task_is_definition_or_state():
    every_field = [field.name for field in Task._meta.concrete_fields]

    assert sorted(every_field) == sorted(DEFINITION + STATE)
    assert Task.definition_fields() == [name for name in every_field if name in DEFINITION]


@pytest.mark.django_db
def test_a_copy_by_definition_fields_keeps_the_whole_definition():
    task = make_task(
        name="nightly", cron="30 2 * * 1-5", timezone="Europe/Berlin", queue="reports", priority=5,
        max_attempts=3, retry_delay=1, retry_delay_max=8, isolation="process", kill_time=30,
        expires_at=timezone.now() + timedelta(days=1), catch_up="skip",
    )  # fmt: skip
    copy = Task(**{name: getattr(task, name) for name in Task.definition_fields()})
    copy.save()

    for name in Task.definition_fields():
        assert getattr(copy, name) == getattr(task, name), name
    assert copy.task_id != task.task_id
