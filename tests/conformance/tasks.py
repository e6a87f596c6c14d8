"""The task functions of the ported conformance tests: Django ``@task`` functions on Conductor's backend.

Rewritten from Django 6.1.3's ``tests/tasks/tasks.py`` and django-tasks-db 0.13.0's ``tests/tasks.py``
(the same functions under the same names, except ``test_context``, here ``checks_context`` so that no
reader takes it for a test). Runner subprocesses import this module through CONDUCTOR_TASK_MODULES.
"""

import time
from typing import Any

from django.tasks import TaskContext, task


@task()
def noop_task(*args: Any, **kwargs: Any) -> None:
    return None


@task
def noop_task_from_bare_decorator(*args: Any, **kwargs: Any) -> None:
    return None


@task()
async def noop_task_async(*args: Any, **kwargs: Any) -> None:
    return None


@task()
def calculate_meaning_of_life() -> int:
    return 42


@task()
def failing_task_value_error() -> None:
    raise ValueError("This task failed due to ValueError")


@task()
def failing_task_system_exit() -> None:
    raise SystemExit("This task failed due to SystemExit")


@task()
def failing_task_keyboard_interrupt() -> None:
    raise KeyboardInterrupt("This task failed due to KeyboardInterrupt")


@task()
def complex_exception() -> None:
    raise ValueError(ValueError("This task failed"))


@task()
def complex_return_value() -> Any:
    return lambda: True  # neither JSON nor picklable


@task()
def exit_task() -> None:
    exit(1)


@task()
def hang() -> None:
    time.sleep(300)  # blocked in C: no interrupt reaches it, as in the originals


@task()
def sleep_for(seconds: float) -> None:
    time.sleep(seconds)


@task(takes_context=True)
def get_task_id(context: TaskContext) -> str:
    return context.task_result.id


@task(takes_context=True)
def checks_context(context: TaskContext, attempt: int) -> None:
    assert isinstance(context, TaskContext)
    assert context.attempt == attempt
