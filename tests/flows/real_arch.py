"""The real SD1.5 and SDXL architectures (random weights) end to end on the CPU: models, data, overrides,
and what each run cost, per stage (time and peak resident memory).

Everything is the preset's except what makes it fit a 2-core CPU in minutes:

* sizes and counts: 64 px images (8×8 latents), 2 prompts per round and 2 for evaluation, N = 2
  candidates, K = 2 draws, 2 sampler steps, one DPO optimizer step of 2 pairs in 2 micro-batches
  (gradient accumulation 2), no warm-up (with the presets' warm-up a single step has learning rate 0);
* precision: float32 everywhere (``frozen_dtype``, ``reference_dtype``, no bf16 autocast): this CPU
  has no bf16 instructions and runs a bf16 convolution about 60× slower than a float32 one;
* data, weights and device: local Pick-a-Pic-schema files, random-weight folders, ``runtime.device=cpu``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sail_core.io.tensors import write_tensors

ROOT = Path(__file__).resolve().parents[2]
CAPTIONS = [
    "a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen on a wooden table",
    "an astronaut riding a horse", "a watercolor of a city street", "a close-up of a sunflower",
]
EVAL_PROMPTS = ["a small cabin by a lake", "a robot reading a book"]


@dataclass(frozen=True)
class RealArchModels:
    sd15: Path
    sdxl: Path
    sdxl_vae: Path
    clip: Path
    """CLIP ViT-L/14: the CLIP-score scorer's model and the aesthetic predictor's CLIP."""
    aesthetic_head: Path
    """The LAION aesthetic predictor's head (the published layout: five linear layers from 768)."""


@dataclass(frozen=True)
class RealArchData:
    pairs: Path
    eval_prompts: Path


@dataclass
class StageCost:
    name: str
    seconds: float
    peak_rss: int


@dataclass
class RunCost:
    label: str
    seconds: float
    peak_rss: int
    stages: list[StageCost] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{self.label}: {self.seconds:.0f} s, peak RSS {self.peak_rss / 2**30:.2f} GiB",
                 f"  {'stage':<28}{'seconds':>9}{'peak RSS GiB':>14}"]
        for stage in self.stages:
            lines.append(f"  {stage.name:<28}{stage.seconds:>9.1f}{stage.peak_rss / 2**30:>14.2f}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        def gib(n: int) -> float:
            return round(n / 2**30, 2)

        return {"label": self.label, "seconds": round(self.seconds, 1), "peak_rss_gib": gib(self.peak_rss),
                "stages": [{"stage": s.name, "seconds": round(s.seconds, 1), "peak_rss_gib": gib(s.peak_rss)}
                           for s in self.stages]}


def report_cost(cost: RunCost) -> None:
    """Print the cost table; with ``SAIL_REAL_ARCH_REPORT=<file>`` also append it there as a JSON line."""
    print("\n" + cost.table())
    path = os.environ.get("SAIL_REAL_ARCH_REPORT")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(cost.as_json()) + "\n")


def write_aesthetic_head(path: Path, seed: int = 0) -> Path:
    from sail_core.evaluation.scorers.heads import LinearStackHead

    torch.manual_seed(seed)
    head = LinearStackHead(768)
    return write_tensors(path, {f"layers.{k}": v for k, v in head.layers.state_dict().items()})


