"""Flow tests run against a real Prefect API: one ``prefect server start`` in each pytest-xdist worker that
runs tests of this package, shared by the flows run in this process and by the CLI commands, deployments
and workers the tests start; and one finished tiny run (``golden``), copied into the tests that change a
setting, damage a file or resume, instead of computing it again. The tests that only need its files
(``golden_files``) take them from whichever worker finished it first. The fixtures are the package's:
the server, its workers and S3 stop after the worker's last test of this package, not with the session
(an idle server and its polling workers cost CPU that the other tests need)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.session_files import publish_migrated_database, session_lock

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(scope="package")
def prefect_server(tmp_path_factory) -> dict[str, str]:
    """The environment that talks to this worker's server (its migration takes 15-20 s on two cores)."""
    from .cluster import start_server, stop

    home = tmp_path_factory.mktemp("prefect-server")
    proc, env = start_server(home)
    publish_migrated_database(home, tmp_path_factory)
    yield env
    stop(proc, 60)


@pytest.fixture(scope="package", autouse=True)
def prefect_api(prefect_server):
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_server["PREFECT_API_URL"],
                             PREFECT_HOME: prefect_server["PREFECT_HOME"]}):
        yield
        APILogHandler().flush()  # the flows' last logs reach the server before it stops


TINY_WORLD = {
    "rounds": 1,
    "prompts.per_round": [8],
    "generate.n_candidates": 4,
    "generate.prompts_per_shard": 2,
    "generate.sampler.steps": 4,
    "reward.k_draws": 2,
    "seed_data.seed_size": 16,
    "seed_train.max_steps": 2,
    "seed_train.effective_batch_pairs": 8,
    "seed_train.micro_batch_pairs": 8,
    "round_train.max_steps": 2,
    "round_train.effective_batch_pairs": 8,
    "round_train.micro_batch_pairs": 8,
    "eval.max_prompts": 4,
    "eval.seeds_per_prompt": 1,
    "eval.sampler.steps": 4,
    "eval.grid_prompts": 2,
}
"""The embedded world at a size that runs in seconds: every stage, real files, real Prefect."""

HOLD = ("import sys, time; from sail_core.run.lock import run_lock\n"
        "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)\n")


def killed_lock_holder(run_dir: Path) -> int:
    """A process that took the run's lock and was killed holding it (as by the OOM killer): its pid."""
    import signal
    import sys

    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(root)})
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    return holder.pid


@dataclass(frozen=True)
class GoldenRun:
    """A finished TINY_WORLD run (``<runs>/golden``), started on a run directory whose lock a killed process
    left behind. Tests read it, never change it: :meth:`copy` gives a run of its own to change."""

    runs: Path
    flow_run_id: object | None
    """The run's flow run on this worker's server; None for :func:`golden_files` from another worker."""
    dead_lock_holder: int | None
    """The pid of the killed lock holder; None for :func:`golden_files` from another worker."""

    @property
    def dir(self) -> Path:
        return self.runs / "golden"

    def copy(self, runs_dir: Path, name: str) -> Path:
        """``cp -a`` of the golden run as ``<runs_dir>/<name>``: a copied run resumes with every stage Cached."""
        runs_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(self.dir), str(runs_dir / name)], check=True)
        return runs_dir / name

    def copy_iteration_0(self, runs_dir: Path, name: str) -> Path:
        """A copy holding the golden run up to iteration 0: round 1's stages and its evaluation are gone, so
        a run of it computes round 1 as a fresh run would and finds everything before it Cached."""
        import shutil

        run = self.copy(runs_dir, name)
        for group in ("round-01", "eval-round-01"):
            shutil.rmtree(run / group)
        return run


@pytest.fixture(scope="package")
def golden(tmp_path_factory, prefect_api) -> GoldenRun:
    """Computed in this process, on this worker's server (the tests that read its flow run need that)."""
    from flows.sail_loop import sail_loop

    def compute() -> GoldenRun:
        runs = tmp_path_factory.mktemp("golden-runs")
        dead = killed_lock_holder(runs / "golden")
        state = sail_loop(preset="world", run_name="golden", runs_dir=str(runs), overrides=TINY_WORLD,
                          return_state=True)
        assert state.is_completed(), state.message
        return GoldenRun(runs, state.state_details.flow_run_id, dead)

    with session_lock(tmp_path_factory, "golden") as folder:  # held while computing: the others wait for it
        published = folder / "golden.json"
        if not published.exists():
            run = compute()
            published.write_text(json.dumps({"runs": str(run.runs)}))
            return run
    return compute()


