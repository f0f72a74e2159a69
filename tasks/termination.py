"""A stop (SIGTERM) stays a crash while a stage task starts.

In a flow run's process, Prefect turns SIGTERM into ``TerminationSignal``, which ends the run Crashed: a
run stopped by ``deployments/stop-workers.sh`` (or by its infrastructure) shows as stopped, and a rerun
resumes it. When the signal lands while Prefect's task engine is still creating the task run, that engine
replaces it with ``ValueError("Task run is not set")`` from its own crash handler, and the run would end
Failed with a message about Prefect's internals. :func:`termination_kept` notes the signal as it arrives
and raises it again in place of whatever exception it turned into.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from prefect.exceptions import TerminationSignal


@contextlib.contextmanager
def termination_kept() -> Iterator[None]:
    """Within this block, an exception raised after a SIGTERM arrived leaves as ``TerminationSignal``.

    Only where Prefect's SIGTERM handler is installed (the main thread of a flow run's process): elsewhere the
    signal is not turned into an exception, so there is nothing to keep."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    arrived: list[int] = []

    def note(signum, frame):
        arrived.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, note)
    try:
        yield
    except TerminationSignal:
        raise
    except Exception as exc:
        if arrived:
            raise TerminationSignal(arrived[0]) from exc
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
