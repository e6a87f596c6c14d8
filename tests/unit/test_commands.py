"""Tests for the management commands: runtasks' option checks and loaddemo."""

import io
import logging
import os
import subprocess
import sys
from argparse import ArgumentTypeError
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from app.management.commands.runtasks import (
    address,
    ensure_log_handler,
    poll_seconds,
    positive_int,
    queue_names,
    seconds,
)
from app.serve import is_loopback, parse_address
from app.status import TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions
from tests.acceptance.conftest import free_port, port_open

REPO_ROOT = Path(__file__).resolve().parents[2]

# --- runtasks ------------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]
BAD_OPTIONS = [
    # (id, arguments, what the message must say)
    ("threads-0", ["--threads", "0"], "argument --threads: takes a whole number above 0, got '0'"),
    ("threads-negative", ["--threads", "-2"], "argument --threads: takes a whole number above 0, got '-2'"),
    ("threads-x", ["--threads", "x"], "argument --threads: takes a whole number above 0, got 'x'"),
    ("threads-float", ["--threads", "1.5"], "argument --threads: takes a whole number above 0, got '1.5'"),
    ("poll-0", ["--poll", "0"], "argument --poll: takes a number of seconds above 0 (e.g. 5), got '0'"),
    ("poll-abc", ["--poll", "abc"], "argument --poll: takes a number of seconds, got 'abc'"),
    ("poll-negative", ["--poll=-1"], "argument --poll: takes a finite number of seconds >= 0, got '-1'"),
    ("poll-nan", ["--poll", "nan"], "argument --poll: takes a finite number of seconds >= 0, got 'nan'"),
    ("poll-inf", ["--poll", "inf"], "argument --poll: takes a finite number of seconds >= 0, got 'inf'"),
    ("grace--1", ["--grace=-1"], "argument --grace: takes a finite number of seconds >= 0, got '-1'"),
    ("grace-abc", ["--grace", "abc"], "argument --grace: takes a number of seconds, got 'abc'"),
    ("grace-nan", ["--grace", "nan"], "argument --grace: takes a finite number of seconds >= 0, got 'nan'"),
    ("grace-inf", ["--grace", "inf"], "argument --grace: takes a finite number of seconds >= 0, got 'inf'"),
    ("max-tasks-0", ["--max-tasks", "0"], "argument --max-tasks: takes a whole number above 0, got '0'"),
    ("max-tasks-x", ["--max-tasks", "x"], "argument --max-tasks: takes a whole number above 0, got 'x'"),
    ("max-tasks-empty", ["--max-tasks", ""], "argument --max-tasks: takes a whole number above 0, got ''"),
    ("worker-id-empty", ["--worker-id", ""], "argument --worker-id: must not be empty"),
    ("worker-id-blank", ["--worker-id", "   "], "argument --worker-id: must not be empty"),
    ("queue-empty-name", ["--queue", "a,,b"], "argument --queue: takes queue names separated by commas"),
    ("serve-no-port", ["--serve", "localhost"], "argument --serve: expected HOST:PORT"),
    ("serve-port-0", ["--serve", ":0"], "argument --serve: the port must be 1 to 65535, got 0"),
]


@pytest.mark.parametrize(
    ("arguments", "message"), [pytest.param(*case[1:], id=case[0]) for case in BAD_OPTIONS]
)
def test_runtasks_exits_2_on_a_bad_option_saying_what_is_wrong(arguments, message):
    result = subprocess.run(
        [sys.executable, "manage.py", "runtasks", *arguments],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [(positive_int, "1", 1), (positive_int, " 16 ", 16), (seconds, "0", 0.0), (seconds, "0.25", 0.25),
     (poll_seconds, "5", 5.0), (queue_names, "a, b", ["a", "b"]), (address, ":8080", ("127.0.0.1", 8080))],
)  # fmt: skip
def test_option_types_accept_good_values(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text"), [(positive_int, "0"), (seconds, "-inf"), (poll_seconds, "0"), (queue_names, ",")]
)
def test_option_types_refuse_bad_values_as_argparse_expects(parse, text):
    with pytest.raises(ArgumentTypeError):
        parse(text)


def test_runtasks_from_code_gets_the_same_check_as_a_command_error():
    with pytest.raises(CommandError, match="argument --threads: takes a whole number above 0, got '0'"):
        call_command("runtasks", "--threads", "0")


# --- runtasks --serve: DEBUG only on a loopback address ------------------------------------------

