"""Process-wide defaults the CLI sets before heavy imports (each can be overridden by the user)."""

from __future__ import annotations

import os

DEFAULTS = {
    # a fresh Prefect database takes 15-20 s to migrate on a 2-core machine; the default limit is 20 s
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # no usage data leaves the machine: the server's telemetry (the local server sail run starts) and the client's
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def apply_defaults() -> None:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
