"""The peers beside Conductor: bench/run.py calls ``compare()`` with Conductor's figures at its end.

Each peer is measured by bench/peers/measure.py (its docstring has the exact definitions) in a process of
its own, with the python of ``.bench-venv`` (``make bench-venv``; bench/requirements-peers.txt), one peer
after another so that they never share the CPUs. ``BENCH_PEERS`` picks them: unset or ``1`` for all, ``0``
for none, or a comma-separated list of tasks_db, q2, huey. On its own, ``.venv/bin/python -m
bench.peers.run`` measures the peers and prints their table without a Conductor row.
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_PYTHON = REPO_ROOT / ".bench-venv" / "bin" / "python"
PEERS = ("tasks_db", "q2", "huey")
WORKERS = {"tasks_db": "db_worker", "q2": "qcluster, ORM broker, 1 worker", "huey": "huey_consumer -w 1"}
# bench/run.py's settings for its own ORM: the peers' processes must not inherit them.
CONDUCTOR_ENV = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CONDUCTOR_TASK_MODULES", "PYTHONPATH")


def selected() -> list[str]:
    choice = os.environ.get("BENCH_PEERS", "1").strip()
    if choice in ("", "1"):
        return list(PEERS)
    if choice == "0":
        return []
    names = [name.strip() for name in choice.split(",") if name.strip()]
    if unknown := [name for name in names if name not in PEERS]:
        raise SystemExit(f"bench failed: BENCH_PEERS names unknown peers {unknown}; choose from {PEERS}")
    return names


def measure(name: str) -> dict[str, Any]:
    """Run bench/peers/measure.py for one peer in a temporary directory of its own."""
    work_dir = Path(tempfile.mkdtemp(prefix=f"conductor-bench-{name}-"))
    out = work_dir / "result.json"
    env = {k: v for k, v in os.environ.items() if k not in CONDUCTOR_ENV}
    command = [str(BENCH_PYTHON), "-m", "bench.peers.measure", name]
    command += ["--dir", str(work_dir), "--out", str(out)]
    try:
        if (code := subprocess.run(command, cwd=REPO_ROOT, env=env).returncode) != 0:
            raise SystemExit(f"bench failed: bench/peers/measure.py {name} exited with {code}")
        return json.loads(out.read_text())
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def measure_all(names: list[str]) -> dict[str, dict[str, Any]]:
    if not BENCH_PYTHON.exists():
        raise SystemExit(
            f"bench failed: {BENCH_PYTHON} is missing: `make bench-venv` installs the peers "
            "(BENCH_PEERS=0 skips them)"
        )
    print(f"Peers: {', '.join(names)} (2,000 no-op tasks x 3, 100 stamp tasks, 20 s idle each)", flush=True)
    return {name: measure(name) for name in names}


def ratio(numerator: float, denominator: float) -> str:
    if not denominator:
        return "-"
    value = numerator / denominator
    return f"{value:.2f}x" if value < 1 else f"{value:.1f}x"  # two figures either way


def row(name: str, result: dict[str, Any], conductor: dict[str, Any] | None) -> list[str]:
    cells = [
        name,
        f"{result['drain']:,.0f}",
        f"{result['p50']:.1f} ms",
        f"{result['p95']:.1f} ms",
        f"{result['idle_cpu']:.3f} s",
        f"{result['idle_rss']:.1f} MB",
    ]
    if conductor is not None:
        cells += [ratio(conductor["drain"], result["drain"]), ratio(result["p50"], conductor["p50"])]
    return cells


def table(conductor: dict[str, Any] | None, peers: dict[str, dict[str, Any]]) -> list[str]:
    """One line per runner, Conductor first; the ratios are > 1 where Conductor is ahead."""
    header = ["runner", "drain tasks/s", "pickup p50", "pickup p95", "idle CPU / 20 s", "idle RSS"]
    rows = []
    if conductor is not None:
        header += ["drain ratio", "p50 ratio"]
        rows.append(row("Conductor (runtasks --threads 8)", conductor, conductor))
    for name, result in peers.items():
        rows.append(row(f"{result['label']} {result['version']} ({WORKERS[name]})", result, conductor))
    width = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width[0]) if i == 0 else cell.rjust(width[i]) for i, cell in enumerate(line))
        for line in [header, *rows]
    ]
    rule = "-" * len(lines[0])
    return [rule, lines[0], rule, *lines[1:], rule, *notes(conductor, peers)]


def notes(conductor: dict[str, Any] | None, peers: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "drain: median of 3 rounds of 2,000 no-op tasks, first task's start to last task's end; each peer "
        "with its own worker, one process/thread, default polling (Conductor: --threads 8)",
        "pickup: 100 tasks enqueued one at a time into an idle worker, 50 ms apart; function's first line - "
        "enqueue time",
    ]
    if conductor is not None:
        lines.append(
            "drain ratio: Conductor's tasks/s / the peer's; p50 ratio: the peer's pickup p50 / Conductor's "
            "(above 1: Conductor ahead)"
        )
    for result in peers.values():
        runs = ", ".join(f"{rate:,.0f}" for rate in result["drain_runs"])
        lines.append(
            f"{result['label']}: drain runs {runs} tasks/s, wall {result['drain_wall']:.2f} s; pickup max "
            f"{result['max']:.1f} ms; idle in {result['processes']} process(es), PSS "
            f"{result['idle_pss']:.1f} MB"
        )
    return lines


def compare(conductor: dict[str, Any] | None) -> None:
    """Measure the peers BENCH_PEERS selects and print them with Conductor's figures, if given."""
    if not (names := selected()):
        return
    peers = measure_all(names)
    print("\n" + "\n".join(table(conductor, peers)), flush=True)


if __name__ == "__main__":
    compare(None)
