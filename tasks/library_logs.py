"""The library's own warnings in the Prefect UI.

``sail_core`` logs with the standard ``logging`` module (it knows nothing of Prefect): a damaged step
checkpoint passed over, a host cache copy dropped, a store object repaired. Those lines matter to
whoever watches a run, so the flows forward the ``sail_core`` logger to the Prefect API, as
Prefect's ``PREFECT_LOGGING_EXTRA_LOGGERS`` setting would, without depending on the environment the
worker was started in. A record logged inside a flow or task run lands on that run's page.
"""

from __future__ import annotations

import logging

from prefect.logging.handlers import APILogHandler

LIBRARY_LOGGER = "sail_core"


def forward_library_logs() -> None:
    """Attach Prefect's API handler to the ``sail_core`` logger (once per process)."""
    logger = logging.getLogger(LIBRARY_LOGGER)
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        logger.addHandler(APILogHandler())
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
