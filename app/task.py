"""The Task model: a registered function and the conditions under which it runs."""

import json
import math
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models, router, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.query_utils import DeferredAttribute
from django.utils.timezone import now as local_now

from . import dbclock, registry, schedule
from .lease import DB_USE, Lease
from .status import CatchUp, Isolation, RunStatus, TaskStatus

#: Longest interval, delay or time limit accepted: 100 years (dates beyond that overflow).
MAX_SECONDS = 100 * 365.25 * 24 * 3600


class TaskActionError(Exception):
    """An action that does not apply to the task as it is now; the message says why."""


class FuncAttribute(DeferredAttribute):
    """Stores a callable assigned to ``func`` as its dotted path."""

    def __set__(self, instance: Any, value: Any) -> None:
        if callable(value):
            value = registry.dotted_path(value)
        instance.__dict__[self.field.attname] = value


class FuncField(models.CharField):
    descriptor_class = FuncAttribute


class TaskQuerySet(models.QuerySet):
    # "Due" and claiming are the lifecycle's (app/lifecycle/): lifecycle.due() gives due tasks as a queryset.
    def waiting(self) -> "TaskQuerySet":
        return self.filter(status=TaskStatus.WAITING)

    def running(self) -> "TaskQuerySet":
        return self.filter(status=TaskStatus.RUNNING)

    def held_by_claim(self, task_pk: int, fence: int, db_use: bool) -> "TaskQuerySet":
        """The task, if a claim with this fencing token still holds it: running, not claimed again since
        (each claim bumps ``fence``; recovery makes it waiting) and, for a db_use claim, still holding
        the db_use lease. ``.exists()`` of it is one small query (``TaskContext.still_owner()``)."""
        held = self.filter(pk=task_pk, fence=fence, status=TaskStatus.RUNNING)
        if db_use:
            held = held.filter(Exists(Lease.objects.filter(name=DB_USE, task=OuterRef("pk"))))
        return held


#: Runs a task at once in the calling thread and records the run (``Task.run()``). Running needs execution
#: and the lifecycle, which sit above the models, so ``ConductorConfig.ready()`` installs it (app/apps.py).
_run_at_once: Callable[["Task"], Any] | None = None


def install_run_at_once(run_at_once: Callable[["Task"], Any]) -> None:
    global _run_at_once
    _run_at_once = run_at_once


#: State a task's lifecycle keeps, as opposed to its definition (what a person chose).
#: Definition fields that need a permission of their own (Meta.permissions) besides add/change: conn
#: sends every run's output and traceback to a socket, use_pdb opens a debugger on the runner's terminal.
PROTECTED_FIELDS = {"conn": "conductor.can_set_conn", "use_pdb": "conductor.can_use_pdb"}

STATE_FIELDS = frozenset({
    "id", "task_id", "status", "next_run", "last_run", "last_status", "output", "error", "attempts",
    "attempt", "period_start", "run_count", "runner", "fence", "paused", "created_at", "updated_at",
})  # fmt: skip


