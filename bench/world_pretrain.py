"""Pretraining variants of the embedded world's base model side by side, within a time budget, on a GPU.

    bench/world_pretrain_gpu.sh               # on one NVIDIA GPU: every variant at once, at most 5 minutes
    bench/world_pretrain_gpu.sh --dry-run     # two tiny variants on the CPU, the same code path (tests/bench)
    python -m bench.world_pretrain --variants shipped,pos80 --device cuda --out-dir DIR

Why: one pretraining from scratch takes 2.9 hours on a CPU core (the world's first base model, which
did not learn position words; the shipped model continues it in two stages, README "The embedded
world"), so which single recipe from scratch does best cannot be compared on a CPU within a session;
on a GPU each takes minutes. Every variant is a ``PretrainConfig`` (below) run by
``sail_core.world.pretrain.pretrain`` in its own process: the model is so small that one run alone
leaves a GPU mostly idle. Each writes its EMA weights as a model folder, ``<out>/<variant>/model``,
every ``--export-every`` steps (replacing the previous export, so a run stopped at the time limit
leaves its newest one) and at the end, and one JSON line per export to ``<out>/world_pretrain.jsonl``.
Audit what comes back on any machine: ``sail world audit --model <out>/<variant>/model``. The winner's
settings can become ``PretrainConfig``'s defaults, and ``sail world pretrain`` rebuilds it from its seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a file or as a module, from anywhere
    sys.path.insert(0, str(REPO))

from sail_core.world.grammar import UnsaidProbabilities  # noqa: E402
from sail_core.world.model import Architecture  # noqa: E402
from sail_core.world.pretrain import PretrainConfig, export_checkpoint, pretrain  # noqa: E402

POSITION_STATED = UnsaidProbabilities(position=0.2, size=0.5, background=0.5)
"""Captions state a position 80% of the time instead of 50%: more of the signal that ties the words to places."""

VARIANTS: dict[str, PretrainConfig] = {
    "shipped": PretrainConfig(),
    "pos80": PretrainConfig(p_unsaid=POSITION_STATED),
    "pos80-wide": PretrainConfig(p_unsaid=POSITION_STATED, architecture=Architecture(channels=(64, 128, 128))),
    "pos80-deep": PretrainConfig(p_unsaid=POSITION_STATED, architecture=Architecture(channels=(32, 64, 64, 64))),
    "pos80-batch384": PretrainConfig(p_unsaid=POSITION_STATED, batch_size=384),
    "pos80-long": PretrainConfig(p_unsaid=POSITION_STATED, steps=14_400),
    "high50": PretrainConfig(high_noise_share=0.5),
}
"""What may teach position: the shipped recipe's first stage from scratch (the reference: position 0.47
on the CPU), position stated more often, and with it more channels, a fourth level (down to 2×2), 4× the
images a step, 3× the steps; and half of each batch on the highest noise levels from the start (what the
shipped model's second stage does, README: the embedded world)."""

_TINY = Architecture(channels=(16, 16), text_width=16, text_layers=1)
DRY_RUN_VARIANTS: dict[str, PretrainConfig] = {
    "tiny": PretrainConfig(steps=4, batch_size=4, warmup_steps=2, architecture=_TINY),
    "tiny-pos80": PretrainConfig(steps=4, batch_size=4, warmup_steps=2, architecture=_TINY, p_unsaid=POSITION_STATED),
}

LOG_NAME = "world_pretrain.jsonl"


def _record(out_dir: Path, record: dict) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    with open(out_dir / LOG_NAME, "a") as log:
        log.write(line + "\n")


def run_variant(name: str, config: PretrainConfig, out_dir: Path, export_every: int) -> Path:
    """Pretrain one variant; its newest EMA export is always at ``<out_dir>/<name>/model``."""
    model_dir = out_dir / name / "model"
    started = time.time()
    with tempfile.TemporaryDirectory(prefix=f"world-pretrain-{name}-") as scratch:
        checkpoints = Path(scratch) / "checkpoints"

        def export(step: int, loss: float) -> None:
            if step % export_every == 0 and step != config.steps:
                export_checkpoint(config, checkpoints, model_dir, overwrite=True)
                _record(out_dir, {"variant": name, "step": step, "of": config.steps, "loss": round(loss, 5),
                                  "seconds": round(time.time() - started, 1), "final": False})

        pretrain(config, model_dir, Path(scratch) / "tokenizer", export, overwrite=True,
                 checkpoint_dir=checkpoints, checkpoint_every=export_every)
    _record(out_dir, {"variant": name, "step": config.steps, "of": config.steps,
                      "seconds": round(time.time() - started, 1), "final": True})
    return model_dir


def run_all(names: list[str], dry_run: bool, device: str, out_dir: Path, export_every: int, budget_s: float) -> int:
    """Every variant in its own process at once; at ``budget_s`` the unfinished ones are stopped (their
    newest export stays). Returns how many finished."""
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // len(names))
    children = {}
    for name in names:
        command = [sys.executable, "-m", "bench.world_pretrain", "--one", name, "--device", device,
                   "--out-dir", str(out_dir), "--export-every", str(export_every), "--threads", str(threads)]
        if dry_run:
            command.append("--dry-run")
        children[name] = subprocess.Popen(command, cwd=REPO)
    deadline = time.time() + budget_s
    finished = 0
    for name, child in children.items():
        try:
            code = child.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            child.terminate()
            child.wait()
            code = "stopped at the time budget"
        finished += code == 0
        _record(out_dir, {"variant": name, "exit": code})
    return finished


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=None, type=lambda s: [v for v in s.split(",") if v],
                        help=f"comma-separated (default: all of {', '.join(VARIANTS)})")
    parser.add_argument("--device", default=None, help="default: cuda where there is one, else cpu")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="default: $OUT/world-pretrain, else bench/results/world-pretrain")
    parser.add_argument("--export-every", type=int, default=1200, help="steps between EMA exports")
    parser.add_argument("--budget-s", type=float, default=280.0, help="stop the variants still running after this")
    parser.add_argument("--dry-run", action="store_true", help="two tiny variants on the CPU (same code path)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: run this variant only
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants = DRY_RUN_VARIANTS if args.dry_run else VARIANTS
    if args.out_dir is None:
        args.out_dir = Path(os.environ["OUT"]) / "world-pretrain" if os.environ.get("OUT") else (
            REPO / "bench" / "results" / "world-pretrain")
    if args.device is None:
        import torch

        args.device = "cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"
    names = args.variants or list(variants)
    unknown = [n for n in names + ([args.one] if args.one else []) if n not in variants]
    if unknown:
        print(f"world_pretrain: unknown variant(s) {', '.join(unknown)}; known: {', '.join(variants)}", file=sys.stderr)
        return 2
    if args.one:
        config = dataclasses.replace(variants[args.one], device=args.device, threads=args.threads)
        run_variant(args.one, config, args.out_dir, args.export_every)
        return 0
    finished = run_all(names, args.dry_run, args.device, args.out_dir, args.export_every, args.budget_s)
    print(f"world_pretrain: {finished} of {len(names)} variants finished; models under {args.out_dir}/<variant>/model",
          flush=True)
    return 0 if finished == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
