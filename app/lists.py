"""Server-side lists of tasks and runs: filters, search, sort and keyset pages.

A page is asked for with plain values (from a query string or a socket message) and answered with the
rows and a cursor for the next page. Cursors hold the last row's sort value and id, so a page is an index
range scan whatever the table's size (never OFFSET). Every filter is backed by an index (docs/dashboard.md
lists the query plans on PostgreSQL with 1,000,000 runs). Bad input raises ``ListError`` naming the field.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from .status import RunStatus, TaskStatus
from .task import Task
from .taskrun import TaskRun

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_SEARCH = 200


class ListError(ValueError):
    """A filter, sort, cursor or page size that cannot be used; ``field`` names which."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_cursor: str | None


@dataclass(frozen=True)
class ListSpec:
    """What one list offers: its filters (name -> how it narrows a queryset) and its sorts."""

    filters: dict[str, Any]
    sorts: tuple[str, ...]
    default_sort: str


def _choice(field: str, choices: Any):
    allowed = {str(choice) for choice in choices}

    def narrow(queryset: QuerySet, values: list[str], lookup: str) -> QuerySet:
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ListError(f"{field} {unknown[0]!r} is not one of {sorted(allowed)}.", field)
        return queryset.filter(**{f"{lookup}__in": values})

    return narrow


def _text(field: str, max_length: int = 255):
    def narrow(queryset: QuerySet, values: list[str], lookup: str) -> QuerySet:
        if any(len(value) > max_length or not value for value in values):
            raise ListError(f"{field} takes names of 1 to {max_length} characters.", field)
        return queryset.filter(**{f"{lookup}__in": values})

    return narrow


def _flag(field: str):
    def narrow(queryset: QuerySet, values: list[str], lookup: str) -> QuerySet:
        if len(values) != 1 or values[0] not in ("true", "false"):
            raise ListError(f"{field} is true or false.", field)
        return queryset.filter(**{lookup: values[0] == "true"})

    return narrow


def _whole(field: str):
    def narrow(queryset: QuerySet, values: list[str], lookup: str) -> QuerySet:
        if not all(_digits(value) and 0 < int(value) < 2**63 for value in values):
            raise ListError(f"{field} takes whole numbers above 0 (ids).", field)
        return queryset.filter(**{f"{lookup}__in": [int(value) for value in values]})

    return narrow


def _digits(text: str) -> bool:
    # ASCII only: str.isdigit() also accepts '²' and other digits that int() refuses.
    return re.fullmatch(r"[0-9]+", text) is not None


def _refuse_nul(params: dict[str, list[str]]) -> None:
    """PostgreSQL text cannot hold NUL (a DataError, answered 500), so no parameter may carry one."""
    for name, values in params.items():
        if any("\x00" in value for value in values):
            raise ListError(f"{name} contains a NUL character.", name)


# (how the value is checked, the lookup it filters on)
TASK_FILTERS = {
    "status": (_choice("status", TaskStatus), "status"),
    "queue": (_text("queue", 100), "queue"),
    "func": (_text("func"), "func"),
    "runner": (_text("runner", 200), "runner__worker_id"),
    "loop": (_flag("loop"), "loop"),
    "paused": (_flag("paused"), "paused"),
}
RUN_FILTERS = {
    "status": (_choice("status", RunStatus), "status"),
    # The queue and function the run ran in (its own columns, copied at the claim): run_queue_page and
    # run_func_page, not a join to the task, which may have been edited since.
    "queue": (_text("queue", 100), "queue"),
    "func": (_text("func"), "func"),
    "runner": (_text("runner", 200), "runner__worker_id"),
    "task": (_whole("task"), "task_id"),
}
# Sorts by id (newest first by default): an id never changes, so the pages of a live list stay put, and
# no index on a column that every claim rewrites (updated_at) is needed for them.
TASKS = ListSpec(TASK_FILTERS, ("-id", "id", "name", "-name"), "-id")
RUNS = ListSpec(RUN_FILTERS, ("-id", "id"), "-id")


@dataclass(frozen=True)
class PageQuery:
    """A page not yet read: ``rows`` holds one row more than ``limit`` (whether a next page exists)."""

    rows: QuerySet
    limit: int
    sort_field: str


def task_page(params: dict[str, list[str]]) -> Page:
    """Tasks matching ``params`` (each name to its values, as a query string gives them)."""
    return _read(task_query(params))


def run_page(params: dict[str, list[str]]) -> Page:
    """Runs matching ``params``; ``q`` searches their task as the task list does."""
    return _read(run_query(params))


def task_query(params: dict[str, list[str]]) -> PageQuery:
    """The query ``task_page`` reads (bench/explain.py shows its plan)."""
    _refuse_nul(params)
    queryset = Task.objects.select_related("runner")
    queryset = _search(queryset, _one(params, "q"))
    return _query(TASKS, queryset, params)


