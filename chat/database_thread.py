"""One thread per process that does the database work of streams relayed on the event loop.

Under ASGI, Django gives every request its own thread and database connection.
Hundreds of streams then mean hundreds of connections writing a little each,
and with SQLite, writers queueing on its single lock while the GIL starves
whoever holds it. Here the streams' checkpoints, final saves and final renders
run one at a time on one thread with one connection, most urgent first: the
work that stands between a user and their first token, then Stop checks and
partial saves, then the end-of-stream saves and rendering. The thread keeps its
connection (no request signals close it) until a database error drops it.
"""

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connections

START = 0  # before the first token: the call record, the `start` event
CHECKPOINT = 1  # while streaming: Stop checks and partial saves
FINISH = 2  # after the last token: the final saves, the `done` event

_jobs: queue.PriorityQueue = queue.PriorityQueue()
_order = itertools.count()  # first come, first served within a priority
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


async def run(priority: int, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `function` on the database thread; its result, or its exception."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    _start_thread()
    _jobs.put((priority, next(_order), function, args, kwargs, loop, future))
    return await future


def _start_thread() -> None:
    global _thread  # one thread per process, started on first use
    if _thread is None:
        with _thread_lock:
            if _thread is None:
                _thread = threading.Thread(target=_work, name="stream-database", daemon=True)
                _thread.start()


def _work() -> None:
    while True:
        _priority, _, function, args, kwargs, loop, future = _jobs.get()
        try:
            result = function(*args, **kwargs)
        except BaseException as error:  # handed to the caller, whatever it is
            if isinstance(error, DatabaseError):
                connections.close_all()  # the next job connects afresh
            loop.call_soon_threadsafe(_settle, future, None, error)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the caller went away; the work is done all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