@pytest.fixture(scope="package")
def golden_files(request, tmp_path_factory) -> GoldenRun:
    """The golden run's files, for tests that copy or compare them and never ask the server about its flow
    run: the one another pytest-xdist worker finished (it is the same run to the byte: same code, seed and
    thread count), or else this worker's own."""
    with session_lock(tmp_path_factory, "golden") as folder:
        published = folder / "golden.json"
        found = json.loads(published.read_text()) if published.exists() else None
    if found is None:
        return request.getfixturevalue("golden")
    return GoldenRun(Path(found["runs"]), None, None)


@pytest.fixture(scope="session")
def real_arch_models(tmp_path_factory):
    """Random-weight folders of the real SD1.5 and SDXL (with the fp16-fix VAE) and of CLIP ViT-L/14,
    written by ``sail models random`` in processes of their own, whose time and peak memory are printed.
    ``SAIL_REAL_ARCH_MODELS=<folder>`` reuses (or keeps) the folders there instead of temporary ones."""
    import shutil
    import sys
    from pathlib import Path

    from .real_arch import RealArchModels, run_measured, write_aesthetic_head

    keep = os.environ.get("SAIL_REAL_ARCH_MODELS")
    root = Path(keep) if keep else tmp_path_factory.mktemp("real-arch-models")
    root.mkdir(parents=True, exist_ok=True)
    sail = str(Path(sys.executable).parent / "sail")
    jobs = {"sd15": ["--family", "sd15", "--out", str(root / "sd15")],
            "sdxl": ["--family", "sdxl", "--out", str(root / "sdxl"), "--vae-out", str(root / "sdxl-vae-fp16-fix")],
            "clip-vit-large-patch14": ["--family", "clip-vit-large-patch14", "--out", str(root / "clip")]}
    for name, args in jobs.items():
        if Path(args[3]).exists():
            print(f"\nrandom {name}: reusing {args[3]}")
            continue
        code, seconds, peak, _ = run_measured([sail, "models", "random", *args], root / f"{name}.log")
        assert code == 0, (root / f"{name}.log").read_text()[-3000:]
        print(f"\nrandom {name}: {seconds:.1f} s, peak RSS {peak / 2**30:.2f} GiB (sail models random, "
              f"{os.environ.get('OMP_NUM_THREADS', 'all')} thread(s))")
    head = root / "aesthetic_head.safetensors"
    if not head.exists():
        write_aesthetic_head(head)
    yield RealArchModels(root / "sd15", root / "sdxl", root / "sdxl-vae-fp16-fix", root / "clip", head)
    if not keep:  # 9 GB of weights
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def real_arch_data(tmp_path_factory):
    from .real_arch import write_data

    return write_data(tmp_path_factory.mktemp("real-arch-data"))


@dataclass(frozen=True)
class Cluster:
    """This worker's server with a process work pool ``sail-gpu``, the deployments of prefect.yaml (deployed
    from ``code``, a snapshot of this working tree: their pull step clones it, and their flow runs work in
    it, ``SAIL_DEPLOYED_FROM``) and its workers, each as if on its own host (its own directory, cache and S3
    credentials): ``host-a`` and ``host-b`` on the gpu queue from the start, ``control`` on the control queue
    once a test starts it (one test brings its own); and a real S3 API (moto's server) on localhost."""

    env: dict
    s3: object
    root: Path
    code: Path
    workers: dict = field(default_factory=dict)
    """name -> (process, log handle) of the workers running now."""

    QUEUES = {"control": "control", "host-a": "gpu", "host-b": "gpu"}

    def start_worker(self, name: str) -> None:
        """Start worker ``name`` unless it runs already."""
        from .cluster import start_worker

        if name not in self.workers:
            self.workers[name] = start_worker(self.env, self.QUEUES[name], name, self.root / name,
                                              self.s3.env(name))

    def stop_worker(self, name: str) -> None:
        """Stop worker ``name`` if it runs."""
        from .cluster import stop_worker

        if name in self.workers:
            proc, handle = self.workers.pop(name)
            stop_worker(proc)
            handle.close()


@pytest.fixture(scope="package")
def cluster(prefect_server, tmp_path_factory) -> Cluster:
    from tests.s3_server import S3Server

    from .cluster import cli, code_snapshot

    root = tmp_path_factory.mktemp("hosts")
    s3 = S3Server().start()
    code = code_snapshot(root / "repository")
    running = Cluster(prefect_server, s3, root, code)
    try:
        cli(prefect_server, "work-pool", "create", "sail-gpu", "--type", "process")
        out = cli(prefect_server, "--no-prompt", "deploy", "--all", cwd=code)
        for name in ("sail-loop/sdxl", "sail-loop/sd15", "sail-loop/world", "sail-shard/gpu"):
            assert name in out, out
        for name in ("host-a", "host-b"):
            running.start_worker(name)
        yield running
    finally:
        for name in list(running.workers):
            running.stop_worker(name)
        s3.stop()
