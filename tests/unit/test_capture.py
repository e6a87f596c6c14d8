"""Tests for app.capture: each run's prints and log records go to its own RunLog."""

import io
import logging
import sys
import threading

import pytest
from django.test import override_settings

from app import capture
from app.capture import RunLog, ThreadRoutedStream, capturing

TIMEOUT = 5
logger = logging.getLogger("tests.unit.test_capture")


@pytest.fixture
def streams():
    """Fresh stdout/stderr, so what bypasses the capture can be read back.

    Swapped inside the test body (pytest resets sys.stdout between setup and call, so a fixture
    cannot swap them for the test); restored at teardown.
    """
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr

    def swap() -> tuple[io.StringIO, io.StringIO]:
        sys.stdout, sys.stderr = out, err
        return out, err

    yield swap
    sys.stdout, sys.stderr = saved


def in_thread(target) -> None:
    thread = threading.Thread(target=target, name="other-thread")
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_capturing_routes_this_threads_print_into_the_run_log(streams):
    out, err = streams()

    with capturing() as log:
        print("to stdout")
        print("to stderr", file=sys.stderr)

    assert log.getvalue() == "to stdout\nto stderr\n"
    assert out.getvalue() == ""
    assert err.getvalue() == ""


def test_another_threads_print_goes_to_the_original_stream(streams):
    out, _ = streams()

    with capturing() as log:
        in_thread(lambda: print("from the other thread"))
        print("from the task")

    assert out.getvalue() == "from the other thread\n"
    assert log.getvalue() == "from the task\n"


def test_two_threads_capture_into_separate_logs(streams):
    streams()
    logs: dict[str, str] = {}
    both_inside = threading.Barrier(2, timeout=TIMEOUT)

    def task(name: str) -> None:
        with capturing() as log:
            both_inside.wait()
            print(f"hello from {name}")
            logger.warning("warning from %s", name)
            both_inside.wait()
        logs[name] = log.getvalue()

    threads = [threading.Thread(target=task, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive()

    assert "hello from one" in logs["one"]
    assert "warning from one" in logs["one"]
    assert "two" not in logs["one"]
    assert "hello from two" in logs["two"]
    assert "one" not in logs["two"]


def test_capturing_routes_this_threads_log_records(streams):
    streams()
    with capturing() as log:
        logger.info("logged %s", "inside")
        in_thread(lambda: logger.info("logged by another thread"))

    text = log.getvalue()
    assert "INFO tests.unit.test_capture: logged inside" in text
    assert "another thread" not in text


def test_nothing_is_captured_after_the_block(streams):
    out, _ = streams()
    with capturing() as log:
        print("inside")

    print("outside")
    logger.info("outside")

    assert log.getvalue() == "inside\n"
    assert out.getvalue() == "outside\n"
    assert threading.get_ident() not in capture._buffers


def test_capture_ends_when_the_block_raises(streams):
    out, _ = streams()
    logs: list[RunLog] = []

    def print_then_fail() -> None:
        with capturing() as log:
            logs.append(log)
            print("before")
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        print_then_fail()

    print("after")
    assert logs[0].getvalue() == "before\n"
    assert out.getvalue() == "after\n"


def test_install_wraps_the_streams_once(streams):
    out, _ = streams()
    capture.install()
    wrapped = sys.stdout
    capture.install()

    assert isinstance(wrapped, ThreadRoutedStream)
    assert sys.stdout is wrapped
    assert wrapped.original is out
    assert logging.getLogger().handlers.count(capture._handler) == 1


def test_routed_stream_passes_other_attributes_through(streams):
    streams()
    capture.install()

    assert sys.stdout.getvalue() == ""  # StringIO's own method, through __getattr__


# --- RunLog --------------------------------------------------------------------------------------


def test_run_log_under_the_limit_is_kept_whole():
    log = RunLog(limit=10)
    log.write("0123")
    log.write("456789")

    assert log.getvalue() == "0123456789"
    assert not log.truncated


def test_run_log_keeps_the_last_limit_characters_and_marks_the_cut():
    log = RunLog(limit=10)
    for i in range(100):
        log.write(f"{i:03d}")

    assert log.truncated
    assert log.getvalue() == "[... earlier output cut to the last 10 characters]\n6097098099"


def test_run_log_stays_bounded_while_written():
    log = RunLog(limit=100)
    for _ in range(10_000):
        log.write("x" * 7)

    assert log._size <= 2 * log.limit


@override_settings(CONDUCTOR={"LOG_LIMIT": 100})
def test_capturing_uses_the_log_limit_setting(streams):
    streams()
    with capturing() as log:
        for i in range(50):
            print(f"line {i:02d}")

    value = log.getvalue()
    marker = "[... earlier output cut to the last 100 characters]\n"
    assert value.startswith(marker)
    kept = value.removeprefix(marker)
    assert len(kept) == 100
    assert kept.endswith("line 49\n")
    assert "line 00" not in kept
    expected = "".join(f"line {i:02d}\n" for i in range(50))[-100:]
    assert kept == expected


def test_paused_lets_the_thread_write_where_it_always_did_then_captures_again(streams):
    out, _ = streams()

    with capturing() as log:
        print("before")
        with capture.paused():
            print("at the terminal")
        print("after")

    assert log.getvalue() == "before\nafter\n"
    assert out.getvalue() == "at the terminal\n"


def test_paused_outside_a_capture_changes_nothing(streams):
    out, _ = streams()

    with capture.paused():
        print("plain")

    assert out.getvalue() == "plain\n"
