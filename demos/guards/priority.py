"""Slow work at a lower CPU priority, so that predictions keep their speed while it runs.

The slow endpoints (class visualisation, attacks, batches, feature maps of large images, model loads) each run one
job at a time (demos.app.EXPENSIVE_ENDPOINTS), on one core (one torch thread a request), but on a 2-core machine
that core is also one of the two that /classify runs on. `at_low_priority` runs such a handler in a thread of its
own whose nice value is raised, so that the kernel gives a prediction the core first and the slow job what is left.
A thread's nice value is set per thread on Linux only (setpriority on its thread id); elsewhere the handlers run at
the normal priority.
"""

from __future__ import annotations

import contextvars
import functools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

# Nice 10 more gets about a tenth of a core against the app's own threads when both want it (CFS weights 110 against
# 1024 at nice 10 against 0).
SLOW_WORK_NICENESS = 10
MAX_NICENESS = 19
# One thread per concurrency group of slow endpoints can run at once; more wait in their own queues before this.
SLOW_WORK_THREADS = 8


def slow_work_niceness(app_niceness: int) -> int:
    """Added to the app's own niceness, not set absolutely: an app already started under `nice` (as a test suite or a
    batch job may be) would otherwise give its slow work the same priority as its predictions, or a higher one."""
    return min(MAX_NICENESS, app_niceness + SLOW_WORK_NICENESS)


def _lower_this_threads_priority() -> None:
    if sys.platform == "linux":
        own = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, own, slow_work_niceness(os.getpriority(os.PRIO_PROCESS, own)))


_SLOW_WORK = ThreadPoolExecutor(
    SLOW_WORK_THREADS, thread_name_prefix="slow-work", initializer=_lower_this_threads_priority
)


def at_low_priority(handler):
    """`handler`, run in a low-priority thread (its caller waits, idle) with the caller's context: Gradio's request
    (whose session names the visitor's models) and its progress bar are context variables."""

    @functools.wraps(handler)
    def in_low_priority_thread(*args, **kwargs):
        context = contextvars.copy_context()
        return _SLOW_WORK.submit(context.run, handler, *args, **kwargs).result()

    return in_low_priority_thread
