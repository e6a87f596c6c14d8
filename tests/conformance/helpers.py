"""What the ported tests share: running a coroutine like an async test case, and waiting for results."""

import asyncio
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections


def run_async(work: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
    """Run an async test body to its end, then close the connections its ORM calls opened."""

    async def body() -> Any:
        try:
            return await asyncio.wait_for(work, timeout)
        finally:  # the connection of the thread that ran the ORM for the coroutine
            await sync_to_async(connections.close_all, thread_sensitive=True)()

    return asyncio.run(body())


def refreshed(*results: Any) -> bool:
    """Refresh each result; True once all are finished (for wait_until)."""
    for result in results:
        result.refresh()
    return all(result.is_finished for result in results)
