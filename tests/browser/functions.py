"""Task functions of the browser tests (registered in the test process by importing this module, and in
the servers under test through CONDUCTOR_TASK_MODULES)."""

from app.context import TaskContext
from app.registry import register


@register
def import_rows(rows: int = 100, pause: float = 0.1, context: TaskContext | None = None) -> int:
    """Imports rows slowly, printing each and reporting progress; stops early when asked to."""
    for number in range(1, rows + 1):
        if context is not None and context.wait(pause):
            return number - 1
        print(f"row {number} imported")
        if context is not None:
            context.report_progress(number / rows, f"{number} of {rows} rows")
    return rows