class Task(models.Model):
    """A function to run later, repeatedly and under limits.

    ``Task(name='new_task', task_id=None, func=None, conn=None, args_in=None, loop=False,
    interval=100, run_in=0, kill_time=None, db_use=False, use_pdb=False)``
    """

    name = models.CharField(max_length=200, default="new_task")
    task_id = models.CharField(
        max_length=64, unique=True, blank=True, default=None, help_text="Filled in when empty."
    )
    func = FuncField(max_length=255, default=None, help_text="Dotted path of a registered task function.")
    conn = models.CharField(  # noqa: DJ001 - the documented default is None: nobody to tell
        max_length=255,
        null=True,
        blank=True,
        default=None,
        help_text="Who asked for this task; each run's result is pushed back to it.",
    )
    args_in = models.JSONField(
        null=True, blank=True, default=None, help_text="Keyword arguments, as a JSON object."
    )
    loop = models.BooleanField(default=False, help_text="Run again every `interval` seconds.")
    interval = models.FloatField(default=100, help_text="Seconds between runs of a looping task.")
    run_in = models.FloatField(default=0, help_text="Seconds from saving to the first run.")
    kill_time = models.FloatField(
        null=True,
        blank=True,
        default=None,
        help_text="Seconds a run may take before it is stopped.",
    )
    db_use = models.BooleanField(
        default=False, help_text="Needs exclusive database access: one such task at a time."
    )
    use_pdb = models.BooleanField(default=False, help_text="Open pdb on failure (terminal only).")
    paused = models.BooleanField(default=False, help_text="A paused task is not started until resumed.")

    # Calendars, windows and limits
    cron = models.CharField(
        max_length=100, blank=True, default="", help_text="Loop on this cron schedule instead of an interval."
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="Time zone of the cron schedule.")
    start_at = models.DateTimeField(null=True, blank=True, help_text="Not before this time.")
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Not started by then: marked expired, never run."
    )
    max_runs = models.PositiveIntegerField(
        null=True, blank=True, help_text="A looping task ends after this many runs."
    )
    run_count = models.PositiveIntegerField(
        default=0, help_text="Runs completed (interrupted ones excluded)."
    )
    catch_up = models.CharField(max_length=10, choices=CatchUp.choices, default=CatchUp.ONCE)

    # Retries
    max_attempts = models.PositiveIntegerField(default=1, help_text="Tries per run, retries included.")
    retry_delay = models.FloatField(
        default=10, help_text="Seconds before the first retry; doubles each time."
    )
    retry_delay_max = models.FloatField(default=3600, help_text="Longest wait between retries, in seconds.")
    attempt = models.PositiveIntegerField(default=0, help_text="Try number of the current run (0: none yet).")
    period_start = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the current run (and its retries) was due."
    )

    # Where and in what order
    isolation = models.CharField(max_length=10, choices=Isolation.choices, default=Isolation.THREAD)
    priority = models.IntegerField(default=0, help_text="Higher runs first among due tasks.")
    queue = models.CharField(
        max_length=100, default="default", help_text="runtasks --queue serves named queues."
    )

    status = models.CharField(max_length=20, choices=TaskStatus.choices, default=TaskStatus.WAITING)
    next_run = models.DateTimeField(null=True, blank=True)
    last_run = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=20, choices=RunStatus.choices, blank=True, default="")
    output = models.JSONField(null=True, blank=True, help_text="The last run's return value.")
    error = models.TextField(blank=True, default="", help_text="The last failed run's traceback.")
    attempts = models.PositiveIntegerField(default=0, help_text="How many times it was started.")
    runner = models.ForeignKey(
        "conductor.RunnerProcess",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
        help_text="The runner running it now.",
    )
    fence = models.PositiveBigIntegerField(
        default=0, editable=False, help_text="Bumped by each claim; stale results are refused."
    )
    # Stamped by save() from the database's clock, not auto_now: pages keep the state with the newest
    # updated_at, so a web process whose clock is ahead would hide the runners' later updates. The
    # default (this process's clock) is for rows made without save(), such as bulk_create.
    created_at = models.DateTimeField(default=local_now, editable=False)
    updated_at = models.DateTimeField(default=local_now, editable=False)

    objects = TaskQuerySet.as_manager()

    class Meta:
        permissions = [
            # Beyond add/change: conn sends every run's output and traceback to a socket, and use_pdb
            # opens a debugger on the runner's terminal.
            ("can_set_conn", "Can choose where a task's results are sent (conn)"),
            ("can_use_pdb", "Can make a task open a debugger on the runner's terminal (use_pdb)"),
        ]
        indexes = [
            models.Index(fields=["status", "next_run"], name="task_status_next_run"),
            models.Index(fields=["queue", "status", "next_run"], name="task_queue_due"),
            # Claim order: a runner draining many due tasks walks this instead of sorting them all.
            models.Index(fields=["status", "-priority", "next_run", "id"], name="task_claim_order"),
            # Each claim marks due tasks past expires_at; few tasks have one, so the index stays small.
            models.Index(
                fields=["status", "expires_at"], name="task_expiry", condition=Q(expires_at__isnull=False)
            ),
            # The dashboard's lists (app/lists.py; plans in docs/dashboard.md). Paused and looping tasks
            # are few: partial indexes hold only them, and cost nothing when other rows change.
            models.Index(fields=["func", "id"], name="task_func"),
            models.Index(fields=["name", "id"], name="task_name"),
            models.Index(fields=["id"], name="task_paused", condition=Q(paused=True)),
            models.Index(fields=["id"], name="task_looping", condition=Q(loop=True)),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.task_id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Validate (on full saves) and save; a new task gets its task_id and first next_run."""
        if kwargs.get("update_fields") is None:
            self.full_clean(exclude=["task_id", "next_run"], validate_unique=False)
        self.task_id = self.task_id or uuid.uuid4().hex
        self.loop = self.loop or bool(self.cron)  # a calendar repeats
        self._stamp(dbclock.now(kwargs.get("using") or router.db_for_write(type(self), instance=self)))
        super().save(*args, **kwargs)  # on PostgreSQL a trigger wakes the runners (migration 0002)

    def _stamp(self, now: datetime) -> None:
        """Times of a save, all from one reading of the database's clock, which runners and pages compare
        them with: run_in counts from it, and updated_at orders this state against the runners'."""
        if self.next_run is None:  # a new task, or one whose next run was cleared
            self.next_run = schedule.first_run(self, now)
        if self._state.adding:
            self.created_at = now
        self.updated_at = now

    def clean(self) -> None:
        errors = {
            **self._func_errors(),
            **self._number_errors(),
            **self._schedule_errors(),
        }
        if errors:
            raise ValidationError(errors)

    def _func_errors(self) -> dict[str, str]:
        if not self.func:
            return {"func": "Choose a registered task function (its dotted path)."}
        try:
            registry.get(self.func)
        except registry.UnknownFunction as exc:
            return {"func": str(exc)}
        if self.args_in is None:
            args = {}
        elif isinstance(self.args_in, dict):
            args = self.args_in
        else:
            return {
                "args_in": "args_in must be a JSON object of keyword arguments, e.g. "
                f'{{"url": "https://example.com"}}; got {type(self.args_in).__name__}.'
            }
        if (problem := _json_problem(args)) is not None:
            return {"args_in": f"args_in must be plain JSON: {problem}."}
        problem = registry.signature_errors(self.func, args)
        if problem:
            return {"args_in": f"The arguments do not fit {self.func}: {problem}."}
        return {}

    def _number_errors(self) -> dict[str, str]:
        errors = {}
        if self.loop and not self.cron and not _positive(self.interval):
            errors["interval"] = (
                f"A looping task needs an interval above 0 and up to {MAX_SECONDS:.0f} seconds "
                f"(got {self.interval}); set it to the seconds between runs, e.g. 60."
            )
        elif not _finite(self.interval) or not 0 <= self.interval <= MAX_SECONDS:
            errors["interval"] = f"interval must be 0 to {MAX_SECONDS:.0f} seconds (got {self.interval})."
        if not _finite(self.run_in) or not 0 <= self.run_in <= MAX_SECONDS:
            errors["run_in"] = f"run_in must be 0 to {MAX_SECONDS:.0f} seconds (got {self.run_in})."
        if self.kill_time is not None and not _positive(self.kill_time):
            errors["kill_time"] = (
                f"kill_time must be above 0 and up to {MAX_SECONDS:.0f} seconds (got {self.kill_time}); "
                "leave it empty for no time limit."
            )
        return errors

    def _schedule_errors(self) -> dict[str, str]:
        errors = {}
        try:
            schedule.zone(self.timezone)
        except schedule.ScheduleError as exc:
            errors["timezone"] = str(exc)
        if self.cron:
            try:
                schedule.check(self.cron, "UTC")
            except schedule.ScheduleError as exc:
                errors["cron"] = str(exc)
        if self.start_at and self.expires_at and self.expires_at <= self.start_at:
            errors["expires_at"] = "expires_at must be after start_at, or the task could never run."
        if self.max_attempts is not None and self.max_attempts < 1:
            errors["max_attempts"] = "max_attempts counts the first try too: 1 means no retries."
        for field in ("retry_delay", "retry_delay_max"):
            if not _finite(getattr(self, field)) or not 0 <= getattr(self, field) <= MAX_SECONDS:
                errors[field] = (
                    f"{field} must be 0 to {MAX_SECONDS:.0f} seconds (got {getattr(self, field)})."
                )
        if self.max_runs is not None and self.max_runs < 1:
            errors["max_runs"] = "max_runs must be 1 or more; leave it empty for no limit."
        elif self.max_runs is not None and not self.loop and not self.cron:
            errors["max_runs"] = "max_runs limits a looping task; set loop (or a cron schedule) or clear it."
        return errors

    @property
    def schedule_description(self) -> str:
        """The schedule in words, e.g. "At 02:30, Monday through Friday (Europe/Berlin)"."""
        if self.cron:
            return f"{schedule.describe(self.cron)} ({self.timezone})"
        return f"Every {self.interval:g} seconds" if self.loop else "Once"

    def run(self) -> Any:
        """Run the function now, in the calling thread, and record the run; returns the TaskRun.

        Raises RuntimeError when the task is running already (or, for a db_use task, another holds the
        lease). Implemented by ``app.execution.run_at_once``, installed when the app is ready.
        """
        if _run_at_once is None:
            raise ImproperlyConfigured("Task.run() needs the conductor app to be ready (django.setup()).")
        return _run_at_once(self)

    @classmethod
    def definition_fields(cls) -> list[str]:
        """The names of the fields that define a task (what a copy keeps), from the model itself.

        Every editable concrete field except the state its lifecycle keeps (``STATE_FIELDS``): a field
        added to the model is part of the definition unless it is added there.
        """
        return [
            field.name
            for field in cls._meta.concrete_fields
            if field.name not in STATE_FIELDS and field.editable
        ]

    def next_loop_run(self, now: datetime, started: datetime | None = None) -> datetime:
        return schedule.next_loop_run(self, now, started)

    # Actions (dashboard, admin): each says what it did, or raises TaskActionError saying why not.

    def request_run_now(self) -> str:
        """Make the task due now (and no longer paused)."""
        now = dbclock.Now()  # due by the runners' clock: the database's
        started = (
            Task.objects.filter(pk=self.pk)
            .exclude(status=TaskStatus.RUNNING)
            .update(status=TaskStatus.WAITING, next_run=now, paused=False, attempt=0, updated_at=now)
        )
        if not started:
            raise TaskActionError(f"{self.name} is running now; it will not be started twice")
        return f"{self.name} queued to run now"

    def stop_looping(self) -> str:
        """Run no more after the current run (a waiting looping task becomes stopped)."""
        now = dbclock.Now()
        with transaction.atomic():
            looping = Task.objects.filter(pk=self.pk, loop=True)
            looping.filter(status=TaskStatus.WAITING).update(status=TaskStatus.STOPPED)
            if not looping.update(loop=False, updated_at=now):
                raise TaskActionError(f"{self.name} is not looping")
        return f"{self.name} will not run again"

    def set_paused(self, paused: bool) -> str:
        """Pause (not started again until resumed; a running run goes on) or resume."""
        changed = Task.objects.filter(pk=self.pk, paused=not paused).update(
            paused=paused, updated_at=dbclock.Now()
        )
        if not changed:
            raise TaskActionError(f"{self.name} is already {'paused' if paused else 'not paused'}")
        return f"{self.name} {'paused' if paused else 'resumed'}"


def _positive(value: Any) -> bool:
    return _finite(value) and 0 < value <= MAX_SECONDS


def _json_problem(value: Any) -> str | None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
