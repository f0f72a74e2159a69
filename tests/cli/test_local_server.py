"""``sail run`` and ``sail experiment`` without ``PREFECT_API_URL`` start their own Prefect server on
127.0.0.1, and ``kill -9`` of the command takes the server down with it (Prefect's temporary server
used to survive, reparented to PID 1)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.flows.cluster import wait_healthy
from tests.session_files import migrated_prefect_home

pytestmark = [pytest.mark.flows, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]
ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append((int(entry.name), cmdline))
    return found


def _alive(pid: int) -> bool:
    """Whether any thread of ``pid`` still runs. The leader shows as a zombie as soon as it exits, while
    a thread held in the kernel (an fsync on a slow disk) still holds the process's sockets open."""
    states = []
    for task in (Path("/proc") / str(pid) / "task").glob("*"):
        try:
            states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        except OSError:
            continue
    return any(state not in ("Z", "X") for state in states)


def _listening(port: int, address: str = "0100007F") -> bool:
    """Whether a socket listens on ``address``:``port`` (hex as in /proc/net/tcp; state 0A); the
    default address is 127.0.0.1, 00000000 is every interface."""
    for line in (Path("/proc") / "net" / "tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if local == f"{address}:{port:04X}" and state == "0A":
            return True
    return False


# the commands that run flows ({tmp}: the test's folder); each is killed as soon as its server answers
COMMANDS = {
    "run": ["run"],
    "experiment": ["experiment", "experiments/world.yaml", "--seed", "0", "--arm", "sail", "--out", "{tmp}/results"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_kill_9_of_a_sail_command_takes_its_prefect_server_down(tmp_path, tmp_path_factory, command):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    home = migrated_prefect_home(tmp_path / "prefect-home", tmp_path_factory)  # no profile names a server
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(home))
    argv = [arg.format(tmp=tmp_path) for arg in COMMANDS[command]] + ["--runs-dir", str(tmp_path / "runs")]
    sail = subprocess.Popen([sys.executable, "-m", "sail_cli.main", *argv],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, server = time.monotonic() + 240, None
        while server is None and time.monotonic() < deadline:
            assert sail.poll() is None, f"sail {command} ended before its server came up"
            server = next(((pid, cmd) for pid, cmd in _children(sail.pid) if "sail_cli.local_server" in cmd), None)
            time.sleep(0.5)
        assert server is not None
        pid, cmdline = server
        port = int(cmdline.split()[-1])
        assert wait_healthy(port, deadline), "the local server never answered"
        assert _listening(port) and not _listening(port, "00000000")  # bound to 127.0.0.1 only
        environ = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
        assert b"PREFECT_SERVER_ANALYTICS_ENABLED=false" in environ and b"DO_NOT_TRACK=1" in environ  # no telemetry
    finally:
        sail.send_signal(signal.SIGKILL)
        sail.wait()
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), "the server outlived the command that started it"
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _listening(port), f"port {port} still listens after its server died"
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
