"""``sail export`` and ``sail sample``: a run's model out of the run, and images of any of its models.

``sail export RUN_DIR --out DIR`` writes the chosen model (``--model best|last|round-NN``) as a folder
plain diffusers loads (a merged LoRA, or a complete pipeline) with its model card; ``sail sample``
draws images of any model of the run with the run's sampler, one grid with a row per prompt.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sail_core.errors import InputError


def _quiet() -> None:
    """Diffusers' loading bars would garble the command's output (and an error's one line)."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()


def _options(args: argparse.Namespace):
    from sail_core.config import ExportConfig

    return ExportConfig(model=args.model, metric=args.metric, format=args.format, dtype=args.dtype, fuse=args.fuse)


def push_to_hub(folder: Path, repo_id: str) -> str:
    """Upload the export folder to a Hub model repository (created if needed); offline, one line saying so."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise InputError(f"the Hugging Face Hub is off (HF_HUB_OFFLINE=1): the export is in {folder}; upload it "
                         f"later with `hf upload {repo_id} {folder}`", parameter="--push-to-hub")
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model").commit_url
    except OSError as exc:  # requests' and httpx's connection errors are OSErrors
        raise InputError(f"cannot upload to the Hugging Face Hub ({' '.join(str(exc).split())[:200]}): the export "
                         f"is in {folder}; upload it later with `hf upload {repo_id} {folder}`",
                         parameter="--push-to-hub") from exc


def cmd_export(args: argparse.Namespace) -> int:
    from sail_core.export.exporter import export_model
    from sail_core.export.run_contents import open_run

    _quiet()
    options = _options(args)
    run = open_run(args.run, args.report_dir)
    result = export_model(run, Path(args.out), options, overwrite=args.overwrite, location=args.push_to_hub)
    print(f"exported {result.label} ({result.chosen_by}) of {run.location} as a {_kind(result.kind)}: {result.folder}")
    if args.push_to_hub:
        print(f"uploaded: {push_to_hub(result.folder, args.push_to_hub)}")
    print("\nload it with:\n\n" + result.snippet)
    return 0


def _kind(kind: str) -> str:
    return {"lora": "LoRA", "fused": "pipeline (LoRA fused)", "full": "pipeline"}[kind]


def cmd_sample(args: argparse.Namespace) -> int:
    from sail_core.export.run_contents import open_run
    from sail_core.export.sampling import grid, parse_seeds, pick_model, sample_images
    from sail_core.images import encode_png
    from sail_core.io.atomic import write_bytes
    from sail_core.run.stage import resolve_device

    _quiet()
    seeds = parse_seeds(args.seeds)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError("already exists: choose another --out, or pass --overwrite to replace it", file=out)
    run = open_run(args.run, args.report_dir)
    model = pick_model(run, args.model)
    images = sample_images(run, model, args.prompt, seeds, str(resolve_device(args.device)))
    write_bytes(out, encode_png(grid(images, len(seeds))), overwrite=args.overwrite)
    sampler = run.config.eval.sampler
    print(f"{model.label} of {run.location}: {len(args.prompt)} prompt(s) × seeds {seeds} "
          f"({sampler.kind} {sampler.steps} steps, guidance {sampler.guidance_scale:g}) → {out}", file=sys.stderr)
    print(out)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run's model as a folder diffusers loads, with its model card",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="the run directory (runs/<name>) or its fsspec URL")
    p.add_argument("--out", required=True, help="the export folder (must not exist unless --overwrite)")
    p.add_argument("--model", default="best",
                   help="best (the highest headline metric of the run's report, default), last, or round-NN")
    p.add_argument("--metric", help="what --model best maximises (default: the report's headline metric)")
    p.add_argument("--format", choices=("diffusers", "kohya"), default="diffusers",
                   help="LoRA runs: kohya adds the same LoRA with Kohya-style keys (ComfyUI, A1111)")
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32",
                   help="weights' dtype; a pipeline in fp16/bf16 is saved as that variant")
    p.add_argument("--fuse", action="store_true",
                   help="LoRA runs: a complete pipeline with the LoRA fused into the UNet")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="then upload the folder to this Hub model repository")
    p.add_argument("--report-dir", default="report", help="the run's report folder (default: report)")
    p.set_defaults(func=cmd_export)

    s = sub.add_parser("sample", help="images of any model of a run with the run's sampler, one grid")
    s.add_argument("run", help="the run directory (runs/<name>) or its fsspec URL")
    s.add_argument("--prompt", action="append", default=[], required=True, help="a prompt: a row of the grid "
                   "(repeatable)")
    s.add_argument("--model", default="best", help="best (default), last, base, or round-NN")
    s.add_argument("--seeds", default="0-3", help="columns of the grid: 0-3 (default) or 0,5,9")
    s.add_argument("--out", default="grid.png", help="the PNG to write (default: grid.png)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    s.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    s.add_argument("--report-dir", default="report", help="the run's report folder (default: report)")
    s.set_defaults(func=cmd_sample)