def write_data(folder: Path) -> RealArchData:
    from tests.builders import write_pickapic

    folder.mkdir(parents=True, exist_ok=True)
    labels = [(1.0, 0.0), (0.0, 1.0)] * (len(CAPTIONS) // 2)
    pairs = write_pickapic(folder / "train-00000-of-00001.parquet", CAPTIONS, labels)
    eval_prompts = folder / "eval_prompts.txt"
    eval_prompts.write_text("\n".join(EVAL_PROMPTS) + "\n")
    return RealArchData(pairs, eval_prompts)


def overrides(family: str, models: RealArchModels, data: RealArchData) -> dict[str, Any]:
    """The preset's configuration at CPU size (see the module docstring for every change and why)."""
    train = {"max_steps": 1, "effective_batch_pairs": 2, "micro_batch_pairs": 1, "warmup_steps": 0,
             "mixed_precision": "no"}
    values: dict[str, Any] = {
        "model.source": str(models.sd15 if family == "sd15" else models.sdxl),
        "model.local_files_only": True, "model.resolution": 64,
        "model.frozen_dtype": "float32", "model.reference_dtype": "float32",
        "seed_data.pairs": [str(data.pairs)], "seed_data.seed_size": 2,
        "prompts.per_round": [2], "rounds": 1,
        "generate.n_candidates": 2, "generate.sampler.steps": 2, "reward.k_draws": 2,
        **{f"seed_train.{k}": v for k, v in train.items()}, **{f"round_train.{k}": v for k, v in train.items()},
        "eval.prompts": [f"text:{data.eval_prompts}"], "eval.sampler.steps": 2,
        "eval.scorers": ["clipscore", "aesthetic"],
        "eval.scorer_sources": {"clipscore": str(models.clip), "aesthetic": str(models.aesthetic_head)},
        "eval.scorer_options": {"aesthetic": {"clip": str(models.clip)}},
        "runtime.device": "cpu", "runtime.shard_workers": 0, "runtime.train_processes": 1,
        # a full SD1.5 pipeline folder is 4 GB in float32; the export is tested on the tiny models (tests/export)
        "export.enabled": False,
    }
    if family == "sdxl":
        values.update({"model.vae_source": str(models.sdxl_vae), "model.train_mode": "lora"})
    return values


class RssSampler:
    """Samples a process's resident memory (VmRSS) ten times a second, with wall-clock times."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.rss()
            if rss is None:
                return
            self.samples.append((time.time(), rss))
            self._stop.wait(self.interval)

    def rss(self) -> int | None:
        """The process's resident bytes now; None once it is gone."""
        return _vm_rss(self.pid)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def _vm_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return 0  # a zombie has no VmRSS line


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children.get(child, [])
    return out


class LargestDescendantRssSampler(RssSampler):
    """The resident memory of the largest process under ``pid`` (a deployment's flow run runs in a
    process its worker starts; the server and the workers beside it are a few hundred MB each)."""

    def rss(self) -> int | None:
        return max((r for p in _descendants(self.pid) if (r := _vm_rss(p)) is not None), default=0)


def run_measured(argv: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[int, float, int, RssSampler]:
    """Run a command with its output to ``log``; return (exit code, seconds, peak RSS in bytes from the
    kernel's accounting of the process, the RSS samples)."""
    started = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        with RssSampler(proc.pid) as sampler:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.time() - started, usage.ru_maxrss * 1024, sampler


FLOW_SCRIPT = """
import json, sys
from flows.sail_loop import sail_loop
state = sail_loop(preset=sys.argv[1], run_name=sys.argv[2], runs_dir=sys.argv[3], overrides=json.loads(sys.argv[4]),
                  return_state=True)
assert state.is_completed(), state.message
result = {"flow_run_id": str(state.state_details.flow_run_id), "result": state.result()}
open(sys.argv[5], "w").write(json.dumps(result))
"""


def run_flow(preset: str, run_name: str, runs_dir: Path, values: dict[str, Any], out: Path,
             api_url: str) -> tuple[dict[str, Any], RunCost, str]:
    """The sail-loop flow in a process of its own (its memory is its own), against the test's Prefect API.
    Returns the flow's result, its cost per stage, and its flow run id."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT)}
    result_file, log = out / f"{run_name}.json", out / f"{run_name}.log"
    code, seconds, peak, sampler = run_measured(
        [sys.executable, "-c", FLOW_SCRIPT, preset, run_name, str(runs_dir), json.dumps(values), str(result_file)],
        log, env)
    assert code == 0, log.read_text()[-6000:]
    data = json.loads(result_file.read_text())
    cost = RunCost(run_name, seconds, peak, stage_costs(data["flow_run_id"], sampler))
    return data["result"], cost, data["flow_run_id"]


def stage_costs(flow_run_id: str, sampler: RssSampler) -> list[StageCost]:
    """Every task run of the flow run (and of its round subflows), in start order, with the peak RSS
    sampled while it ran."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId, TaskRunFilter

    async def read():
        async with get_client() as client:
            children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
            ids = [flow_run_id] + [str(c.id) for c in children]
            return await client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id={"any_": ids}))

    out = []
    # a round's subflow appears in its parent as a task run of its own (sail-round-<i>): not a stage
    runs = [r for r in asyncio.run(read()) if r.start_time is not None and r.end_time is not None
            and not r.name.startswith("sail-round")]
    for task_run in sorted(runs, key=lambda r: r.start_time):
        start, end = task_run.start_time.timestamp(), task_run.end_time.timestamp()
        out.append(StageCost(task_run.name, end - start, sampler.peak(start, end)))
    return out
