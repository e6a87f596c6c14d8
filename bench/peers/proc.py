"""A worker's process tree from /proc: its CPU time, memory, and the processes left after a stop."""

import contextlib
import os
import signal
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The fields after "(comm)", which may itself hold spaces: field 4 (ppid) is [1], 14-15 are [11], [12].
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """root and every process descended from it (qcluster forks a sentinel, which forks the rest)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):  # gone since the listing
                parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += frontier
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    times = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            times[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return times


def memory_mb(pid: int, field: str, name: str) -> float:
    """A "field: N kB" line of /proc/<pid>/<name> in MB; 0 for a process gone since."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def idle_cost(root: int, seconds: float) -> dict[str, float]:
    """CPU seconds used by root's tree over ``seconds``, and its summed VmRSS and PSS at the end.

    CPU counts the processes alive at both ends (a worker recycled in between would be missed, not
    double-counted). Summed RSS counts pages that forked processes share once per process; PSS shares
    them out, so it is the fairer total for a multi-process worker.
    """
    before = cpu_seconds(tree(root))
    time.sleep(seconds)
    pids = tree(root)
    after = cpu_seconds(pids)
    return {
        "idle_cpu": sum(after[pid] - before[pid] for pid in after if pid in before),
        "idle_rss": sum(memory_mb(pid, "VmRSS", "status") for pid in pids),
        "idle_pss": sum(memory_mb(pid, "Pss", "smaps_rollup") for pid in pids),
        "processes": len(pids),
    }


def kill_leftovers(pids: list[int]) -> None:
    """SIGKILL the given processes (a stopped worker's own tree) if any outlived it by 5 s."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit may wait for a container's init to reap it)."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False