ADDRESSES = [
    # (ADDR as given to --serve, whether only this machine reaches it)
    ("127.0.0.1:8000", True),
    ("127.3.2.1:8000", True),
    ("localhost:8000", True),
    ("[::1]:8000", True),
    ("8000", True),  # a bare port: served on 127.0.0.1
    (":8000", True),
    ("0.0.0.0:8000", False),
    ("[::]:8000", False),
    ("192.168.1.20:8000", False),
    ("10.0.0.1:8000", False),
    ("example.com:8000", False),
    ("127.evil.example:8000", False),  # a name that merely starts like a loopback address
    ("localhost.evil.example:8000", False),
]


@pytest.mark.parametrize(("addr", "loopback"), ADDRESSES)
def test_is_loopback_counts_only_addresses_no_other_machine_reaches(addr, loopback):
    assert is_loopback(parse_address(addr)[0]) is loopback


@pytest.mark.parametrize(("addr", "loopback"), ADDRESSES)
def test_make_runs_loopback_test_agrees_with_runtasks(addr, loopback):
    decided = subprocess.run([REPO_ROOT / "scripts" / "is-loopback", addr], timeout=10)

    assert (decided.returncode == 0) is loopback


def runtasks_serve(addr: str, tmp_path: Path, debug: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_"))}
    env.update(DJANGO_DEBUG=debug, CONDUCTOR_VAR_DIR=str(tmp_path / "var"), PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "manage.py", "runtasks", "--serve", addr, "--once"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]"])
def test_runtasks_refuses_to_serve_the_network_with_debug_on(tmp_path, host):
    port = free_port()

    refused = runtasks_serve(f"{host}:{port}", tmp_path, debug="1")

    assert refused.returncode == 1
    assert refused.stderr.startswith(f"CommandError: --serve {host}:{port}: DEBUG is on and ")
    assert "not a loopback address" in refused.stderr
    assert f"--serve 127.0.0.1:{port}" in refused.stderr
    assert "DJANGO_DEBUG=0" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not port_open(port)
    assert "Dashboard:" not in refused.stdout


# --- loaddemo ------------------------------------------------------------------------------------

DEMO_IDS = {"demo-feed", "demo-slow", "demo-fail", "demo-db", "demo-report", "demo-runaway", "demo-stuck",
            "demo-import", "demo-burst"}  # fmt: skip


def load_demo() -> str:
    out = io.StringIO()
    call_command("loaddemo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_loaddemo_creates_the_demo_tasks():
    output = load_demo()

    demo = Task.objects.filter(task_id__startswith="demo-")
    assert demo.count() == 9
    assert set(demo.values_list("task_id", flat=True)) == DEMO_IDS
    assert all(task.status == TaskStatus.WAITING for task in demo)
    assert "poll news feed: server.demo.tasks.poll_feed every 10 s" in output
    assert "runaway computation: server.demo.tasks.busy_loop once, in 1 s (kill_time 3 s)" in output
    assert "nightly report (db_use): server.demo.tasks.slow_job once, in 0 s (db_use)" in output
    assert "stuck in C (overruns): server.demo.tasks.stuck_in_c every 60 s (kill_time 3 s)" in output
    assert "nightly import (progress): server.demo.tasks.import_batch every 60 s" in output
    assert len(output.strip().splitlines()) == 9


@pytest.mark.django_db
def test_loaddemo_twice_leaves_one_set_of_demo_tasks():
    load_demo()
    first = set(Task.objects.values_list("pk", flat=True))

    load_demo()

    demo = Task.objects.filter(task_id__startswith="demo-")
    assert demo.count() == 9
    assert set(demo.values_list("task_id", flat=True)) == DEMO_IDS
    assert Task.objects.count() == len(DEMO_IDS)
    assert not first & set(Task.objects.values_list("pk", flat=True))  # replaced, not kept


@pytest.mark.django_db
def test_loaddemo_replaces_demo_runs_and_keeps_other_tasks():
    mine = Task(task_id="mine", func=functions.add, args_in={"a": 1})
    mine.save()
    load_demo()
    TaskRun.objects.create(task=Task.objects.get(task_id="demo-feed"))
    TaskRun.objects.create(task=mine)

    load_demo()

    assert Task.objects.filter(task_id="mine").exists()
    assert list(TaskRun.objects.values_list("task__task_id", flat=True)) == ["mine"]
    assert Task.objects.count() == len(DEMO_IDS) + 1


def test_a_logger_that_no_handler_would_see_gets_one_on_stderr_once():
    orphan = logging.Logger("conductor")  # outside the logging tree: no root above it, as in a startproject
    ensure_log_handler(orphan)
    ensure_log_handler(orphan)
    (handler,) = orphan.handlers
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is sys.stderr


def test_a_logger_under_a_handler_gets_none_of_its_own():
    parent = logging.Logger("project")
    parent.addHandler(logging.NullHandler())
    child = logging.Logger("conductor")
    child.parent = parent
    ensure_log_handler(child)
    assert child.handlers == []
