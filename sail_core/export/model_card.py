"""The model card (``README.md``) of an exported model, built offline.

Front matter through huggingface_hub's ``ModelCardData`` (never a Hub call: the base model's licence
comes from its local card or a table of the published bases), then the lineage that made the model,
the run's metrics as its report holds them, the sample grid, and a load snippet that runs as written
with plain diffusers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sail_core.config import SailConfig

TAGS = ("text-to-image", "diffusers", "lora", "diffusion-dpo", "sail")
KNOWN_LICENSES = {
    "runwayml/stable-diffusion-v1-5": "creativeml-openrail-m",
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "creativeml-openrail-m",
    "compvis/stable-diffusion-v1-4": "creativeml-openrail-m",
    "stabilityai/stable-diffusion-xl-base-1.0": "openrail++",
}
"""Licences of the published bases the presets name, for a base whose card is not on this machine."""
PIXEL_PIPELINE, PIXEL_PIPELINE_MODULE = "PixelDiffusionPipeline", "sail_core.export.pixel_pipeline"
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def hub_id(source: str) -> str | None:
    """``source`` when it is a Hub id (``owner/name``) rather than a local folder."""
    return source if HUB_ID.fullmatch(source) and not Path(source).exists() else None


def base_license(source: str, local_folder: str | None) -> str:
    """The base model's licence: its own card's (a local folder's ``README.md``, or the Hub cache's copy),
    else the published bases' table, else ``other``."""
    from huggingface_hub import ModelCard, try_to_load_from_cache

    candidates: list[str] = []
    if local_folder and (Path(local_folder) / "README.md").is_file():
        candidates.append(str(Path(local_folder) / "README.md"))
    if hub_id(source):
        cached = try_to_load_from_cache(source, "README.md")
        if isinstance(cached, str):
            candidates.append(cached)
    for card_file in candidates:
        try:
            found = ModelCard.load(card_file).data.license
        except (OSError, ValueError):
            continue
        if isinstance(found, str) and found:
            return found
    return KNOWN_LICENSES.get(source.lower(), "other")


@dataclass(frozen=True)
class CardFacts:
    """What the card says; every value comes from the run or the export."""

    config: SailConfig
    run_name: str | None
    label: str
    chosen_by: str
    kind: str
    """``lora`` (one merged LoRA file), ``fused`` (a pipeline with the LoRA fused in) or ``full`` (a pipeline
    with the fine-tuned UNet)."""
    location: str
    """What the snippet loads: a Hub repo id or the export folder as the user named it."""
    base_source: str
    license: str
    metrics: Sequence[tuple[str, dict[str, float]]]
    """(label, report row) per model of the run, base first."""
    primary_metric: str | None
    dtype: str = "fp32"
    pipeline_class: str = "StableDiffusionPipeline"
    lora_rank: int | None = None
    kohya_file: str | None = None
    samples: str | None = None
    """File name of the sample grid in the folder."""
    extra_tags: tuple[str, ...] = field(default=())


def build_card(facts: CardFacts) -> str:
    """The card's full text (front matter + body)."""
    from huggingface_hub import ModelCard, ModelCardData

    base = hub_id(facts.base_source)
    tags = [t for t in TAGS if t != "lora" or facts.kind == "lora"] + list(facts.extra_tags)
    data = ModelCardData(base_model=base, library_name="diffusers", license=facts.license, tags=tags,
                         pipeline_tag="text-to-image")
    title, run = (f"{facts.run_name}: ", f" `{facts.run_name}`") if facts.run_name else ("SAIL ", "")
    body = "\n".join([
        f"# {title}{facts.label}", "",
        f"{_what(facts, base)} It is **{facts.label}** of the SAIL run{run}, {facts.chosen_by}.", "",
        "## How it was made", "", _lineage(facts.config, facts.label), "",
        "## Metrics", "", _metrics(facts), "",
        *(["## Samples", "", _samples_caption(facts.metrics), "", f"![samples]({facts.samples})", ""]
          if facts.samples else []),
        "## Use it", "", "```python", load_snippet(facts), "```", "",
        *([f"`{facts.location}` is this folder's path as it was written; from elsewhere, give its full path (or "
           "the Hub repository it was uploaded to).", ""] if not hub_id(facts.location)
          and not Path(facts.location).is_absolute() else []),
        *([f"`{facts.kohya_file}` holds the same LoRA with Kohya-style keys (`lora_unet_…`, `alpha` = rank), "
           "for ComfyUI, AUTOMATIC1111 and other Kohya-style loaders.", ""] if facts.kohya_file else []),
    ])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")).rstrip("\n") + "\n"


