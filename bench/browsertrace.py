"""What the page's long tasks are: a summary of a Chromium performance trace (``BENCH_BROWSER_TRACE``).

    .venv/bin/python bench/browsertrace.py trace.json [--over 50] [--top 10]

On the renderer's main thread (``CrRendererMain``) every task (``RunTask``) longer than ``--over`` ms is a
long task. For each of the longest, and for all of them together, the time is split by what ran inside
(self time of the trace's events: ``Layout``, ``UpdateLayoutTree``, ``Paint``, a ``FunctionCall`` named by
its function and script), and the V8 sampling profiler's samples taken inside long tasks are counted by
the JavaScript function they were in, and by the deepest function of the dashboard's own modules
(``static/conductor``) on their stack. The trace is a measurement: it slows the page a little.
"""

import argparse
import bisect
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

OURS = "/static/conductor/"


def load(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    return data["traceEvents"] if isinstance(data, dict) else data


def main_threads(events: list[dict[str, Any]]) -> set[tuple[int, int]]:
    return {
        (e["pid"], e["tid"])
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name" and e["args"].get("name") == "CrRendererMain"
    }


def spans(events: list[dict[str, Any]], threads: set[tuple[int, int]]) -> list[dict[str, Any]]:
    """Complete events ('X', and 'B'/'E' pairs) of the main threads, as {ts, end, label, cpu}, by start
    (``cpu``: the thread's CPU time inside, µs, when the trace has it)."""
    out, open_ = [], defaultdict(list)
    for e in events:
        if (e.get("pid"), e.get("tid")) not in threads:
            continue
        ph = e.get("ph")
        if ph == "X" and "dur" in e:
            out.append({"ts": e["ts"], "end": e["ts"] + e["dur"], "label": label(e), "cpu": e.get("tdur")})
        elif ph == "B":
            open_[(e["pid"], e["tid"])].append(e)
        elif ph == "E" and open_[(e["pid"], e["tid"])]:
            begin = open_[(e["pid"], e["tid"])].pop()
            cpu = e["tts"] - begin["tts"] if "tts" in e and "tts" in begin else None
            out.append({"ts": begin["ts"], "end": e["ts"], "label": label(begin), "cpu": cpu})
    out.sort(key=lambda s: (s["ts"], -s["end"]))
    return out


def label(event: dict[str, Any]) -> str:
    data = event.get("args", {}).get("data") or {}
    name = event["name"]
    if name == "FunctionCall":
        script = (data.get("url") or "").rsplit("/", 1)[-1]
        return f"FunctionCall {data.get('functionName') or '(anonymous)'} {script}:{data.get('lineNumber')}"
    if name == "EventDispatch":
        return f"EventDispatch {data.get('type', '')}"
    if name == "TimerFire":
        return "TimerFire"
    return name


def self_times(inside: list[dict[str, Any]]) -> Counter:
    """Self time (ms) per label of nested spans (sorted by start, outer spans first)."""
    totals: Counter = Counter()
    stack: list[dict[str, Any]] = []
    for span in inside:
        while stack and stack[-1]["end"] <= span["ts"]:
            stack.pop()
        if stack:
            totals[stack[-1]["label"]] -= (min(span["end"], stack[-1]["end"]) - span["ts"]) / 1000
        totals[span["label"]] += (span["end"] - span["ts"]) / 1000
        stack.append(span)
    return totals


def samples(events: list[dict[str, Any]], threads: set[tuple[int, int]]) -> list[tuple[float, list[dict]]]:
    """The sampling profiler's samples of the main threads: (time in µs, stack of call frames, leaf first)."""
    starts, nodes, chunks = {}, defaultdict(dict), defaultdict(list)
    for e in events:
        if e.get("name") == "Profile" and (e["pid"], e["tid"]) in threads:
            starts[(e["pid"], e["id"])] = e["args"]["data"]["startTime"]
    for e in events:
        key = (e.get("pid"), e.get("id"))
        if e.get("name") != "ProfileChunk" or key not in starts:
            continue
        data = e["args"]["data"]
        for node in data.get("cpuProfile", {}).get("nodes", []):
            nodes[key][node["id"]] = node
        chunks[key].append((data.get("cpuProfile", {}).get("samples", []), data.get("timeDeltas", [])))
    out = []
    for key, parts in chunks.items():
        at = starts[key]
        for ids, deltas in parts:
            for node_id, delta in zip(ids, deltas, strict=False):
                at += delta
                out.append((at, stack_of(nodes[key], node_id)))
    return sorted(out, key=lambda sample: sample[0])


def stack_of(nodes: dict[int, dict], node_id: int) -> list[dict]:
    frames = []
    while node_id in nodes:
        node = nodes[node_id]
        frames.append(node["callFrame"])
        node_id = node.get("parent")
        if node_id is None:
            node_id = next((n["id"] for n in nodes.values() if node["id"] in n.get("children", [])), None)
    return frames


def ours_in(stack: list[dict]) -> str:
    """The deepest frame of the dashboard's modules: where a sample in a built-in was called from."""
    return next((frame_name(frame) for frame in stack if OURS in frame.get("url", "")), "(not ours)")


def frame_name(frame: dict) -> str:
    script = frame.get("url", "").rsplit("/", 1)[-1]
    where = f" {script}:{frame.get('lineNumber', -1) + 1}" if script else ""
    return f"{frame.get('functionName') or '(anonymous)'}{where}"


def summarise(path: Path, over_ms: float, top: int) -> None:
    events = load(path)
    threads = main_threads(events)
    all_spans = spans(events, threads)
    tasks = [s for s in all_spans if s["label"] == "RunTask" and (s["end"] - s["ts"]) / 1000 > over_ms]
    tasks.sort(key=lambda s: s["end"] - s["ts"], reverse=True)
    origin = min((s["ts"] for s in all_spans), default=0)
    print(f"{path}: {len(tasks)} main-thread tasks over {over_ms:.0f} ms, "
          f"{sum(t['end'] - t['ts'] for t in tasks) / 1000:.0f} ms in all, {cpu_ms(tasks)}")  # fmt: skip
    everything: Counter = Counter()
    starts = [s["ts"] for s in all_spans]
    for number, task in enumerate(tasks):
        first, last = bisect.bisect_left(starts, task["ts"]), bisect.bisect_right(starts, task["end"])
        inside = [s for s in all_spans[first:last] if s["end"] <= task["end"]]
        times = self_times(inside)
        everything.update(times)
        if number < top:
            parts = ", ".join(f"{name} {ms:.0f}" for name, ms in times.most_common(5) if ms >= 1)
            at, ms = (task["ts"] - origin) / 1e6, (task["end"] - task["ts"]) / 1000
            print(f"  {at:7.2f} s  {ms:5.0f} ms ({cpu_ms([task])}): {parts}")
    print("Self time inside long tasks (ms):")
    for name, ms in everything.most_common(top):
        print(f"  {ms:7.0f}  {name}")
    windows = sorted((t["ts"], t["end"]) for t in tasks)
    in_long = [(at, stack) for at, stack in samples(events, threads) if within(windows, at)]
    if in_long:
        leaf = Counter(frame_name(stack[0]) for _, stack in in_long if stack)
        ours = Counter(ours_in(stack) for _, stack in in_long)
        print(f"JavaScript samples inside long tasks ({len(in_long)}), by function:")
        for name, count in leaf.most_common(top):
            print(f"  {count:6}  {name}")
        print("... by the deepest function of static/conductor on the stack:")
        for name, count in ours.most_common(top):
            print(f"  {count:6}  {name}")


def cpu_ms(tasks: list[dict[str, Any]]) -> str:
    """The main thread's CPU time in ``tasks``: a long task's wall time is also its wait for a CPU."""
    known = [t["cpu"] for t in tasks if t.get("cpu") is not None]
    return f"CPU {sum(known) / 1000:.0f} ms" if known else "CPU not traced"


def within(windows: list[tuple[float, float]], at: float) -> bool:
    index = bisect.bisect_right(windows, (at, float("inf"))) - 1
    return index >= 0 and windows[index][0] <= at <= windows[index][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--over", type=float, default=50.0, help="a long task is longer than this (ms)")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    summarise(args.trace, args.over, args.top)


if __name__ == "__main__":
    main()
