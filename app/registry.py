"""The functions Conductor may run, and nothing else.

A function becomes runnable by decorating it with ``@register``. Modules are found the Django way: every
installed app's ``tasks.py`` is imported at start-up (like admin autodiscovery), plus the modules named in
``CONDUCTOR['TASK_MODULES']`` (or the ``CONDUCTOR_TASK_MODULES`` environment variable).
"""

import inspect
from collections.abc import Callable
from importlib import import_module
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import autodiscover_modules

from . import conf

_functions: dict[str, Callable[..., Any]] = {}


class UnknownFunction(LookupError):
    """A dotted path that is not a registered task function."""


def dotted_path(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def register[F: Callable[..., Any]](func: F) -> F:
    """Allow ``func`` to run as a Conductor task; returns it unchanged."""
    if not callable(func):
        raise TypeError(f"@register needs a function, got {type(func).__name__}")
    if "<locals>" in func.__qualname__:
        raise TypeError(f"{func.__qualname__} is defined inside a function; register a module-level one")
    _functions[dotted_path(func)] = func
    return func


def get(path: str) -> Callable[..., Any]:
    """The registered function at ``path``; UnknownFunction says what to do otherwise."""
    try:
        return _functions[path]
    except KeyError:
        raise UnknownFunction(_unknown_message(path)) from None


def _unknown_message(path: str) -> str:
    """Why ``path`` cannot run here and how to fix it, for Django @task and plain functions alike.

    Whoever asks (a runner, a child process, the admin) cannot tell which kind the path was meant to be:
    it was never imported here. The fix that applies to both comes first.
    """
    return (
        f"{path!r} is not a registered task function in this process. Runners import the tasks.py of "
        "every installed app and the modules listed in CONDUCTOR['TASK_MODULES'] (or the "
        "CONDUCTOR_TASK_MODULES environment variable): put the function's module there. A Django @task "
        f"function is registered by its decorator; a plain function needs @register "
        f"(from {__package__} import register)."
    )


def names() -> list[str]:
    return sorted(_functions)


def signature_errors(path: str, kwargs: dict[str, Any]) -> str | None:
    """Why ``kwargs`` cannot call the function at ``path``, or None when they fit."""
    from .context import CONTEXT_PARAMETER, accepts_context

    func = get(path)
    if accepts_context(func):
        if CONTEXT_PARAMETER in kwargs:
            return f"'{CONTEXT_PARAMETER}' is given by Conductor (a TaskContext), not in args_in"
        kwargs = {**kwargs, CONTEXT_PARAMETER: None}
    try:
        inspect.signature(func).bind(**kwargs)
    except TypeError as exc:
        return str(exc)
    return None


def autodiscover() -> None:
    """Import every installed app's tasks.py and the configured task modules."""
    autodiscover_modules("tasks")
    modules = conf.get().TASK_MODULES
    if not isinstance(modules, list | tuple):
        return  # checks.py reports the bad setting with a hint
    for module in modules:
        try:
            import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and not (exc.name == module or module.startswith(exc.name + ".")):
                raise  # the module exists but one of its own imports is missing
            raise ImproperlyConfigured(
                f"CONDUCTOR['TASK_MODULES'] (or CONDUCTOR_TASK_MODULES) names {module!r}, which "
                f"cannot be imported ({exc}). Fix the name or put its package on the Python path."
            ) from exc
