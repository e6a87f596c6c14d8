"""Django admin for tasks, runs and runners.

Actions on tasks go through app/actions.py, the same code path as the dashboard's commands, so runners
react the same way and open dashboards update. Runs and runners are read-only records.
"""

import contextvars
import inspect
import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from . import actions, conf, dbclock, registry
from .lease import Lease
from .runnerprocess import LIVE_STATES, RunnerProcess
from .task import Task, TaskActionError
from .taskrun import TaskRun

RECENT_RUNS_ON_TASK_PAGE = 20


def function_choices() -> list[tuple[str, str]]:
    return [("", "---------")] + [(path, path) for path in registry.names()]


def functions_help() -> str:
    """Each registered function with its signature and the first line of its docstring."""
    rows = []
    for path in registry.names():
        func = registry.get(path)
        doc = (inspect.getdoc(func) or "").partition("\n")[0]
        rows.append((path, str(inspect.signature(func)), doc))
    return format_html(
        "Registered functions:<ul>{}</ul>",
        format_html_join("", "<li><code>{}{}</code> {}</li>", rows),
    )


#: State an operator may set by hand besides the definition.
ADMIN_STATE_FIELDS = ["paused", "next_run", "task_id"]
#: The form in groups (every form field in exactly one; tests/integration/test_admin.py checks it).
TASK_FIELDSETS = [
    ("What runs", {"fields": ["name", "func", "args_in"]}),
    ("Schedule", {"fields": ["loop", "interval", "cron", "timezone", "catch_up", "run_in", "start_at",
                             "expires_at", "max_runs", "next_run", "paused"]}),
    ("Limits", {"fields": ["kill_time", "db_use", "isolation"]}),
    ("Retries", {"fields": ["max_attempts", "retry_delay", "retry_delay_max"]}),
    ("Routing", {"fields": ["queue", "priority"]}),
    ("Advanced", {"fields": ["task_id", "conn", "use_pdb"], "classes": ["collapse"]}),
]  # fmt: skip


