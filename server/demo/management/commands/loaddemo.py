"""``manage.py loaddemo``: (re)create a handful of realistic demo tasks."""

from typing import Any

from django.core.management.base import BaseCommand

from app.task import Task
from server.demo import tasks

DEMO_TASKS = [
    {"task_id": "demo-feed", "name": "poll news feed", "func": tasks.poll_feed, "loop": True,
     "interval": 10, "args_in": {"url": "https://example.com/news.xml"}},
    {"task_id": "demo-slow", "name": "slow import", "func": tasks.slow_job, "run_in": 2,
     "args_in": {"seconds": 8, "steps": 4}},
    {"task_id": "demo-fail", "name": "flaky upstream", "func": tasks.failing_job, "run_in": 3},
    {"task_id": "demo-db", "name": "count rows (db_use)", "func": tasks.count_tasks, "loop": True,
     "interval": 15, "db_use": True},
    {"task_id": "demo-report", "name": "nightly report (db_use)", "func": tasks.slow_job,
     "db_use": True, "args_in": {"seconds": 4, "steps": 2}},
    {"task_id": "demo-runaway", "name": "runaway computation", "func": tasks.busy_loop,
     "kill_time": 3, "args_in": {"seconds": 60}, "run_in": 1},
    {"task_id": "demo-stuck", "name": "stuck in C (overruns)", "func": tasks.stuck_in_c, "loop": True,
     "interval": 60, "kill_time": 3, "args_in": {"seconds": 12}, "run_in": 5},
    {"task_id": "demo-import", "name": "nightly import (progress)", "func": tasks.import_batch,
     "loop": True, "interval": 60, "args_in": {"rows": 120, "seconds": 50}},
    {"task_id": "demo-burst", "name": "burst of 200 short tasks", "func": tasks.enqueue_burst,
     "loop": True, "interval": 30, "args_in": {"count": 200}, "run_in": 10},
]  # fmt: skip


class Command(BaseCommand):
    help = "Create the demo tasks (replacing earlier demo tasks and their runs)."

    def handle(self, *args: Any, **options: Any) -> None:
        Task.objects.filter(task_id__startswith="demo-").delete()  # the bursts' items too
        for spec in DEMO_TASKS:
            task = Task(**spec)
            task.save()
            what = f"every {task.interval:g} s" if task.loop else f"once, in {task.run_in:g} s"
            limits = [f"kill_time {task.kill_time:g} s"] if task.kill_time else []
            limits += ["db_use"] if task.db_use else []
            suffix = f" ({', '.join(limits)})" if limits else ""
            self.stdout.write(f"  {task.name}: {task.func} {what}{suffix}")