def _what(facts: CardFacts, base: str | None) -> str:
    base_text = (f"[`{base}`](https://huggingface.co/{base})" if base
                 else f"the local model `{Path(facts.base_source).name}`")
    if facts.kind == "lora":
        return (f"A LoRA (rank {facts.lora_rank}, alpha = rank: the scale is in the weights) for {base_text}, "
                "aligned with SAIL (self-amplified iterative preference learning with Diffusion-DPO). Every "
                "round's adapter of the lineage is merged into this one, exactly.")
    how = "the LoRA lineage fused into its UNet" if facts.kind == "fused" else "its UNet fine-tuned"
    return (f"A complete diffusers pipeline: {base_text} with {how} by SAIL (self-amplified iterative preference "
            "learning with Diffusion-DPO).")


def _round_number(label: str) -> int | None:
    match = re.fullmatch(r"round-(\d+)", label)
    return int(match.group(1)) if match else None


def _lineage(config: SailConfig, label: str) -> str:
    rounds = _round_number(label)
    seed, train, gen = config.seed_train, config.round_train, config.generate
    lora = config.model.lora
    training = (f"LoRA rank {lora.rank}, alpha {lora.alpha:g}" if config.model.train_mode == "lora"
                else "full fine-tuning of the UNet")
    lines = [
        "| | |", "|---|---|",
        f"| base model | `{config.model.source}` ({config.model.family}, {config.model.resolution}px) |",
        f"| training | {training} |",
        f"| seed set | {config.seed_data.seed_size} human preference pairs (at most) |",
        f"| iteration 0 | Diffusion-DPO on the seed set, β = {seed.beta:g}, learning rate {seed.learning_rate:g} |",
        f"| SAIL rounds | {rounds if rounds is not None else '?'} of the run's {config.rounds} |",
        f"| prompts per round | {', '.join(str(n) for n in config.prompts.per_round[: config.rounds])} |",
        f"| candidates per prompt (N) | {gen.n_candidates} |",
        f"| self-reward draws (K) | {config.reward.k_draws} ({config.reward.estimator}), judge reference "
        f"{config.reward.reference}, β = {config.reward.beta:g} |",
        f"| mixup α (self pairs) | {config.mixup.alpha:g} |",
        f"| round training | Diffusion-DPO, β = {train.beta:g}, learning rate {train.learning_rate:g}, "
        f"{train.optimizer}, {train.effective_batch_pairs} pairs per step |",
        f"| sampler (evaluation) | {config.eval.sampler.kind.upper()}, {config.eval.sampler.steps} steps, "
        f"guidance {config.eval.sampler.guidance_scale:g} |",
    ]
    return "\n".join(lines)


