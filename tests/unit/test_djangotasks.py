"""How a recorded traceback gives back the class of the exception it ends with (app/djangotasks.py)."""

import traceback
from collections.abc import Callable

import pytest

from app.djangotasks import raised_class_path
from tests.django_task_functions import Boom


def formatted(fail: Callable[[], object]) -> str:
    """The traceback of what ``fail`` raises, exactly as the runner records it."""
    try:
        fail()
    except BaseException:
        return traceback.format_exc()
    raise AssertionError("did not raise")


def raise_(exc: BaseException) -> None:
    raise exc


def noted(exc: BaseException, note: str) -> BaseException:
    exc.add_note(note)
    return exc


def chained() -> None:
    try:
        raise KeyError("first")
    except KeyError as exc:
        raise TypeError("second") from exc


def during_handling_of_a_group() -> None:
    try:
        raise ExceptionGroup("several", [ValueError("a"), KeyError("b")])
    except ExceptionGroup:
        raise LookupError("after the group") from None


@pytest.mark.parametrize(
    ("fail", "path"),
    [
        (lambda: raise_(ValueError("plain")), "builtins.ValueError"),
        (lambda: raise_(Boom("ours")), "tests.django_task_functions.Boom"),
        (lambda: raise_(SystemExit(3)), "builtins.SystemExit"),
        (lambda: raise_(KeyboardInterrupt()), "builtins.KeyboardInterrupt"),
        (lambda: raise_(ValueError("line one\nKeyError: a later line")), "builtins.ValueError"),
        (lambda: raise_(noted(ValueError("x"), "OSError: a note")), "builtins.ValueError"),
        (lambda: raise_(ValueError(ValueError("nested"))), "builtins.ValueError"),
        (chained, "builtins.TypeError"),
        (lambda: raise_(ExceptionGroup("several", [ValueError("a")])), "builtins.ExceptionGroup"),
        (during_handling_of_a_group, "builtins.LookupError"),
    ],
)
def test_the_class_is_the_one_the_traceback_ends_with(fail, path):
    text = formatted(fail)
    assert raised_class_path(text) == path


@pytest.mark.parametrize(
    "text",
    [
        "",
        "TimeLimitExceeded: ran longer than kill_time=1 s\n",  # no traceback at all
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\nNotABuiltin: x\n',
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n',  # cut short
    ],
)
def test_text_that_names_no_exception_class_gives_none(text):
    assert raised_class_path(text) is None
