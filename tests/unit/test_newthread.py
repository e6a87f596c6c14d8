"""Tests for app.newthread: New_Thread, ThreadInterrupted and post_mortem.

No sleeps as synchronisation: threads signal with Events, tests join with timeouts.
"""

import io
import itertools
import logging
import math
import pdb
import re
import sys
import threading
import types

import pytest

from app import newthread
from app.newthread import New_Thread, ThreadInterrupted, post_mortem

TIMEOUT = 5  # seconds; generous, only reached when something is broken


class FakeStream(io.StringIO):
    """A stream whose isatty() answers what the test wants."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def finish(thread: New_Thread) -> None:
    thread.join(timeout=TIMEOUT)
    assert not thread.is_alive()


def noop() -> None:
    pass


def work() -> str:
    return "done"


def boom() -> None:
    raise ValueError("boom")


def blocked_thread(**kwargs) -> tuple[New_Thread, threading.Event, threading.Event]:
    """A started thread that waits (at most TIMEOUT) for the returned `release` event."""
    running, release = threading.Event(), threading.Event()

    def wait_for_release() -> None:
        running.set()
        release.wait(TIMEOUT)

    thread = New_Thread(wait_for_release, **kwargs)
    thread.start()
    assert running.wait(TIMEOUT)
    return thread, running, release


def spinning_thread() -> New_Thread:
    """A started thread in a pure-Python busy loop checking nothing (daemon: cannot block exit)."""
    running = threading.Event()

    def spin() -> None:
        running.set()
        while True:
            pass

    thread = New_Thread(spin, daemon=True)
    thread.start()
    assert running.wait(TIMEOUT)
    return thread


# caplog sees conductor.thread: pytest also attaches its handler to non-propagating loggers.
def errors_and_warnings(caplog) -> tuple[list, list]:
    records = [r for r in caplog.records if r.name == "conductor.thread"]
    return (
        [r for r in records if r.levelno == logging.ERROR],
        [r for r in records if r.levelno == logging.WARNING],
    )


# Running once


def test_runs_once_with_args_in():
    calls = []

    def add(x, y):
        calls.append((x, y))
        return x + y

    thread = New_Thread(add, {"x": 1, "y": 2})
    thread.start()
    finish(thread)
    assert calls == [(1, 2)]
    assert thread.result == 3
    assert thread.loop_count == 1
    assert thread.exception is None


def test_runs_once_without_args_in():
    thread = New_Thread(work)
    assert thread.args_in is None
    thread.start()
    finish(thread)
    assert thread.result == "done"
    assert thread.loop_count == 1


def test_args_in_is_a_dict_copy_of_any_mapping():
    original = {"x": 1}
    thread = New_Thread(work, types.MappingProxyType(original))
    original["x"] = 2
    assert thread.args_in == {"x": 1}
    assert type(thread.args_in) is dict


def test_public_attributes_before_and_after_run():
    thread = New_Thread(work, loop=True, loop_time=2, use_pdb=True)
    assert (thread.func, thread.loop, thread.loop_time, thread.use_pdb) == (work, True, 2, True)
    assert (thread.exception, thread.result, thread.loop_count) == (None, None, 0)
    assert thread.started_at is None
    assert thread.finished_at is None
    assert thread.stop_requested is False

    once = New_Thread(work)
    once.start()
    finish(once)
    assert isinstance(once.started_at, float)
    assert isinstance(once.finished_at, float)
    assert once.started_at <= once.finished_at


# Looping and stop()


def test_loop_calls_func_repeatedly_and_counts_calls():
    calls = itertools.count(1)
    third_call = threading.Event()

    def tick():
        if next(calls) >= 3:
            third_call.set()

    thread = New_Thread(tick, loop=True, loop_time=0.01)
    thread.start()
    assert third_call.wait(TIMEOUT)
    thread.stop()
    finish(thread)
    assert thread.loop_count >= 3


def test_stop_ends_loop_without_waiting_out_loop_time():
    first_call = threading.Event()
    thread = New_Thread(first_call.set, loop=True, loop_time=60)
    thread.start()
    assert first_call.wait(TIMEOUT)
    thread.stop()
    thread.join(timeout=TIMEOUT)
    assert not thread.is_alive()
    assert thread.loop_count == 1
    assert thread.stop_requested is True


def test_join_returns_after_stop_regression_shakecast_stop_attribute():
    """ShakeCast set self._stop = Event(), shadowing Thread._stop, and join() broke."""
    first_call = threading.Event()
    thread = New_Thread(first_call.set, loop=True, loop_time=60)
    thread.start()
    assert first_call.wait(TIMEOUT)
    thread.stop()
    assert thread.join(timeout=TIMEOUT) is None
    assert not thread.is_alive()


def test_shadows_no_thread_internal():
    ours = set(vars(New_Thread(noop))) - set(vars(threading.Thread()))
    assert ours
    assert not ours & set(dir(threading.Thread))
    overridden = {
        name for name in vars(New_Thread) if name in vars(threading.Thread) and not name.startswith("__")
    }
    assert overridden == {"run"}
    assert New_Thread._stop is threading.Thread._stop


def test_stop_before_start_means_func_is_never_called():
    calls = []
    thread = New_Thread(calls.append, {"object": 1})
    thread.stop()
    thread.start()
    finish(thread)
    assert calls == []
    assert thread.loop_count == 0


# threading.Thread behaviour, inherited


def test_setting_daemon_after_start_raises():
    thread, _, release = blocked_thread()
    with pytest.raises(RuntimeError):
        thread.daemon = True
    release.set()
    finish(thread)


def test_second_start_raises():
    thread = New_Thread(noop)
    thread.start()
    finish(thread)
    with pytest.raises(RuntimeError):
        thread.start()


def test_join_before_start_raises():
    with pytest.raises(RuntimeError):
        New_Thread(noop).join()


def test_join_on_current_thread_raises():
    errors = []

    def join_self():
        try:
            thread.join()
        except RuntimeError as exc:
            errors.append(exc)

    thread = New_Thread(join_self)
    thread.start()
    finish(thread)
    assert len(errors) == 1
    assert "current thread" in str(errors[0])


def test_ident_is_none_before_start_and_the_thread_ident_after():
    seen = []
    thread = New_Thread(lambda: seen.append(threading.get_ident()))
    assert thread.ident is None
    thread.start()
    finish(thread)
    assert isinstance(thread.ident, int)
    assert seen == [thread.ident]


def test_join_returns_none():
    thread = New_Thread(noop)
    thread.start()
    assert thread.join(timeout=TIMEOUT) is None
    assert thread.join() is None


def test_isalive_is_is_alive():
    thread = New_Thread(noop)
    assert thread.isAlive() is thread.is_alive() is False
    thread, _, release = blocked_thread()
    assert thread.isAlive() is thread.is_alive() is True
    release.set()
    finish(thread)
    assert thread.isAlive() is thread.is_alive() is False


def test_name_given_and_default():
    assert New_Thread(work, name="worker-1").name == "worker-1"
    assert re.fullmatch(r"Thread-\d+ \(work\)", New_Thread(work).name)


@pytest.mark.parametrize("daemon", [True, False])
def test_daemon_given(daemon):
    thread = New_Thread(noop, daemon=daemon)
    assert thread.daemon is daemon
    thread.start()
    finish(thread)


def test_daemon_defaults_to_the_creating_thread():
    assert New_Thread(noop).daemon is threading.current_thread().daemon


# Checking arguments at construction


@pytest.mark.parametrize(("args_in", "type_name"), [([("x", 1)], "list"), ("x=1", "str"), (("x",), "tuple")])
def test_args_in_not_a_mapping_is_a_type_error(args_in, type_name):
    message = f"args_in must be a mapping of keyword arguments (e.g. {{'x': 1}}), got {type_name}"
    with pytest.raises(TypeError, match=re.escape(message)):
        New_Thread(work, args_in)


def test_args_in_keys_must_be_strings():
    with pytest.raises(TypeError, match="args_in keys must be argument names"):
        New_Thread(work, {1: "x"})


def test_func_not_callable_is_a_type_error():
    with pytest.raises(TypeError, match="func must be callable, got int"):
        New_Thread(42)


@pytest.mark.parametrize("loop_time", [0, -1, "5", None, True, math.nan, math.inf])
def test_loop_time_must_be_a_positive_number_when_looping(loop_time):
    with pytest.raises(ValueError, match="loop_time"):
        New_Thread(work, loop=True, loop_time=loop_time)


def test_loop_time_is_not_checked_without_loop():
    assert New_Thread(work, loop_time=0).loop_time == 0


# Exceptions in func


def test_exception_is_kept_and_logged_with_traceback(caplog):
    thread = New_Thread(boom, name="failing")
    thread.start()
    finish(thread)
    assert isinstance(thread.exception, ValueError)
    assert str(thread.exception) == "boom"
    assert thread.result is None
    assert thread.loop_count == 1
    errors, _ = errors_and_warnings(caplog)
    assert len(errors) == 1
    assert errors[0].exc_info[1] is thread.exception
    assert "failing" in errors[0].getMessage()


def test_loop_goes_on_after_exception_and_keeps_the_latest(caplog):
    calls = itertools.count(1)
    fourth_call = threading.Event()

    def flaky():
        n = next(calls)
        if n in (1, 2):
            raise ValueError(n)
        if n >= 4:
            fourth_call.set()
        return n

    thread = New_Thread(flaky, loop=True, loop_time=0.01)
    thread.start()
    assert fourth_call.wait(TIMEOUT)
    thread.stop()
    finish(thread)
    assert thread.exception.args == (2,)
    assert thread.result == thread.loop_count >= 4
    errors, _ = errors_and_warnings(caplog)
    assert [r.exc_info[1].args for r in errors] == [(1,), (2,)]


@pytest.mark.parametrize("exc_type", [SystemExit, ThreadInterrupted])
def test_base_exception_ends_the_loop_and_is_kept(caplog, exc_type):
    calls = itertools.count(1)

    def exits_on_second_call():
        if next(calls) == 2:
            raise exc_type

    thread = New_Thread(exits_on_second_call, loop=True, loop_time=0.01)
    thread.start()
    finish(thread)
    assert isinstance(thread.exception, exc_type)
    assert thread.loop_count == 2
    assert thread.stop_requested
    errors, warnings = errors_and_warnings(caplog)
    assert errors == []
    assert len(warnings) == 1
    assert warnings[0].exc_info is None
    assert exc_type.__name__ in warnings[0].getMessage()


# interrupt()


def test_interrupt_stops_a_pure_python_busy_loop(caplog):
    thread = spinning_thread()
    assert thread.interrupt() is True
    finish(thread)
    assert isinstance(thread.exception, ThreadInterrupted)
    assert thread.stop_requested
    _, warnings = errors_and_warnings(caplog)
    assert "ended by ThreadInterrupted" in warnings[0].getMessage()


def test_except_exception_in_user_code_does_not_swallow_interrupt():
    running = threading.Event()
    swallowed = []

    def stubborn():
        running.set()
        while True:
            try:
                while True:
                    pass
            except Exception as exc:
                swallowed.append(exc)

    thread = New_Thread(stubborn, daemon=True)
    thread.start()
    assert running.wait(TIMEOUT)
    assert thread.interrupt()
    finish(thread)
    assert swallowed == []
    assert isinstance(thread.exception, ThreadInterrupted)


def test_interrupt_with_another_exception_type():
    class Cancelled(ThreadInterrupted):
        pass

    thread = spinning_thread()
    assert thread.interrupt(Cancelled) is True
    finish(thread)
    assert type(thread.exception) is Cancelled


@pytest.mark.parametrize("exc_type", [ValueError("not a class"), int])
def test_interrupt_needs_an_exception_class(exc_type):
    with pytest.raises(TypeError, match="exc_type"):
        New_Thread(noop).interrupt(exc_type)


def test_interrupt_before_start_returns_false_and_changes_nothing():
    thread = New_Thread(work)
    assert thread.interrupt() is False
    assert not thread.stop_requested
    thread.start()
    finish(thread)
    assert thread.result == "done"


def test_interrupt_after_finish_returns_false():
    thread = New_Thread(work)
    thread.start()
    finish(thread)
    assert thread.interrupt() is False
    assert thread.exception is None


def test_interrupt_ends_a_loop_waiting_for_its_next_call():
    first_call = threading.Event()
    thread = New_Thread(first_call.set, loop=True, loop_time=60)
    thread.start()
    assert first_call.wait(TIMEOUT)
    assert thread.interrupt() is True
    finish(thread)
    assert thread.loop_count == 1
    assert isinstance(thread.exception, ThreadInterrupted)


def test_thread_blocked_in_c_is_interrupted_when_the_call_returns():
    thread, _, release = blocked_thread()
    assert thread.interrupt() is True
    thread.join(timeout=0.2)
    assert thread.is_alive()  # still in the lock acquire behind Event.wait
    assert thread.interrupt() is False  # one interrupt is already on its way
    release.set()
    finish(thread)
    assert isinstance(thread.exception, ThreadInterrupted)


def test_interrupt_undoes_and_raises_when_several_thread_states_are_hit(monkeypatch):
    calls = []

    def fake_set_async_exc(ident, exc_type):
        calls.append((ident, exc_type))
        return 2 if exc_type is not None else 1

    thread, _, release = blocked_thread()
    monkeypatch.setattr(newthread, "set_async_exc", fake_set_async_exc)
    with pytest.raises(SystemError):
        thread.interrupt()
    assert calls[:2] == [(thread.ident, ThreadInterrupted), (thread.ident, None)]
    release.set()
    finish(thread)


def test_interrupt_returns_false_when_the_thread_state_is_gone(monkeypatch):
    thread, _, release = blocked_thread()
    monkeypatch.setattr(newthread, "set_async_exc", lambda ident, exc_type: 0)
    assert thread.interrupt() is False
    release.set()
    finish(thread)


# use_pdb and post_mortem()


@pytest.fixture
def pdb_calls(monkeypatch):
    """pdb.post_mortem replaced by a recorder: a real one would wait for input."""
    calls = []
    monkeypatch.setattr(pdb, "post_mortem", calls.append)
    return calls


def test_use_pdb_without_terminal_logs_why_and_does_not_hang(monkeypatch, caplog, pdb_calls):
    monkeypatch.setattr(sys, "stdin", FakeStream(tty=False))
    thread = New_Thread(boom, use_pdb=True, name="pdb-worker")
    thread.start()
    finish(thread)
    assert pdb_calls == []
    _, warnings = errors_and_warnings(caplog)
    assert [r.getMessage() for r in warnings] == [
        "use_pdb=True but stdin is not a terminal; not starting pdb for thread pdb-worker"
    ]


def test_use_pdb_with_terminal_opens_pdb_on_the_traceback(monkeypatch, pdb_calls):
    monkeypatch.setattr(sys, "stdin", FakeStream(tty=True))
    monkeypatch.setattr(sys, "stdout", FakeStream(tty=True))
    thread = New_Thread(boom, use_pdb=True)
    thread.start()
    finish(thread)
    assert pdb_calls == [thread.exception.__traceback__]


def test_without_use_pdb_no_pdb(monkeypatch, pdb_calls):
    monkeypatch.setattr(sys, "stdin", FakeStream(tty=True))
    monkeypatch.setattr(sys, "stdout", FakeStream(tty=True))
    thread = New_Thread(boom)
    thread.start()
    finish(thread)
    assert pdb_calls == []


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_post_mortem_returns_true_after_pdb(monkeypatch, pdb_calls):
    monkeypatch.setattr(sys, "stdin", FakeStream(tty=True))
    monkeypatch.setattr(sys, "stdout", FakeStream(tty=True))
    exc = raised(ValueError("x"))
    assert post_mortem(exc) is True
    assert pdb_calls == [exc.__traceback__]


@pytest.mark.parametrize(
    ("stdin", "stdout", "reason"),
    [
        (FakeStream(tty=False), FakeStream(tty=True), "stdin is not a terminal"),
        (None, FakeStream(tty=True), "stdin is not a terminal"),
        (FakeStream(tty=True), FakeStream(tty=False), "stdout is not a terminal"),
    ],
)
def test_post_mortem_without_terminal(monkeypatch, caplog, pdb_calls, stdin, stdout, reason):
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert post_mortem(raised(ValueError("x"))) is False
    assert pdb_calls == []
    _, warnings = errors_and_warnings(caplog)
    assert reason in warnings[0].getMessage()
    assert threading.current_thread().name in warnings[0].getMessage()


def test_post_mortem_without_traceback(monkeypatch, caplog, pdb_calls):
    monkeypatch.setattr(sys, "stdin", FakeStream(tty=True))
    monkeypatch.setattr(sys, "stdout", FakeStream(tty=True))
    assert post_mortem(ValueError("never raised")) is False
    assert pdb_calls == []


# repr and cleanup


def test_repr_shows_name_state_func_and_counts():
    thread = New_Thread(boom, loop=True, loop_time=60, name="r")
    assert repr(thread) == "<New_Thread(r, initial, func=boom, loop every 60s, calls=0)>"

    running, release = threading.Event(), threading.Event()

    def wait():
        running.set()
        release.wait(TIMEOUT)

    live = New_Thread(wait, name="live", daemon=True)
    live.start()
    assert running.wait(TIMEOUT)
    assert f"live, started {live.ident}" in repr(live)
    assert "daemon" in repr(live)
    release.set()
    finish(live)

    once = New_Thread(boom, name="once")
    once.start()
    finish(once)
    assert repr(once) == ("<New_Thread(once, stopped, func=boom, calls=1, exception=ValueError('boom'))>")


def test_closes_its_database_connections_when_done(monkeypatch):
    closed_in = []
    monkeypatch.setattr(
        newthread.connections, "close_all", lambda: closed_in.append(threading.current_thread())
    )
    thread = New_Thread(noop)
    thread.start()
    finish(thread)
    assert closed_in == [thread]
