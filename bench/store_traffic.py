"""Bytes a round moves between the run store and its workers: the design before the content-addressed
store (every shard run pulls the whole run; push re-uploads stage directories) against the current one
(each shard run pulls its inputs through its host's object cache).

``python bench/store_traffic.py sdxl`` computes an SDXL round from stated sizes (nothing measured);
``python bench/store_traffic.py run DIR`` applies both designs' rules to the files of a finished run on
disk (e.g. one pulled from the store), for its last round. Measured traffic of the current design
comes from ``<cache>/transfers.jsonl`` and the S3 server's counts (tests/flows/test_multihost.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

GB = 1e9

# --- SDXL: every size and where it comes from ---------------------------------------------------------
UNET_PARAMS = 2.567e9  # SDXL UNet (shared/field-notes/performance-anchors.md §2a)
TRAINED_UNET = UNET_PARAMS * 4  # the trained policy is saved as its float32 master weights (denoisers.save_trained)
STEP_CHECKPOINT = UNET_PARAMS * 4 + 0.05 * GB  # trainable fp32 + Adafactor's factored state (assumed < 50 MB)
KEEP_CHECKPOINTS = 2  # TrainConfig.keep_checkpoints
LATENT = 4 * 128 * 128 * 2  # 1024 px → 4×128×128 latent, stored fp16 (generate.py)
COND = 77 * 2048 * 2 + 1280 * 2  # SDXL prompt embeddings (77×2048) + pooled (1280), fp16
PNG_1024 = 1.5e6  # one evaluation image, PNG 1024² (assumed)
SEED_PAIRS, EVAL_PROMPTS, N = 50_000, 500, 8  # sdxl preset; pickapic validation_unique has 500 prompts
ROUND_PROMPTS = (10_000, 20_000)  # sdxl preset: prompts.per_round
PER_SHARD, HOSTS, WORKERS = 128, 2, 8  # 20K / 128 = 157 shards; 4 GPU workers on each of 2 hosts


def sdxl() -> list[tuple[str, float, float]]:
    """(what, before, now) in bytes, for round 2 (20K prompts) with 8 workers on 2 hosts."""
    seed = SEED_PAIRS * (2 * LATENT + COND)
    train_before = TRAINED_UNET + KEEP_CHECKPOINTS * STEP_CHECKPOINT  # step checkpoints were kept and pushed
    evaluation = EVAL_PROMPTS * PNG_1024
    r1_conds, r2_conds = ROUND_PROMPTS[0] * COND, ROUND_PROMPTS[1] * COND
    r1_gen, r2_gen = ROUND_PROMPTS[0] * N * LATENT, ROUND_PROMPTS[1] * N * LATENT
    shards = -(-ROUND_PROMPTS[1] // PER_SHARD)
    mine = r2_gen * (shards / WORKERS) / shards  # one shard run's ~20 shards of candidates
    # before: the run as it stands when round 2's generation is dispatched, pulled whole by a shard run
    whole = seed + 2 * train_before + 3 * evaluation + r1_conds + r1_gen + r2_conds
    # ranking was a second dispatch: each run pulled the candidates the other workers had generated
    others = r2_gen - mine
    # workers of a host shared one working copy and raced on it: between once per host and once per worker
    before_round_low = HOSTS * (whole + r2_gen * (1 - 1 / HOSTS))
    before_round_high = WORKERS * (whole + others)
    # now: a shard run pulls the policy (round 1's model; the judge is the base model, outside the run)
    # and the round's conditioning, through the host's object cache: once per host; ranking reads the
    # candidates its own run generated
    inputs = TRAINED_UNET + r2_conds
    return [
        ("the run in the store when round 2 is dispatched", whole, whole - 2 * KEEP_CHECKPOINTS * STEP_CHECKPOINT),
        ("one worker's round-2 shard runs, downloads, first worker of its host", whole + others, inputs),
        ("one worker's round-2 shard runs, uploads (its ~20 shards)", mine, mine),
        ("round 2, downloads by the 8 GPU workers, before at best (once per host)", before_round_low, HOSTS * inputs),
        ("round 2, downloads by the 8 GPU workers, before at worst (once per worker)", before_round_high,
         HOSTS * inputs),
        ("round 2, control host: the candidates, for training (both designs)", r2_gen, r2_gen),
        ("round 2, training's uploads: model + step checkpoints (now: + one per push)", train_before,
         TRAINED_UNET + STEP_CHECKPOINT),
    ]


def from_run(run: Path) -> list[tuple[str, float, float]]:
    """The last round of a finished run on disk (its store's files, e.g. pulled whole), both designs'
    rules applied to its files; 2 shard workers."""
    size = lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size  # noqa: E731
    last = sorted(p for p in run.glob("round-*") if p.is_dir() and list(p.glob("generate-*/")))[-1]
    generate, prompts = next(last.glob("generate-*/")), next(last.glob("prompts-*/"))
    policy = next((run / f"round-{int(last.name.split('-')[1]) - 1:02d}").glob("train-*/")) / "unet"
    trainings = list(run.glob("round-*/train-*/unet"))
    # before, a finished training kept its last 2 step checkpoints (AdamW: weights + 2 moments, float32,
    # 3× the saved float32 UNet each), which the run held and shard runs pulled
    steps_before = sum(2 * 3 * size(t) for t in trainings if t.parent.parent.name < last.name)
    dispatched = [p for p in run.iterdir() if p.name < last.name and not p.name.startswith(".")] + [prompts]
    whole = sum(size(p) for p in dispatched) + steps_before
    shard_files = sorted(generate.glob("shard-*"))
    others = sum(f.stat().st_size for f in shard_files) / 2  # the half the other worker generated
    return [
        ("the run at dispatch (before: with step checkpoints)", whole, whole - steps_before),
        ("one worker's shard runs of the round, downloads (2 workers)", whole + others, size(prompts) + size(policy)),
        ("one worker's shard runs of the round, uploads", others, others),
    ]


def main(argv: list[str]) -> None:
    rows = sdxl() if argv[:1] == ["sdxl"] else from_run(Path(argv[1]))
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'before':>12}  {'now':>12}")
    for what, before, now in rows:
        print(f"{what:{width}}  {before / GB:>9.2f} GB  {now / GB:>9.2f} GB")


if __name__ == "__main__":
    main(sys.argv[1:])
