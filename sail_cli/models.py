"""``sail models``: the published architectures (SD1.5, SDXL, the fp16-fix VAE, CLIP ViT-L/14) as folders.

``sail models random --family sdxl --out models/sdxl --vae-out models/sdxl-vae-fp16-fix`` writes
diffusers folders with the published configurations and seeded random weights, which a preset loads
like the downloaded model: ``--set model.source=models/sdxl --set model.local_files_only=true
--set model.vae_source=models/sdxl-vae-fp16-fix``. For running and measuring the real architectures
where the weights cannot be downloaded; the images are noise.
"""

from __future__ import annotations

import argparse

FAMILY_VAE = {"sdxl": "sdxl-vae-fp16-fix"}


def _report(report) -> None:
    for component, count in report.parameters.items():
        print(f"  {component:<24} {count:>15,d} parameters")
    print(f"  wrote {report.bytes_written / 2**30:.2f} GiB ({report.dtype}) to {report.folder} "
          f"in {report.seconds:.1f} s")


def cmd_random(args: argparse.Namespace) -> int:
    from sail_core.models.random_weights import write_random_model

    print(f"{args.family} (seed {args.seed}):")
    _report(write_random_model(args.family, args.out, seed=args.seed, dtype=args.dtype, overwrite=args.overwrite))
    settings = [f"model.source={args.out}", "model.local_files_only=true"]
    if args.vae_out:
        vae = FAMILY_VAE.get(args.family)
        if vae is None:
            raise SystemExit(f"--vae-out: {args.family} has no separate VAE (only {sorted(FAMILY_VAE)})")
        print(f"{vae} (seed {args.seed}):")
        _report(write_random_model(vae, args.vae_out, seed=args.seed, dtype=args.dtype, overwrite=args.overwrite))
        settings.append(f"model.vae_source={args.vae_out}")
    if args.family in ("sd15", "sdxl"):
        print("use it with: " + " ".join(f"--set {s}" for s in settings))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from sail_core.models.architectures import ARCHITECTURES

    models = sub.add_parser("models", help="the published model architectures as local folders",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = models.add_subparsers(dest="models_command", required=True)
    random = commands.add_parser("random", help="write an architecture with seeded random weights")
    random.add_argument("--family", required=True, choices=sorted(ARCHITECTURES),
                        help="sd15 or sdxl (pipelines), sdxl-vae-fp16-fix (a model.vae_source) or "
                             "clip-vit-large-patch14 (the CLIP-score / aesthetic scorers' CLIP)")
    random.add_argument("--out", required=True, help="the folder to create")
    random.add_argument("--seed", type=int, default=0)
    random.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16", help="dtype of the stored weights")
    random.add_argument("--vae-out", help="sdxl: also write the random fp16-fix VAE into this folder")
    random.add_argument("--overwrite", action="store_true", help="replace existing folders")
    random.set_defaults(func=cmd_random)