def run_query(params: dict[str, list[str]]) -> PageQuery:
    """The query ``run_page`` reads (bench/explain.py shows its plan)."""
    _refuse_nul(params)
    queryset = TaskRun.objects.select_related("task", "runner")
    if (text := _one(params, "q")) is not None:
        queryset = queryset.filter(task__in=_searched_task_ids(text))
    return _query(RUNS, queryset, params)


#: Most task ids a runs search reads first; a search matching more is left to the database as a subquery.
MOST_SEARCHED_TASKS = 1000


def _searched_task_ids(text: str) -> Any:
    """The ids of the tasks a runs search matches. Read first, so the planner knows how few they are and
    reads their runs by run_task_page: given the search as a join filter or subquery, it walked every run
    newest first until a page was full (386 ms for a task id at 1,000,000 runs, docs/dashboard.md)."""
    matching = _search(Task.objects.all(), text).values_list("pk", flat=True)
    ids = list(matching[: MOST_SEARCHED_TASKS + 1])
    return ids if len(ids) <= MOST_SEARCHED_TASKS else matching


def _search(tasks: QuerySet, text: str | None) -> QuerySet:
    """Tasks by name (anywhere in it) or task id (exactly, the unique index)."""
    if text is None:
        return tasks
    if not text.strip() or len(text) > MAX_SEARCH:
        raise ListError(f"q is a search text of 1 to {MAX_SEARCH} characters.", "q")
    text = text.strip()
    return tasks.filter(Q(name__icontains=text) | Q(task_id=text))


KNOWN_PARAMETERS = {"q", "sort", "cursor", "limit"}


def _query(spec: ListSpec, queryset: QuerySet, params: dict[str, list[str]]) -> PageQuery:
    unknown = sorted(set(params) - set(spec.filters) - KNOWN_PARAMETERS)
    if unknown:
        raise ListError(f"Unknown filter {unknown[0]!r}; filters: {sorted(spec.filters)}.", unknown[0])
    for name, (narrow, lookup) in spec.filters.items():
        if params.get(name):
            queryset = narrow(queryset, params[name], lookup)
    sort = _one(params, "sort") or spec.default_sort
    if sort not in spec.sorts:
        raise ListError(f"sort {sort!r} is not one of {list(spec.sorts)}.", "sort")
    limit = _limit(_one(params, "limit"))
    field, descending = sort.lstrip("-"), sort.startswith("-")
    if (cursor := _one(params, "cursor")) is not None:
        queryset = queryset.filter(_after(field, descending, *decode_cursor(cursor, field)))
    order = [sort, "-id" if descending else "id"] if field != "id" else [sort]
    return PageQuery(queryset.order_by(*order)[: limit + 1], limit, field)


def _read(query: PageQuery) -> Page:
    rows = list(query.rows)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return Page(rows, encode_cursor(getattr(rows[-1], query.sort_field), rows[-1].pk) if more else None)


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name) or []
    if len(values) > 1:
        raise ListError(f"{name} is given {len(values)} times; give it once.", name)
    return values[0] if values else None


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not _digits(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise ListError(f"limit is a page size from 1 to {MAX_LIMIT}, got {text!r}.", "limit")
    return int(text)


def _after(field: str, descending: bool, value: Any, pk: int) -> Q:
    """Rows after (value, pk) in the list's order: the keyset condition an index range scan serves."""
    beyond = "lt" if descending else "gt"
    if field == "id":
        return Q(**{f"id__{beyond}": pk})
    return Q(**{f"{field}__{beyond}": value}) | Q(**{field: value, f"id__{beyond}": pk})


def encode_cursor(value: Any, pk: int) -> str:
    plain = value.isoformat() if isinstance(value, datetime) else value
    return base64.urlsafe_b64encode(json.dumps([plain, pk]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, field: str) -> tuple[Any, int]:
    """(sort value, id) from a cursor this module made for a list sorted by ``field``."""
    try:
        value, pk = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ListError(
            "cursor is not one this server gave: start again from the first page.", "cursor"
        ) from None
    if isinstance(pk, bool) or not isinstance(pk, int):
        raise ListError("cursor is not one this server gave: start again from the first page.", "cursor")
    if field.endswith("_at"):
        moment = parse_datetime(value) if isinstance(value, str) else None
        if moment is None:
            raise ListError("cursor does not belong to this sort: start again from the first page.", "cursor")
        return moment, pk
    if field != "id" and (not isinstance(value, str) or "\x00" in value):
        # A NUL inside the decoded value would reach PostgreSQL as text (a DataError, answered 500).
        raise ListError("cursor does not belong to this sort: start again from the first page.", "cursor")
    return value, pk
