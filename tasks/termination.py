"""A stop (SIGTERM) stays a stop while a stage task runs.

In a flow run's process, Prefect turns SIGTERM into ``TerminationSignal``, which ends the run Crashed: a
run stopped by ``deployments/stop-workers.sh`` (or by its infrastructure) shows as stopped, and a rerun
resumes it. Two places turn the signal into an ordinary error instead: Prefect's task engine, when the
signal lands while it is still creating the task run (``ValueError("Task run is not set")``, the run would
end Failed), and native code it lands in, e.g. a safetensors load, whose error the loader reports as
``OSError`` (the stage would be retried and the run would go on as if never stopped).
:func:`termination_kept` notes the signal as it arrives; the stage task does not retry after it
(:func:`termination_arrived`), and the error leaves the stage's call as ``TerminationSignal``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from prefect.exceptions import TerminationSignal

_ARRIVED: list[int] = []
"""The SIGTERMs that arrived within the innermost :func:`termination_kept` of this process."""


def termination_arrived() -> bool:
    """Whether this process was asked to stop while the current stage ran."""
    return bool(_ARRIVED)


@contextlib.contextmanager
def termination_kept() -> Iterator[None]:
    """Within this block, an exception raised after a SIGTERM arrived leaves as ``TerminationSignal``.

    Only where Prefect's SIGTERM handler is installed (the main thread of a flow run's process): elsewhere the
    signal is not turned into an exception, so there is nothing to keep."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    _ARRIVED.clear()

    def note(signum, frame):
        _ARRIVED.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, note)
    try:
        yield
    except Exception as exc:  # TerminationSignal itself is a BaseException: it passes as it is
        if _ARRIVED:
            raise TerminationSignal(_ARRIVED[0]) from exc
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        _ARRIVED.clear()
