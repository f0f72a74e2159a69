"""``sail``: the command-line entry point.

A failing command prints one line (what, where, how to fix) and exits with 1; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from sail_cli.environment import apply_defaults


def _overrides(pairs: list[str]) -> dict:
    from sail_core.config import parse_override

    return dict(parse_override(p) for p in pairs)


def cmd_run(args: argparse.Namespace) -> int:
    from flows.sail_loop import resolve_config, sail_loop
    from sail_cli.local_server import prefect_api
    from tasks.run import hold_run

    overrides = _overrides(args.set)
    # what can be checked without Prefect is, so that a wrong input or a run in use fails in one line at once
    resolve_config(args.preset, args.config, args.rounds, overrides)
    with hold_run(args.runs_dir, args.run_name) as took_over, prefect_api():
        if took_over:
            print(f"sail run: took over the lock of {took_over}, whose process no longer holds it", file=sys.stderr)
        if not args.debug:
            from sail_cli.console import quiet_tracebacks

            quiet_tracebacks()
        result = sail_loop(preset=args.preset, config_file=args.config, run_name=args.run_name, rounds=args.rounds,
                           overrides=overrides, runs_dir=args.runs_dir)
    print(f"\nrun directory: {result['run_dir']}\nreport:        {result['report']}")
    exported = result.get("export")
    if exported:
        location = f"{args.runs_dir.rstrip('/')}/{args.run_name}"
        print(f"export:        {exported['folder']} ({exported['label']}, {exported['chosen_by']})\n"
              f"try:           sail sample {location} --model {exported['label']} --prompt "
              f"{shlex.quote(_example_prompt(overrides, args))} --seeds 0-3 --out grid.png")
    return 0


def _example_prompt(overrides: dict, args: argparse.Namespace) -> str:
    """The run's first evaluation prompt (a prompt the model knows), else a generic one."""
    from flows.sail_loop import resolve_config
    from sail_core.data.prompt_sets import prompt_set_from_spec

    try:
        config = resolve_config(args.preset, args.config, args.rounds, overrides)
        return prompt_set_from_spec(config.eval.prompts[0]).prompts[0]
    except Exception:  # noqa: BLE001 - only an example for the user; never fail a finished run over it
        return "a photo of a cat"


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from sail_core.config import load_config

    config = load_config(args.config or args.preset, _overrides(args.set))
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_world_pretrain(args: argparse.Namespace) -> int:
    import time

    from sail_core.world.assets import BASE_MODEL_DIR
    from sail_core.world.pretrain import PretrainConfig, export_checkpoint, pretrain

    started = time.time()

    given = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed, "threads": args.threads,
             "device": args.device, "learning_rate": args.learning_rate, "warmup_steps": args.warmup_steps,
             "high_noise_share": args.high_noise_share, "high_noise_from": args.high_noise_from, "init": args.init}
    config = PretrainConfig(**{k: v for k, v in given.items() if v is not None})

    def report(step: int, loss: float) -> None:
        if step % 100 == 0 or step == config.steps:
            print(f"step {step}/{config.steps}  loss {loss:.4f}  {time.time() - started:.0f}s", flush=True)

    out = Path(args.out) if args.out else BASE_MODEL_DIR
    checkpoints = Path(args.checkpoint_dir or Path(args.work_dir) / "pretrain-checkpoints")
    if args.export_checkpoint:
        print(f"wrote {export_checkpoint(config, checkpoints, args.export_checkpoint, overwrite=args.overwrite)}")
        return 0
    path = pretrain(config, out, Path(args.work_dir) / "tokenizer", report, overwrite=args.overwrite,
                    checkpoint_dir=checkpoints, checkpoint_every=args.checkpoint_every)
    print(f"wrote {path}")
    return 0


def cmd_world_labels(args: argparse.Namespace) -> int:
    from sail_core.world.assets import BASE_MODEL_DIR, EVAL_PROMPTS_FILE, LABELS_FILE, TUNE_PROMPTS_FILE
    from sail_core.world.labels import LabelConfig, build_labels

    config = LabelConfig(n_pairs=args.pairs, seed=args.seed, target_agreement=args.agreement)
    stats = build_labels(Path(args.model or BASE_MODEL_DIR), config, Path(args.out or LABELS_FILE),
                         Path(args.eval_prompts or EVAL_PROMPTS_FILE), Path(args.tune_prompts or TUNE_PROMPTS_FILE),
                         overwrite=args.overwrite)
    print(stats)
    return 0