def format_value(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def headline_metrics(rows: Sequence[tuple[str, dict[str, float]]], primary: str | None) -> list[str]:
    names = sorted({k for _, row in rows for k in row
                    if "." not in k and "@" not in k and not k.endswith(("_ci95", "_win_rate"))})
    if primary in names:
        names.remove(primary)
        names.insert(0, primary)
    return names


def _metrics(facts: CardFacts) -> str:
    names = headline_metrics(facts.metrics, facts.primary_metric)
    if not names:
        return "The run's report holds no evaluation metrics."
    win = names[0]
    header = ["model", *names, f"win rate vs base ({win})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in facts.metrics:
        cells = [f"**{label}**" if label == facts.label else label]
        for name in names:
            mean, ci = row.get(name), row.get(f"{name}_ci95")
            cells.append(format_value(mean) + (f" ± {format_value(ci)}" if ci is not None else ""))
        cells.append(format_value(row.get(f"{win}_win_rate")))
        lines.append("| " + " | ".join(cells) + " |")
    protocol = facts.config.eval
    lines += ["", f"Held-out prompts of `{', '.join(protocol.prompts)}` ({protocol.max_prompts or 'all'} prompts × "
              f"{protocol.seeds_per_prompt} seeds), scorers {', '.join(protocol.scorers) or 'none'}; ± is the 95% "
              "confidence interval, the win rate is against the base on the same prompt and seed."]
    return "\n".join(lines)


def _samples_caption(rows: Sequence[tuple[str, dict[str, float]]]) -> str:
    return (f"Rows: held-out prompts and seeds; columns: {', '.join(label for label, _ in rows)} "
            "(the same prompt and seed across a row).")


def load_snippet(facts: CardFacts) -> str:
    """Python that loads the export with plain diffusers and draws one image with the run's sampler."""
    config, sampler = facts.config, facts.config.eval.sampler
    scheduler = "DDIMScheduler" if sampler.kind == "ddim" else "DDPMScheduler"
    dtype = {"fp32": "torch.float32", "fp16": "torch.float16", "bf16": "torch.bfloat16"}[facts.dtype]
    eta = f", eta={sampler.eta:g}" if sampler.kind == "ddim" and sampler.eta else ""
    if facts.pipeline_class == PIXEL_PIPELINE:
        variant = "" if facts.dtype == "fp32" else f", variant={facts.dtype!r}"
        return "\n".join([
            "import torch", f"from diffusers import {scheduler}", "",
            f"from {PIXEL_PIPELINE_MODULE} import {PIXEL_PIPELINE}", "",
            f"pipe = {PIXEL_PIPELINE}.from_pretrained({facts.location!r}, torch_dtype={dtype}{variant})",
            f"pipe.scheduler = {scheduler}.from_config(pipe.scheduler.config)  # the run's sampler",
            f"image = pipe(\"a red circle\", num_inference_steps={sampler.steps}, "
            f"guidance_scale={sampler.guidance_scale:g}{eta}).images[0]",
            'image.save("sample.png")',
        ])
    loader = facts.pipeline_class if facts.kind == "lora" else "DiffusionPipeline"
    vae = ", AutoencoderKL" if facts.kind == "lora" and config.model.vae_source else ""
    lines = ["import torch", f"from diffusers import {loader}, {scheduler}{vae}", ""]
    if facts.kind == "lora":
        extra = ""
        if config.model.vae_source:
            lines.append(f"vae = AutoencoderKL.from_pretrained({config.model.vae_source!r}, torch_dtype={dtype})")
            extra = ", vae=vae"
        lines += [f"pipe = {facts.pipeline_class}.from_pretrained({config.model.source!r}, "
                  f"torch_dtype={dtype}{extra})",
                  f"pipe.load_lora_weights({facts.location!r})"]
    else:
        variant = "" if facts.dtype == "fp32" else f", variant={facts.dtype!r}"
        lines.append(f"pipe = DiffusionPipeline.from_pretrained({facts.location!r}, torch_dtype={dtype}{variant})")
    side = config.model.resolution
    lines += [
        f"pipe.scheduler = {scheduler}.from_config(pipe.scheduler.config)  # the run's sampler",
        f"image = pipe(\"a photo of a cat\", num_inference_steps={sampler.steps}, "
        f"guidance_scale={sampler.guidance_scale:g}{eta}, height={side}, width={side}).images[0]",
        'image.save("sample.png")',
    ]
    return "\n".join(lines)
