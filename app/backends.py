"""ConductorBackend: Django's tasks framework (``django.tasks``) run by Conductor's runners.

::

    TASKS = {
        "default": {
            "BACKEND": "app.backends.ConductorBackend",
            "QUEUES": [],  # any queue name; `runtasks --queue NAME` chooses which a runner serves
            "OPTIONS": {"kill_time": 600, "max_attempts": 3},  # defaults for every task
        }
    }

    @task(priority=10, kill_time=30, db_use=True)  # Conductor's options, per task
    def rebuild_index(shard: int) -> int: ...

    result = rebuild_index.enqueue(3)  # a Conductor Task; result.id is its task_id

Enqueuing saves an ordinary Conductor Task, which runtasks claims, runs, limits and records like any other
(see app/djangotasks.py for how a call is stored and run); get_result reads a TaskResult back from the Task
and its TaskRuns, from any process. docs/django-tasks.md is the guide.
"""

import json
from dataclasses import dataclass, fields
from typing import Any

from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.tasks import Task as DjangoTask
from django.tasks import TaskResult
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils.json import normalize_json

from . import djangotasks, registry
from .task import Task

#: Conductor's own options: TASKS OPTIONS keys (defaults for a backend) and @task keyword arguments.
OPTION_NAMES = ("kill_time", "db_use", "loop", "interval", "cron", "timezone", "max_runs", "catch_up",
                "max_attempts", "retry_delay", "retry_delay_max", "isolation")  # fmt: skip
QUEUE_MAX_LENGTH = Task._meta.get_field("queue").max_length


