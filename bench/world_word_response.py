"""Can the world model tie a word to what it means in pixels? A probe for the position gap of issue 15.

At t = 999 the noisy image is pure noise, so a v-model's x₀ prediction is its estimate of the posterior
mean image given the prompt alone; where an object sits is decided there. For two prompts that differ
in one word (left / right), the probe reads how much of the true difference between their posterior
means (averaged renders) the model's prediction reproduces: the *word response*, 1 when the model has
learned the word, 0 when it ignores it, projected on the true difference so a wrong-way answer is
negative. Colour (red / blue) is measured the same way as a calibration.

It trains the world's own UNet and text encoder (``sail_core.world.model``) on the timesteps
``[--t-min, 999]`` (or a ``--high-share`` of each batch on ``[--high-from, 999]``, the rest on
``[--t-min, 999]``, as ``sail world pretrain --high-noise-share`` does), either on one pair of prompts
(``--data pair-position`` / ``pair-colour``: can the architecture learn the word at all?), on the
whole grammar with the position always stated (``--data grammar``: does it learn it among everything
else?) or on the grammar with every colour red and every background white (``grammar-red-white``),
from scratch, from a pretraining step checkpoint or from a model folder (``--init``). Besides the
red circle's left/right and top/bottom it reads left/right for two small yellow squares on black
(``position-yellow-black``): a model that learned "left" for one colour only fails there. Prints
one JSON line per evaluation. One thread, deterministic.

    python bench/world_word_response.py --data pair-position --steps 100
    python bench/world_word_response.py --data grammar --steps 300 --t-min 950 --init sail_core/world/base_model
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPTokenizer

from sail_core.algorithm.noising import add_noise, training_target
from sail_core.io.tensors import read_tensors
from sail_core.world.assets import BASE_MODEL_DIR
from sail_core.world.grammar import UnsaidProbabilities, sample_specs
from sail_core.world.model import TEXT_LENGTH, build_scheduler, build_text_encoder, build_unet, load_weights
from sail_core.world.render import sample_images

PAIRS = {
    "position": ("a large red circle on the left on a white background",
                 "a large red circle on the right on a white background"),
    "vertical": ("a large red circle at the top on a white background",
                 "a large red circle at the bottom on a white background"),
    "colour": ("a large red circle on the left on a white background",
               "a large blue circle on the left on a white background"),
    "position-yellow-black": ("two small yellow squares on the left on a black background",
                              "two small yellow squares on the right on a black background"),
}
BATCH = 64
RENDERS = 2048  # renders averaged into each prompt's posterior mean
POSITION_ALWAYS_STATED = UnsaidProbabilities(position=0.0, size=0.5, background=0.5)


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def renders(prompt: str, seed: int) -> torch.Tensor:
    return as_tensor(sample_images([prompt] * RENDERS, np.random.default_rng(seed)))


def word_response(predicted: tuple[torch.Tensor, torch.Tensor], truth: tuple[torch.Tensor, torch.Tensor]) -> float:
    """The share of the true difference between two posterior means that the predicted ones reproduce,
    along its direction: (p_a − p_b)·(t_a − t_b) / ‖t_a − t_b‖²."""
    true = (truth[0] - truth[1]).flatten()
    return float((predicted[0] - predicted[1]).flatten() @ true / true.norm() ** 2)


def load_init(folder: Path, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
    """A step checkpoint's raw weights, or a model folder's (as ``sail world pretrain --init`` loads them)."""
    if not (folder / "trainable.safetensors").is_file():
        load_weights(folder, unet, text_encoder)
        return
    saved = read_tensors(folder / "trainable.safetensors")
    with torch.no_grad():
        for name, param in torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder}).named_parameters():
            param.copy_(saved[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=["pair-position", "pair-colour", "grammar", "grammar-red-white"],
                        required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--t-min", type=int, default=999, help="train on timesteps t_min..999")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--high-share", type=float, default=0.0,
                        help="share of each batch drawn from t in [--high-from, 999] instead of [t_min, 999]")
    parser.add_argument("--high-from", type=int, default=950)
    parser.add_argument("--init", type=Path,
                        help="a `sail world pretrain` step checkpoint folder, or a world model folder such as "
                             "sail_core/world/base_model (default: from scratch)")
    args = parser.parse_args()
    if not 0.0 <= args.high_share <= 1.0:
        parser.error(f"--high-share {args.high_share}: must be in [0, 1]")
    if args.init and not any((args.init / name).exists() for name in ("trainable.safetensors", "unet")):
        parser.error(f"--init {args.init}: neither a step checkpoint (trainable.safetensors) nor a model folder "
                     "(unet/); pass a step-NNNNNN folder of `sail world pretrain --checkpoint-dir` or a model folder")

    torch.set_num_threads(1)
    torch.manual_seed(0)
    unet, text_encoder, scheduler = build_unet(), build_text_encoder(), build_scheduler()
    if args.init:
        load_init(args.init, unet, text_encoder)
    tokenizer = CLIPTokenizer.from_pretrained(BASE_MODEL_DIR / "tokenizer")  # the shipped world's, read only

    def token_ids(prompts) -> torch.Tensor:
        return tokenizer(list(prompts), padding="max_length", max_length=TEXT_LENGTH, truncation=True,
                         return_tensors="pt").input_ids

    # the pair a --data pair-* run trains on, as a pool of renders (a grammar run draws fresh scenes instead)
    pair = PAIRS["colour" if args.data == "pair-colour" else "position"]
    pair_ids = token_ids(pair)
    pool = [] if args.data.startswith("grammar") else [renders(prompt, seed) for seed, prompt in enumerate(pair)]
    truths = {name: tuple(renders(p, seed).mean(0) for seed, p in enumerate(prompts))
              for name, prompts in PAIRS.items()}
    alpha_bar = scheduler.alphas_cumprod[999]

    def responses() -> dict[str, float]:
        out = {}
        for name, prompts in PAIRS.items():
            means = []
            for ids in token_ids(prompts):
                noise = torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(1))
                with torch.no_grad():
                    v = unet(noise, torch.full((32,), 999), text_encoder(ids.expand(32, -1)).last_hidden_state).sample
                means.append((alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * v).mean(0))
            out[name] = round(word_response((means[0], means[1]), truths[name]), 3)
        return out

    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    generator, rng = torch.Generator().manual_seed(1), np.random.default_rng(1)
    every = max(25, args.steps // 10)
    setting = {"data": args.data, "t_min": args.t_min, "high_share": args.high_share, "high_from": args.high_from,
               "lr": args.lr, "init": str(args.init or "scratch")}
    print(json.dumps({**setting, "step": 0, "response": responses()}), flush=True)
    started = time.time()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 20)
        if args.data.startswith("grammar"):
            specs = sample_specs(rng, BATCH, POSITION_ALWAYS_STATED)
            if args.data == "grammar-red-white":
                specs = [replace(s, colour="red", background="white") for s in specs]
            x0, ids = as_tensor(sample_images(specs, rng)), token_ids(s.text() for s in specs)
        else:
            which = torch.randint(0, 2, (BATCH,), generator=generator)
            pick = torch.randint(0, RENDERS, (BATCH,), generator=generator)
            x0, ids = torch.stack([pool[w][i] for w, i in zip(which.tolist(), pick.tolist())]), pair_ids[which]
        noise = torch.randn(x0.shape, generator=generator)
        timesteps = torch.randint(args.t_min, 1000, (BATCH,), generator=generator)
        if args.high_share:  # drawn only when asked, so runs without it keep their random stream
            high = torch.rand(BATCH, generator=generator) < args.high_share
            timesteps = torch.where(high, torch.randint(args.high_from, 1000, (BATCH,), generator=generator),
                                    timesteps)
        noisy = add_noise(scheduler, x0, noise, timesteps)
        prediction = unet(noisy, timesteps, text_encoder(ids).last_hidden_state).sample
        loss = (prediction - training_target(scheduler, x0, noise, timesteps)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if (step + 1) % every == 0:
            print(json.dumps({**setting, "step": step + 1, "loss": round(loss.item(), 4),
                              "seconds": round(time.time() - started), "response": responses()}), flush=True)


if __name__ == "__main__":
    main()
