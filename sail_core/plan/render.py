"""The tables ``sail plan`` prints (Markdown, so they paste into documents as they are)."""

from __future__ import annotations

from sail_core.plan.estimate import GIB, MARGIN, Plan, Stage, build_plan

SCALE_GPUS = (1, 8, 64)


def hours(seconds: float) -> str:
    h = seconds / 3600
    return f"{h:,.1f} h" if h >= 1 else f"{seconds / 60:,.1f} min"


def _num(x: float) -> str:
    if x < 1e4:
        return f"{x:.3g}"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def stage_row(s: Stage, plan: Plan) -> str:
    largest = s.memory.largest_fitting(plan.gpu.memory_bytes)
    return (f"| {s.name} | {s.work} | {_num(s.unet_forwards)} | {_num(s.flops)} | "
            f"{s.memory.with_margin() / GIB:.1f} | {s.batch_setting} = {s.memory.batch} → {largest} | "
            f"{100 * s.mfu:.1f}% ({s.mfu_source}) | {s.gpu_seconds / 3600:,.2f} | "
            f"{hours(s.wall_seconds)} on {s.gpus} | "
            f"{s.bound} |")


def header(plan: Plan) -> list[str]:
    c, g = plan.config, plan.gpu
    mfu = (f"--mfu {plan.mfu_override:g} for every stage" if plan.mfu_override is not None else
           "MFU per stage from the nearest measured anchor (bench/results/h100-eager-unet-anchor.jsonl: plain "
           "diffusers eager bf16 on one H100)")
    return [
        f"# sail plan: {c.preset} ({c.model.family}, {c.model.resolution} px, train_mode {c.model.train_mode}) "
        f"on {plan.gpus} × {g.name}",
        "",
        f"- UNet: {plan.unet_params:,} parameters; one forward of one image: {plan.forward_gflop:,.1f} GFLOP "
        "(counted by torch.utils.flop_counter on the published architecture)",
        f"- GPU: {g.name}: {g.peak_bf16_tflops:g} TFLOP/s dense bf16, {g.memory_gib:.1f} GiB, "
        f"{g.bandwidth_tb_s:g} TB/s ({g.source})",
        f"- time = counted FLOPs / (peak × MFU); {mfu}",
        f"- memory per GPU process = traced peak (fake tensors through the project's sampler, reward and "
        f"trainer) + the text encoders and VAE it holds, × {1 + MARGIN.fraction:.2f} + {MARGIN.fixed_gib:g} GiB "
        "(allocator, CUDA context; bench/plan_calibration.py)",
    ]


STAGE_HEAD = ["| stage | work | UNet forwards | FLOPs | peak GiB / GPU | batch setting = set → largest that fits | "
              "MFU (source) | GPU-hours | wall time on GPUs | bound |",
              "|---|---|---:|---:|---:|---|---|---:|---|---|"]


def render(plan: Plan, scale: bool = True) -> str:
    lines = header(plan)
    first = plan.rounds[0] if plan.rounds else None
    if first is not None:
        lines += ["", f"## One round (round {first.index}: {first.prompts:,} prompts)", "", *STAGE_HEAD,
                  *(stage_row(s, plan) for s in first.stages),
                  f"| **round {first.index}** | | | | | | | **{first.gpu_seconds / 3600:,.2f}** | "
                  f"**{hours(first.wall_seconds)}** | |"]
    lines += ["", "## Iteration 0 and the base", "", *STAGE_HEAD, *(stage_row(s, plan) for s in plan.seed),
              stage_row(plan.baseline_eval, plan)]
    lines += ["", f"## The whole run ({len(plan.rounds)} round(s))", "",
              "| part | GPU-hours (busy) | wall time | GPU-hours held (wall × GPUs) |", "|---|---:|---:|---:|"]
    parts = [("the base's evaluation", [plan.baseline_eval]), ("iteration 0 (seed DPO, evaluation)", plan.seed)]
    parts += [(f"round {r.index} ({r.prompts:,} prompts)", r.stages) for r in plan.rounds]
    for name, stages in parts:
        busy, wall = sum(s.gpu_seconds for s in stages), sum(s.wall_seconds for s in stages)
        lines.append(f"| {name} | {busy / 3600:,.1f} | {hours(wall)} | {wall * plan.gpus / 3600:,.1f} |")
    lines.append(f"| **total** | **{plan.gpu_seconds / 3600:,.1f}** | **{hours(plan.wall_seconds)}** | "
                 f"**{plan.wall_seconds * plan.gpus / 3600:,.1f}** |")
    if scale and first is not None:
        lines += ["", *scaling(plan)]
    lines += ["", "Estimated, not measured: FLOPs and memory are traced on fake tensors, times assume the MFU "
              "shown. "
              "Left out: prompt encoding, the seed set's VAE encoding, the scorers, data loading, the run store's "
              "transfers, NCCL's own buffers."]
    return "\n".join(lines) + "\n"


def scaling(plan: Plan) -> list[str]:
    c = plan.config
    first = plan.rounds[0]
    gen, rank, dpo, ev = first.stages
    n, k = c.generate.n_candidates, (c.reward.k_draws if c.reward.estimator == "fixed" else c.reward.k_max)
    pairs = round(dpo.unet_forwards / (2 * (3 if c.round_train.gradient_checkpointing else 2)))
    out = ["## How a round scales", "",
           f"GPU-seconds of round {first.index}, per unit of each setting (each stage is linear in them):", "",
           f"- generation: {gen.gpu_seconds / (first.prompts * n):.3g} GPU-s per prompt per candidate "
           f"(× prompts × N)",
           f"- ranking: {rank.gpu_seconds / (first.prompts * n * k):.3g} GPU-s per candidate per draw "
           "(× prompts × N × K)",
           f"- DPO: {dpo.gpu_seconds / max(pairs, 1):.3g} GPU-s per pair trained (pairs = prompts / α: "
           "independent of N and K)",
           f"- evaluation: {hours(ev.gpu_seconds)} per model evaluated (its prompt set, not the round's)", "",
           "| round (prompts) | GPUs | GPU-hours (busy) | wall time | GPU-hours held | generation | ranking | DPO | "
           "evaluation |",
           "|---|---:|---:|---:|---:|---|---|---|---|"]
    plans = {g: plan if g == plan.gpus else build_plan(c, plan.gpu, g, mfu=plan.mfu_override,
                                                       eval_prompts=plan.eval_prompts, gpus_per_host=plan.gpus_per_host)
             for g in sorted({*SCALE_GPUS, plan.gpus})}
    for r_index in range(len(plan.rounds)):
        for g, other in plans.items():
            r = other.rounds[r_index]
            cells = [f"{hours(s.wall_seconds)} ({s.gpus} GPU{'s' if s.gpus > 1 else ''}; {s.bound})" for s in r.stages]
            out.append(f"| {r.index} ({r.prompts:,}) | {g} | {r.gpu_seconds / 3600:,.1f} | {hours(r.wall_seconds)} | "
                       f"{r.wall_seconds * g / 3600:,.1f} | {' | '.join(cells)} |")
    return out
