"""The runner's claim policy (app.runner.backlog.Backlog): how many runs to claim, and those claimed ahead."""

from app.runner.backlog import PREFETCH_MAX_RUN, PREFETCH_PER_THREAD, Backlog

THREADS = 4
SHORT = PREFETCH_MAX_RUN / 10
LONG = 1.0


def test_before_any_run_it_claims_for_the_free_threads_only():
    assert Backlog(THREADS).capacity(running=1) == THREADS - 1


def test_after_long_runs_nothing_is_claimed_ahead():
    backlog = Backlog(THREADS)
    backlog.ran(LONG)
    assert backlog.capacity(running=THREADS) == 0


def test_while_runs_are_short_it_claims_ahead_of_free_threads():
    backlog = Backlog(THREADS)
    backlog.ran(SHORT)
    assert backlog.capacity(running=THREADS) == PREFETCH_PER_THREAD * THREADS


def test_a_full_backlog_is_refilled_in_one_batch_not_a_few_at_a_time():
    backlog = Backlog(THREADS)
    backlog.ran(SHORT)
    backlog.add([(f"task{n}", f"run{n}") for n in range(THREADS + 1)])
    assert backlog.capacity(running=THREADS) == 0
    backlog.next()  # down to THREADS: refill
    assert backlog.capacity(running=THREADS) > 0


def test_max_tasks_caps_what_is_claimed_in_all():
    backlog = Backlog(THREADS, max_tasks=5)
    backlog.add([("task", "run")] * 3)
    assert backlog.claimed == 3
    assert backlog.capacity(running=0) == 1  # 4 - 3 queued = 1, under the 2 still allowed
    backlog.ran(SHORT)
    assert backlog.capacity(running=0) == 2  # claiming ahead, but never beyond max_tasks


def test_runs_start_in_the_order_they_were_claimed():
    backlog = Backlog(THREADS)
    backlog.add([("a", 1), ("b", 2)])
    assert [backlog.next(), backlog.next()] == [("a", 1), ("b", 2)]
    assert len(backlog) == 0


def test_the_average_follows_recent_runs():
    backlog = Backlog(THREADS)
    backlog.ran(LONG)
    for _ in range(30):
        backlog.ran(SHORT)
    assert backlog.recent_run < PREFETCH_MAX_RUN


def test_dropping_the_backlog_takes_out_every_run_claimed_ahead():
    backlog = Backlog(THREADS)
    backlog.add([("task-1", "run-1"), ("task-2", "run-2")])
    assert backlog.drop() == [("task-1", "run-1"), ("task-2", "run-2")]
    assert len(backlog) == 0
    assert backlog.claimed == 2  # still counted as claimed: max_tasks counts them
