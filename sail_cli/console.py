"""What a ``sail`` command prints when it fails: one line saying what went wrong and where, not a traceback.

The full traceback stays available: with ``--debug`` on the terminal, and always in the Prefect logs
(only the terminal's log handler drops it).
"""

from __future__ import annotations

import logging

from sail_core.errors import SailError


def error_line(command: str, exc: BaseException) -> str:
    """``sail <command>: error: <message>``; an error the project did not raise on purpose also says its
    type and how to see where it came from."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, SailError):
        # one line, except a list of problems (the preflight's), which keeps one line per problem
        first, *problems = [line.rstrip() for line in str(exc).splitlines() if line.strip()] or [message]
        return "\n".join([f"sail {command}: error: {' '.join(first.split())}", *problems])
    return f"sail {command}: error: {type(exc).__name__}: {message} (rerun with --debug for the traceback)"


class _WithoutTraceback(logging.Formatter):
    """Formats a record as ``inner`` does, minus its traceback (kept on the record for other handlers)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def quiet_tracebacks() -> None:
    """Prefect logs a failed task's and flow's traceback to the terminal; drop it there (the error line
    follows), keep it in the logs sent to the Prefect API."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values()
                                      if isinstance(v, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter))