class TaskForm(forms.ModelForm):
    func = forms.ChoiceField(choices=function_choices, label="Function")

    class Meta:
        model = Task
        # The definition, from the model (a field added there is on the form), and the state an operator
        # may set by hand.
        fields = [*Task.definition_fields(), *ADMIN_STATE_FIELDS]
        help_texts = {
            "args_in": 'Keyword arguments as a JSON object, e.g. {"seconds": 5}. Leave empty for none.',
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["func"].help_text = functions_help()
        if "args_in" in self.fields and self.instance.args_in is None:
            self.initial["args_in"] = {}  # "no arguments" reads {} (JSON's null would show "null")
        if self.instance.pk and self.instance.func not in registry.names():
            # Keep an unregistered path visible, so the error says what is wrong with it.
            self.fields["func"].choices = [*function_choices(), (self.instance.func, self.instance.func)]

    def _update_errors(self, errors: Any) -> None:
        """Model errors on a field the form already rejected would only repeat or mislead."""
        if hasattr(errors, "error_dict"):
            for field in list(errors.error_dict):
                if field in self._errors:
                    del errors.error_dict[field]
            if not errors.error_dict:
                return
        super()._update_errors(errors)


#: The database's time for the page being rendered (one query per list, not one per row).
_page_now: contextvars.ContextVar = contextvars.ContextVar("conductor_admin_now", default=None)


def _run_link(run: TaskRun) -> str:
    return reverse("admin:conductor_taskrun_change", args=[run.pk])


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    form = TaskForm
    list_display = ["name", "func", "status_shown", "next_run", "last_run", "last_status", "loop",
                    "interval", "schedule", "attempt_shown", "kill_time", "db_use", "priority",
                    "queue"]  # fmt: skip
    list_filter = [
        "status",
        "paused",
        "func",
        "loop",
        "db_use",
        "last_status",
        "runner",
        "queue",
        "isolation",
    ]
    search_fields = ["name", "task_id", "func"]
    date_hierarchy = "next_run"
    ordering = ["-id"]
    readonly_fields = ["status", "schedule", "attempt_shown", "run_count", "last_run", "last_status",
                       "output_shown", "error_shown", "attempts", "runner", "created_at", "updated_at",
                       "recent_runs", "live_page"]  # fmt: skip
    actions = ["run_now", "stop_loop", "pause", "resume", "cancel_running", "duplicate"]

    def save_model(self, request: HttpRequest, obj: Task, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        actions.announce(obj.pk, wake=True)  # open dashboards and idle runners hear of it at once

    def delete_model(self, request: HttpRequest, obj: Task) -> None:
        pk = obj.pk
        super().delete_model(request, obj)
        actions.announce_deleted(pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        pks = list(queryset.values_list("pk", flat=True))
        super().delete_queryset(request, queryset)
        for pk in pks:
            actions.announce_deleted(pk)

    def get_fieldsets(self, request: HttpRequest, obj: Task | None = None) -> list:
        """The form builds only these fields, so a forged POST of a withheld one changes nothing."""
        left_out = actions.withheld_fields(request.user) | ({"next_run"} if obj is None else {"run_in"})
        fieldsets = [
            (title, {**options, "fields": [f for f in options["fields"] if f not in left_out]})
            for title, options in TASK_FIELDSETS
        ]
        if obj is not None:  # run_in only sets the first run; a saved task shows its state instead
            fieldsets.append(("State", {"fields": self.readonly_fields}))
        return [(title, options) for title, options in fieldsets if options["fields"]]

    @admin.display(description="status", ordering="status")
    def status_shown(self, task: Task) -> str:
        return f"{task.get_status_display()} (paused)" if task.paused else task.get_status_display()

    @admin.display(description="output")
    def output_shown(self, task: Task) -> str:
        return pre(task.output)

    @admin.display(description="schedule")
    def schedule(self, task: Task) -> str:
        return task.schedule_description

    @admin.display(description="attempt")
    def attempt_shown(self, task: Task) -> str:
        return f"{task.attempt} of {task.max_attempts}" if task.attempt else f"- of {task.max_attempts}"

    @admin.display(description="error")
    def error_shown(self, task: Task) -> str:
        return pre(task.error)

    @admin.display(description="live page")
    def live_page(self, task: Task) -> str:
        return live_link(reverse("conductor:task", args=[task.task_id]), "its runs, schedule and threads")

    @admin.display(description="recent runs")
    def recent_runs(self, task: Task) -> str:
        runs = task.runs.order_by("-id")[:RECENT_RUNS_ON_TASK_PAGE]  # newest first, by run_task_page
        rows = [
            (_run_link(r), r.pk, r.get_status_display(), r.started_at, _seconds(r.duration)) for r in runs
        ]
        if not rows:
            return "No runs yet."
        return format_html(
            "<table><tr><th>run</th><th>status</th><th>started</th><th>duration</th></tr>{}</table>",
            format_html_join(
                "", '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>', rows
            ),
        )

    # Actions: each reports what it did and what it could not do, and why.

    def _apply(
        self, request: HttpRequest, queryset: QuerySet, action: Callable[[Task], str], done: str
    ) -> None:
        succeeded, refused = 0, []
        for task in queryset:
            try:
                action(task)
                succeeded += 1
            except TaskActionError as exc:
                refused.append(str(exc))
        report(request, self, succeeded, done, refused)

    @admin.action(description="Run now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, actions.run_now, "queued to run now")

    @admin.action(description="Stop looping", permissions=["change"])
    def stop_loop(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, actions.stop_loop, "will not run again")

    @admin.action(description="Pause", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, actions.pause, "paused")

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, actions.resume, "resumed")

    @admin.action(description="Cancel the running run", permissions=["change"])
    def cancel_running(self, request: HttpRequest, queryset: QuerySet) -> None:
        def cancel(task: Task) -> str:
            run = task.runs.filter(finished_at__isnull=True, runner__isnull=False).first()
            if run is None:
                raise TaskActionError(f"{task.name} was not running")
            return actions.cancel(run, by=request.user.get_username())

        self._apply(request, queryset, cancel, "asked to cancel")

    @admin.action(description="Duplicate", permissions=["add"])
    def duplicate(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, lambda task: actions.duplicate(task, by=request.user), "duplicated")


def report(
    request: HttpRequest, model_admin: admin.ModelAdmin, succeeded: int, done: str, refused: list[str]
) -> None:
    """e.g. "3 tasks queued to run now; 1 not: clean up is running now; it will not be started twice"."""
    noun = "task" if succeeded == 1 else "tasks"
    text = f"{succeeded} {noun} {done}"
    if refused:
        text += f"; {len(refused)} not: " + "; ".join(refused)
    level = messages.SUCCESS if not refused else messages.WARNING if succeeded else messages.ERROR
    model_admin.message_user(request, text, level)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by runners: staff look, nobody edits or deletes (prunetaskruns trims runs)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TaskValueFilter(admin.SimpleListFilter):
    """Runs by one of their own columns (an index of its own), offering the values tasks have now.

    The values come from the tasks table (thousands of rows), not from a DISTINCT over every run (millions)
    on each page load; a run whose value no task has any more is still found by ``?<name>=<value>``.
    """

    field = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        values = Task.objects.order_by(self.field).values_list(self.field, flat=True).distinct()
        return [(value, value) for value in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset if self.value() is None else queryset.filter(**{self.field: self.value()})


class RunQueueFilter(TaskValueFilter):
    title = "queue"
    parameter_name = field = "queue"


class RunFuncFilter(TaskValueFilter):
    title = "function"
    parameter_name = field = "func"


@admin.register(TaskRun)
class TaskRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "task", "status", "started_at", "duration_shown", "queue", "func", "runner",
                    "thread_name"]  # fmt: skip
    # Each filter is served by an index of its own (run_status_page, run_queue_page, run_func_page,
    # run_runner_page, run_finished). None by task, which would render a link per task (10,000 of them): a
    # task's recent runs are on its change page, and all of them, a page at a time, on its dashboard page.
    list_filter = [
        "status", RunQueueFilter, RunFuncFilter, "runner", ("finished_at", admin.DateFieldListFilter),
    ]  # fmt: skip
    search_fields = ["task__name", "task__task_id", "thread_name", "error"]
    # No date_hierarchy: it lists the years, months or days that have runs (a DISTINCT over a truncated
    # date, which no index serves: every run is read on each page load). finished_at's fixed ranges above
    # are index range scans instead.
    ordering = ["-id"]  # newest first by the primary key; -started_at has no index and sorted every run
    show_full_result_count = False  # no COUNT(*) of every run beside the filtered count
    list_select_related = ["task", "runner"]
    fields = ["task", "queue", "func", "runner", "status", "attempt", "fence", "scheduled_for", "started_at",
              "finished_at", "duration_shown", "thread_name", "thread_ident", "progress", "progress_message",
              "output_shown", "error_shown", "log_shown", "live_page"]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="duration", ordering="duration")
    def duration_shown(self, run: TaskRun) -> str:
        return _seconds(run.duration)

    @admin.display(description="output")
    def output_shown(self, run: TaskRun) -> str:
        return pre(run.output)

    @admin.display(description="traceback")
    def error_shown(self, run: TaskRun) -> str:
        return pre(run.error)

    @admin.display(description="printed and logged")
    def log_shown(self, run: TaskRun) -> str:
        return pre(run.log)

    @admin.display(description="live page")
    def live_page(self, run: TaskRun) -> str:
        url = f"{reverse('conductor:task', args=[run.task.task_id])}?run={run.pk}"
        return live_link(url, "its task's page, with this run's output, traceback and log")


@admin.register(RunnerProcess)
class RunnerProcessAdmin(ReadOnlyAdmin):
    list_display = ["worker_id", "host", "pid", "state_shown", "started_at", "heartbeat_shown",
                    "threads_shown", "clock_shown"]  # fmt: skip
    list_filter = ["state", "host"]
    search_fields = ["worker_id", "host"]
    ordering = ["-heartbeat_at"]
    fields = ["worker_id", "host", "pid", "state", "degraded", "threads", "busy", "started_at",
              "heartbeat_at", "clock_offset", "stopped_at", "threads_state", "live_page"]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="live page")
    def live_page(self, runner: RunnerProcess) -> str:
        return live_link(reverse("conductor:runner", args=[runner.worker_id]), "its threads and runs")

    @admin.display(description="state", ordering="state")
    def state_shown(self, runner: RunnerProcess) -> str:
        if runner.degraded and runner.state in LIVE_STATES:
            return format_html('{} <strong style="color: #ba2121">(degraded: {})</strong>', runner.state,
                               runner.degraded)  # fmt: skip
        return runner.state

    def _database_now(self, runner: RunnerProcess) -> Any:
        """The database's time (heartbeats are written by its clock), read once per page."""
        return _page_now.get() or dbclock.now()

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        token = _page_now.set(dbclock.now())
        try:
            return super().changelist_view(request, extra_context)
        finally:
            _page_now.reset(token)

    @admin.display(description="heartbeat age", ordering="heartbeat_at")
    def heartbeat_shown(self, runner: RunnerProcess) -> str:
        age = (self._database_now(runner) - runner.heartbeat_at).total_seconds()
        if runner.state in LIVE_STATES and age > conf.get().HEARTBEAT_TIMEOUT:
            return format_html('<strong style="color: #ba2121">{} s (stale)</strong>', round(age))
        return f"{round(age)} s"

    @admin.display(description="clock offset", ordering="clock_offset")
    def clock_shown(self, runner: RunnerProcess) -> str:
        """The database's clock minus the runner's; past CLOCK_SKEW_WARNING, in red."""
        if runner.clock_offset is None:
            return "-"
        shown = f"{runner.clock_offset:+.3f} s"
        if abs(runner.clock_offset) > conf.get().CLOCK_SKEW_WARNING:
            return format_html('<strong style="color: #ba2121">{} (skewed)</strong>', shown)
        return shown

    @admin.display(description="threads busy/total")
    def threads_shown(self, runner: RunnerProcess) -> str:
        return f"{runner.busy}/{runner.threads}"


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ["name", "task", "runner", "acquired_at"]


def live_link(url: str, what: str) -> str:
    """A link from an admin change page to the same record's page on the dashboard."""
    return format_html('<a href="{}" data-testid="live-page-link">Open on the dashboard</a> ({})', url, what)


def pre(value: Any) -> str:
    """Text (or a JSON value) as preformatted, escaped HTML: tracebacks and logs keep their lines."""
    text = value if isinstance(value, str) else "" if value is None else json.dumps(value, indent=2)
    return format_html("<pre>{}</pre>", text)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f} s"