def cmd_world_audit(args: argparse.Namespace) -> int:
    from sail_core.data.prompt_sets import prompt_set_from_spec
    from sail_core.io.paths import local_path
    from sail_core.world.assets import BASE_MODEL_DIR, EVAL_PROMPTS_FILE
    from sail_core.world.audit import audit, audit_markdown

    args.prompts = args.prompts or str(EVAL_PROMPTS_FILE)
    prompts = list(prompt_set_from_spec(local_path(args.prompts)).prompts)[: args.max_prompts]
    result = audit(Path(args.model or BASE_MODEL_DIR), prompts, args.seeds)
    print(f"{len(prompts)} prompts x {args.seeds} seeds ({args.prompts}); model: {args.model or BASE_MODEL_DIR}")
    print(audit_markdown({("base model" if not args.model else "model"): result["model"],
                          "renderer": result["renderer"]}))
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from sail_cli.experiment import merge_experiment, plan_experiment, run_experiment
    from sail_cli.local_server import prefect_api

    if args.merge:
        out = merge_experiment(args.spec, args.out, args.runs_dir, args.merge)
        print(f"results: {out} (merged from {args.merge})")
        return 0
    # the whole spec is checked before a server starts or an arm runs: every problem, one line each
    plan_experiment(args.spec, args.seed or None, args.arm or None, args.analyses_only, not args.skip_analyses)
    with prefect_api():  # as sail run: a server started here dies with the command, even on kill -9
        out = run_experiment(args.spec, args.out, args.runs_dir, seeds=args.seed or None, arms=args.arm or None,
                             analyses_only=args.analyses_only, analyses=not args.skip_analyses)
    print(f"results: {out}")
    return 0