class UnknownTaskOption(InvalidTask, TypeError):
    """An ``@task(...)`` keyword the Conductor backend does not know.

    InvalidTask, as Conductor documents, and TypeError, as Django's contract for a task class says
    (an unexpected keyword argument).
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class ConductorTask(DjangoTask):
    """Django's Task with Conductor's options; ``@task(kill_time=30, db_use=True)`` sets them.

    An option left as None takes the backend's OPTIONS value, else the Conductor Task field's default.
    """

    kill_time: float | None = None
    db_use: bool | None = None
    loop: bool | None = None
    interval: float | None = None
    cron: str | None = None
    timezone: str | None = None
    max_runs: int | None = None
    catch_up: str | None = None
    max_attempts: int | None = None
    retry_delay: float | None = None
    retry_delay_max: float | None = None
    isolation: str | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> "ConductorTask":
        # Django's @task passes its extra keyword arguments here: a typo is told the valid options.
        unknown = sorted(set(kwargs) - {field.name for field in fields(cls)})
        if unknown:
            raise UnknownTaskOption(
                f"Unknown @task option {', '.join(map(repr, unknown))} for the Conductor backend; its "
                f"options are: {', '.join(OPTION_NAMES)}."
            )
        return object.__new__(cls)

    @property
    def conductor_options(self) -> dict[str, Any]:
        """The options this task sets itself."""
        return {name: value for name in OPTION_NAMES if (value := getattr(self, name)) is not None}


class ConductorBackend(BaseTaskBackend):
    task_class = ConductorTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.option_problems = option_problems(self.options)

    def validate_task(self, task: DjangoTask) -> None:
        """Django's rules, then Conductor's options and queue name; registers the function to run."""
        super().validate_task(task)
        if problem := queue_problem(task.queue_name):
            raise InvalidTask(f"{task.module_path}: {problem}.")
        problems = option_problems(self.task_options(task))
        if problems:
            raise InvalidTask(f"{task.module_path} has invalid Conductor options: {'; '.join(problems)}.")
        djangotasks.register(task)

    def task_options(self, task: DjangoTask) -> dict[str, Any]:
        """The Conductor options a task runs with: the backend's OPTIONS (if valid), then its own."""
        defaults = {} if self.option_problems else _set(self.options)
        return {**defaults, **getattr(task, "conductor_options", {})}

    def enqueue(self, task: DjangoTask, args: Any, kwargs: Any) -> TaskResult:
        """Save the call as a Conductor Task (READY); runtasks runs it."""
        self.validate_task(task)
        if self.option_problems:
            raise ImproperlyConfigured(
                f"TASKS[{self.alias!r}]['OPTIONS'] is invalid: {'; '.join(self.option_problems)}. "
                "Run manage.py check for the details."
            )
        args, kwargs = json_arguments(args, kwargs)
        row = Task(
            name=task.name,
            func=task.module_path,
            args_in={djangotasks.ARGS: args, djangotasks.KWARGS: kwargs, djangotasks.BACKEND: self.alias},
            priority=task.priority,
            queue=task.queue_name,
            start_at=task.run_after,
            **self.task_options(task),
        )
        try:
            row.save()
        except ValidationError as exc:
            raise InvalidTask(f"{task.module_path} cannot be enqueued: {_messages(exc)}.") from exc
        result = djangotasks.result_of(row, task, self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The TaskResult of the Conductor Task whose task_id is ``result_id``."""
        row = Task.objects.filter(task_id=str(result_id)).first()
        if row is None:
            raise TaskResultDoesNotExist(f"No task result with id {result_id!r}.")
        task = djangotasks.django_task(row.func)
        if task is None:
            raise TaskResultDoesNotExist(_not_a_django_task(result_id, row.func))
        enqueued_on = (row.args_in or {}).get(djangotasks.BACKEND) or task.backend
        if enqueued_on != self.alias:
            raise TaskResultDoesNotExist(
                f"Task result {result_id!r} belongs to the task backend {enqueued_on!r}, not {self.alias!r}."
            )
        return djangotasks.result_of(row, task, self.alias)

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        where = f"TASKS[{self.alias!r}]"
        errors = [
            Error(
                f"{where}['OPTIONS'] is invalid: {problem}.",
                hint=f"OPTIONS takes Conductor's task options as defaults: {', '.join(OPTION_NAMES)} "
                "(README.md explains each).",
                id="conductor.E101",
            )
            for problem in self.option_problems
        ]
        errors += [
            Error(f"{where}['QUEUES']: {problem}.", hint="Rename the queue.", id="conductor.E102")
            for queue in self.queues
            if (problem := queue_problem(queue))
        ]
        return errors


def option_problems(options: Any) -> list[str]:
    """What is wrong with a dict of Conductor options, each problem in words (empty: nothing)."""
    if not isinstance(options, dict):
        return [f"Conductor's options must be a dict, got {type(options).__name__}"]
    problems = [f"unknown option {name!r}" for name in options if name not in OPTION_NAMES]
    given = {name: value for name, value in _set(options).items() if name in OPTION_NAMES}
    # The Task model's own validation, so options mean exactly what the same Task fields mean.
    others = [field.name for field in Task._meta.fields if field.name not in given]
    try:
        Task(**given).full_clean(exclude=others, validate_unique=False)
    except ValidationError as exc:
        problems += [
            f"{name}: {_joined(exc.message_dict[name])}" for name in given if name in exc.message_dict
        ]
    return problems


def queue_problem(name: Any) -> str | None:
    """Why runtasks --queue could not serve a queue of this name, or None."""
    if (
        isinstance(name, str)
        and name
        and name == name.strip()
        and "," not in name
        and len(name) <= QUEUE_MAX_LENGTH
    ):
        return None
    return (
        f"queue name {name!r} cannot be served by runtasks --queue: use a name of 1 to {QUEUE_MAX_LENGTH} "
        "characters without commas or surrounding spaces"
    )


def json_arguments(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """The arguments as JSON will give them back; TypeError or ValueError (as Django's) otherwise."""
    try:
        call = normalize_json([list(args), dict(kwargs)])
        stored = json.loads(json.dumps(call, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"Task arguments must be JSON serializable (they are stored as JSON): {exc}") from exc
    if stored != call:  # e.g. a dict key that is not a string comes back as one
        raise TypeError(
            f"Task arguments must come back unchanged from JSON; {call!r} would become {stored!r}."
        )
    return stored[0], stored[1]


def _set(options: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


def _messages(error: ValidationError) -> str:
    return "; ".join(f"{name}: {_joined(messages)}" for name, messages in error.message_dict.items())


def _joined(messages: list[str]) -> str:
    return " ".join(message.rstrip(".") + "." for message in messages).rstrip(".")


def _not_a_django_task(result_id: str, func: str) -> str:
    if func in registry.names():
        return f"{result_id!r} is a Conductor task of {func}, not a Django task: read it as app.task.Task."
    return (
        f"Task result {result_id!r} is a call of {func}, which is not a Django task in this process: define "
        "it in an installed app's tasks.py, or a module in CONDUCTOR['TASK_MODULES'], so every process "
        "imports it."
    )
