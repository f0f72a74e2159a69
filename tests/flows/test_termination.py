"""A SIGTERM that Prefect's task engine turns into another exception still ends the run as a stop."""

from __future__ import annotations

import os
import signal

import pytest
from prefect.exceptions import TerminationSignal

from tasks.termination import termination_arrived, termination_kept


def _prefect_like(signum, frame):
    raise TerminationSignal(signum)


@pytest.fixture()
def prefect_handler():
    previous = signal.signal(signal.SIGTERM, _prefect_like)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_a_stop_turned_into_an_error_while_a_task_starts_leaves_as_the_stop(prefect_handler):
    with pytest.raises(TerminationSignal) as raised:
        with termination_kept():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except TerminationSignal:  # what Prefect's task engine does when the task run is not created yet
                raise ValueError("Task run is not set") from None
    assert raised.value.signal == signal.SIGTERM and str(raised.value.__cause__) == "Task run is not set"
    assert signal.getsignal(signal.SIGTERM) is _prefect_like  # Prefect's handler is back


def test_a_stop_that_native_code_reports_as_its_own_error_is_not_retried_and_leaves_as_the_stop(prefect_handler):
    from prefect.states import Failed

    from tasks.stage_task import _retry_unless_deterministic

    def load_weights():  # a loader that reports whatever interrupted it as its own error, as diffusers does
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except BaseException as exc:
            raise OSError("Unable to load weights from checkpoint file") from exc

    error = OSError("a transient I/O error")
    assert _retry_unless_deterministic(None, None, Failed(data=error))  # retried when nothing asked to stop
    with pytest.raises(TerminationSignal) as raised:
        with termination_kept():
            try:
                load_weights()
            except OSError as exc:
                assert termination_arrived()
                assert not _retry_unless_deterministic(None, None, Failed(data=exc))
                raise
    assert isinstance(raised.value.__cause__, OSError) and not termination_arrived()


def test_without_a_stop_errors_and_the_stop_itself_pass_unchanged(prefect_handler):
    with pytest.raises(ValueError, match="a stage's own error"):
        with termination_kept():
            raise ValueError("a stage's own error")
    with pytest.raises(TerminationSignal):
        with termination_kept():
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is _prefect_like


def test_where_no_handler_turns_the_signal_into_an_exception_nothing_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    with termination_kept():
        assert signal.getsignal(signal.SIGTERM) is before
