"""``sail plan``: GPU memory, FLOPs, time and GPU-hours of each stage of a run, before the run.

``sail plan --preset sdxl --gpu H100 --gpus 8`` traces one batch of each stage of the configured run on
the published architecture (fake tensors: nothing is allocated, no GPU is needed) and prints, per stage,
UNet forwards, FLOPs, peak memory per GPU process, the largest batch that fits the GPU, and time and
GPU-hours at the MFU of the nearest measured anchor (``--mfu`` overrides it); then the whole run and how
a round scales with prompts, N, K and GPUs. The documentation is ``docs/plan.md``.
"""

from __future__ import annotations

import argparse


def cmd_plan(args: argparse.Namespace) -> int:
    from sail_core.config import load_config, parse_override
    from sail_core.errors import InputError
    from sail_core.plan.gpus import gpu

    if args.gpus < 1:
        raise InputError(f"must be at least 1 (got {args.gpus})", parameter="--gpus")
    if args.mfu is not None and not 0 < args.mfu <= 1:
        raise InputError(f"must be a fraction in (0, 1], e.g. 0.35 (got {args.mfu})", parameter="--mfu")
    if args.gpus_per_host < 1:
        raise InputError(f"must be at least 1 (got {args.gpus_per_host})", parameter="--gpus-per-host")
    if args.eval_prompts < 1:
        raise InputError(f"must be at least 1 (got {args.eval_prompts})", parameter="--eval-prompts")
    target = gpu(args.gpu)  # an unknown name fails before any tracing
    config = load_config(args.config or args.preset, dict(parse_override(p) for p in args.set))
    from sail_core.plan.estimate import build_plan
    from sail_core.plan.render import render

    plan = build_plan(config, target, args.gpus, mfu=args.mfu, eval_prompts=args.eval_prompts,
                      gpus_per_host=args.gpus_per_host)
    print(render(plan, scale=not args.no_scaling), end="")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="GPU memory, FLOPs, time and GPU-hours per stage, before the run")
    p.add_argument("--preset", default="sd15", help="sd15 (default) or sdxl")
    p.add_argument("--config", help="a YAML config file instead of a preset")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set round_train.micro_batch_pairs=2 (repeatable)")
    p.add_argument("--gpu", required=True, help="H100, H200, A100, L40S or 'RTX 4090'")
    p.add_argument("--gpus", type=int, default=1, help="GPUs in all (default 1)")
    p.add_argument("--gpus-per-host", type=int, default=8,
                   help="GPUs of the control host, where DPO runs (default 8)")
    p.add_argument("--mfu", type=float, default=None,
                   help="model FLOPs utilisation for every stage, e.g. 0.35 (default: the nearest measured anchor)")
    p.add_argument("--eval-prompts", type=int, default=500,
                   help="prompts of the evaluation set when eval.max_prompts is unset (default 500)")
    p.add_argument("--no-scaling", action="store_true", help="leave out the table over GPU counts")
    p.set_defaults(func=cmd_plan)