def cmd_world_real_images(args: argparse.Namespace) -> int:
    from sail_core.world.assets import REAL_IMAGES_FILE
    from sail_core.world.real import RealImagesConfig, build_real_images

    path = build_real_images(Path(args.out or REAL_IMAGES_FILE), RealImagesConfig(seed=args.seed),
                             overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sail", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    def config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--preset", default="world", help="world (default), sd15 or sdxl")
        p.add_argument("--config", help="a YAML config file instead of a preset")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set reward.k_draws=4 (repeatable)")

    run = sub.add_parser("run", help="run the sail-loop flow (seed DPO + rounds) and print the metrics table")
    config_args(run)
    run.add_argument("--run-name", default="default", help="runs/<name> holds every artifact; rerun to resume")
    run.add_argument("--rounds", type=int, help="number of SAIL rounds (default: the preset's)")
    run.add_argument("--runs-dir", default="runs", help="where runs live: a directory or an fsspec URL")
    run.set_defaults(func=cmd_run)

    show = sub.add_parser("config", help="print the resolved configuration")
    config_args(show)
    show.set_defaults(func=cmd_config)

    from sail_cli.evaluate import add_parser as add_evaluate

    add_evaluate(sub)

    from sail_cli.models import add_parser as add_models

    add_models(sub)

    from sail_cli.plan import add_parser as add_plan

    add_plan(sub)

    from sail_cli.verify import add_parser as add_verify

    add_verify(sub)

    from sail_cli.export import add_parsers as add_export

    add_export(sub)

    exp = sub.add_parser("experiment", help="run a multi-seed experiment spec (arms x seeds) and tabulate it")
    exp.add_argument("spec", help="an experiment YAML, e.g. experiments/world.yaml")
    exp.add_argument("--out", default="experiments/results", help="where tables and plots are written")
    exp.add_argument("--runs-dir", default="runs/experiments")
    exp.add_argument("--seed", type=int, action="append", default=[], help="only these seeds (repeatable)")
    exp.add_argument("--arm", action="append", default=[], help="only these arms (repeatable)")
    which = exp.add_mutually_exclusive_group()
    which.add_argument("--analyses-only", action="store_true",
                       help="run no arm, only the analyses that need none (the ranking estimators' comparison)")
    which.add_argument("--skip-analyses", action="store_true",
                       help="run the arms only, not the per-seed analyses (self-reward accuracy, selection "
                            "agreement, ranking estimators); their earlier rows are kept")
    which.add_argument("--merge", metavar="OTHER_OUT",
                       help="run nothing: fold in the results another process wrote with --out OTHER_OUT (other "
                            "seeds or arms, run side by side) and rewrite the tables")
    exp.set_defaults(func=cmd_experiment)

    world = sub.add_parser("world", help="build the embedded world's shipped files").add_subparsers(
        dest="world_command", required=True)
    pre = world.add_parser("pretrain", help="pretrain the world's base model on rendered images")
    pre.add_argument("--steps", type=int, help="optimizer steps (default: PretrainConfig's, the shipped model's)")
    pre.add_argument("--batch-size", type=int, help="images per step (default: PretrainConfig's)")
    pre.add_argument("--learning-rate", type=float, help="peak AdamW learning rate (default: PretrainConfig's)")
    pre.add_argument("--warmup-steps", type=int,
                     help="linear warm-up before the cosine decay (default: PretrainConfig's)")
    pre.add_argument("--high-noise-share", type=float,
                     help="share of each batch trained on the highest noise levels, where only the text says "
                          "where an object goes (default: PretrainConfig's)")
    pre.add_argument("--high-noise-from", type=int, help="first timestep of those levels (default: PretrainConfig's)")
    pre.add_argument("--init", help="a world model folder to continue from (default: random weights from the seed)")
    pre.add_argument("--seed", type=int, help="default: PretrainConfig's")
    pre.add_argument("--threads", type=int, help="torch threads (default: PretrainConfig's)")
    pre.add_argument("--device", help="cpu (default) or cuda; batches and noise come from the seed either way")
    pre.add_argument("--out", help="output folder (default: the shipped base_model/)")
    pre.add_argument("--work-dir", default=".sail-work")
    pre.add_argument("--checkpoint-dir", help="step checkpoints; a rerun continues from the last one "
                     "(default: <work-dir>/pretrain-checkpoints)")
    pre.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    pre.add_argument("--export-checkpoint", metavar="FOLDER",
                     help="only write the newest checkpoint's EMA weights to FOLDER as a model (to audit it)")
    pre.add_argument("--overwrite", action="store_true")
    pre.set_defaults(func=cmd_world_pretrain)
    lab = world.add_parser("labels", help="label pairs of base-model samples with the hidden human")
    lab.add_argument("--pairs", type=int, default=4000)
    lab.add_argument("--seed", type=int, default=0)
    lab.add_argument("--model", help="base model folder (default: the shipped one)")
    lab.add_argument("--out", help="labels parquet (default: the shipped data/labels.parquet)")
    lab.add_argument("--agreement", type=float, default=0.8,
                     help="calibrate the human's noise so decided labels agree with the utility this often")
    lab.add_argument("--eval-prompts", help="held-out test prompts file (default: the shipped one)")
    lab.add_argument("--tune-prompts", help="held-out tuning prompts file (default: the shipped one)")
    lab.add_argument("--overwrite", action="store_true")
    lab.set_defaults(func=cmd_world_labels)
    aud = world.add_parser("audit", help="per-attribute accuracy of a world model beside the renderer's")
    aud.add_argument("--model", help="model folder (default: the shipped base model)")
    aud.add_argument("--prompts", help="a prompt file or pkg: reference (default: the world's test prompts; "
                     "its tuning prompts: pkg:sail_core.world/data/tune_prompts.txt)")
    aud.add_argument("--seeds", type=int, default=2, help="seeds per prompt (the evaluation protocol's)")
    aud.add_argument("--max-prompts", type=int, help="only the first N prompts")
    aud.set_defaults(func=cmd_world_audit)
    real = world.add_parser("real-images", help="render the world's real images (RealAlign anchors)")
    real.add_argument("--seed", type=int, default=0)
    real.add_argument("--out", help="Parquet file (default: the shipped data/real.parquet)")
    real.add_argument("--overwrite", action="store_true")
    real.set_defaults(func=cmd_world_real_images)
    _accept_debug(sub)
    return parser


def _accept_debug(sub: argparse._SubParsersAction) -> None:
    """``--debug`` after the command too (``sail run --debug``), at every level of subcommands."""
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        for action in command._subparsers._group_actions if command._subparsers else ():
            _accept_debug(action)


def main(argv: list[str] | None = None) -> int:
    apply_defaults()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"sail {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error ends as one line unless --debug asks for more
        if args.debug:
            raise
        from sail_cli.console import error_line

        print(error_line(args.command, exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
