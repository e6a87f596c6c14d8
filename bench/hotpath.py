"""Where a drain's time goes: a Runner in this process under cProfile, on a fresh SQLite file.

    .venv/bin/python bench/hotpath.py [--tasks 10000] [--sort tottime] [--lines 30]

The same drain as ``make bench``'s (no-op tasks due now, 8 threads, ``--once``), but the runner runs in
this process so that cProfile sees its main thread and its workers. cProfile slows every Python call, so
read the shares, not the seconds; ``docs/performance.md`` summarises one run.
"""

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench import run as bench  # noqa: E402  (sets up Django on a fresh bench database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--sort", default="tottime", help="a pstats sort key: tottime, cumulative, ...")
    parser.add_argument("--lines", type=int, default=30)
    parser.add_argument("--callers", help="also print who calls the functions matching this pattern")
    options = parser.parse_args()

    from app.runner import Runner, RunnerOptions
    from app.taskrun import TaskRun

    bench.fresh_database()
    bench.insert_noop_tasks(options.tasks)
    runner = Runner(RunnerOptions(once=True, threads=bench.THREADS))
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    runner.run()
    profile.disable()
    wall = time.perf_counter() - started
    runs = TaskRun.objects.count()
    print(f"{runs:,} runs in {wall:.2f} s under cProfile ({runs / wall:,.0f} runs/s; slower than unprofiled)")
    stats = pstats.Stats(profile).sort_stats(options.sort)
    stats.print_stats(options.lines)
    if options.callers:
        stats.print_callers(options.callers)


if __name__ == "__main__":
    main()
