"""The Prefect API a ``sail run`` uses when none is configured: a local server that dies with the command.

Prefect's own ephemeral server is stopped by an ``atexit`` hook, which never runs when the command
is killed (``kill -9``, the OOM killer): the server was left running, reparented to PID 1. Here the
command starts the same server (Prefect's API app under uvicorn, SQLite under ``PREFECT_HOME``,
bound to 127.0.0.1, the UI off) as a child process that cannot outlive it:

* on Linux the child asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), and
  checks right after that its parent is still the one that started it (it may have died before);
* everywhere, a watchdog thread in the child exits once its parent is gone (it gets reparented).

With ``PREFECT_API_URL`` set (a persistent server, a deployment's worker) nothing is started.
Run as ``python -m sail_cli.local_server PARENT_PID PORT`` it is the child.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from sail_core.errors import SailError

WATCH_INTERVAL_S = 0.5
PR_SET_PDEATHSIG = 1
STARTUP_ATTEMPTS = 3
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
              # as Prefect's own temporary server: only the services an ephemeral server runs
              "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


class ServerStartError(SailError):
    """The local Prefect server did not come up."""


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` from the environment or the active Prefect profile, if any."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_file() -> Path:
    from prefect.settings import get_current_settings

    home = Path(get_current_settings().home)
    home.mkdir(parents=True, exist_ok=True)
    return home / "sail-local-server.log"


class LocalServer:
    """The child server process; :meth:`stop` ends it (also registered to run at exit)."""

    def __init__(self, timeout_s: float) -> None:
        self.log_path = _log_file()
        for _ in range(STARTUP_ATTEMPTS):  # a port taken between choosing and binding it: try another
            self.port = _free_port()
            with open(self.log_path, "w") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "sail_cli.local_server", str(os.getpid()), str(self.port)],
                    env={**os.environ, **SERVER_ENV},
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            # registered before the flow runs: atexit runs handlers last-in first-out, so Prefect's own
            # exit hooks (flushing logs and events to this server) run before it stops
            atexit.register(self.stop)
            if self._wait_healthy(timeout_s):
                return
            self.stop()
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise ServerStartError(f"the local Prefect server did not start: {tail[0]} (log: {self.log_path}); "
                               f"or set PREFECT_API_URL to a running server")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _wait_healthy(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline and self.process.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return True
                time.sleep(0.2)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Point Prefect (this process and its children) at the configured API, or at a local server
    started for this command. Yields the API URL."""
    url = configured_api_url()
    if url:
        yield url
        return
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    server = LocalServer(float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
    os.environ["PREFECT_API_URL"] = server.api_url  # for subprocesses (multi-process training)
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield server.api_url


# --- the child ---------------------------------------------------------------------------------------


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_INTERVAL_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: list[str]) -> None:
    parent, port = int(argv[0]), int(argv[1])
    _die_with(parent)
    import uvicorn

    uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port,
                log_level="error", lifespan="on")


if __name__ == "__main__":
    main(sys.argv[1:])
