"""One batch of each stage through the project's own code, on fake tensors, traced (:mod:`.trace`).

* sampling: :func:`sail_core.algorithm.sampler.sample_latents` (one step of the configured sampler,
  classifier-free guidance as configured) with the policy UNet in ``model.frozen_dtype``;
* ranking: :func:`sail_core.algorithm.reward.denoising_errors` (one batch of ``reward.batch_size``
  (candidate, draw) rows through the policy and the judge's reference);
* DPO: :meth:`sail_core.training.trainer.DpoTrainer._micro_step` (the trainer's forward and backward of
  one micro-batch) with the configured optimizer's state already there (the steady state of a run); the
  optimizer's update and gradient accumulation are added to the trace (:func:`trace_dpo` says how);
* decoding: :meth:`sail_core.models.codec.VaeCodec.decode` (evaluation decodes its samples).

Models are the published architectures (``sail_core.models.architectures``) built on the meta device and
given fake parameters (:func:`fake_component`). Diffusers' schedulers look timesteps up with ``nonzero``,
which fake tensors cannot do: the sampler's scheduler update is replaced by the same arithmetic
(:class:`_TracedStep`).
Accelerate is replaced by :class:`SingleProcess`, which does what accelerate does for one process
(autocast for the configured mixed precision, ``loss.backward()``), so that no global accelerate state
is created and the traced step is the trainer's own.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sail_core.config import ModelConfig, SamplerConfig, TrainConfig
from sail_core.plan.trace import Trace, fake_mode, trace

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Shapes:
    """What a family's UNet sees: latent shape at the configured resolution and the text conditioning."""

    latent: tuple[int, int, int]
    context: tuple[int, int]
    """(tokens, width) of the prompt embeddings (SDXL: both encoders' widths side by side)."""
    pooled: int | None
    vae_downscale: int


def shapes(model: ModelConfig) -> Shapes:
    import json

    from sail_core.models.architectures import architecture

    arch = architecture(model.family)
    root = arch.published
    vae = json.loads((root / "vae" / "config.json").read_text())
    encoders = [json.loads((root / c.subfolder / "config.json").read_text()) for c in arch.components
                if c.kind in ("text_encoder", "text_encoder_projection")]
    downscale = 2 ** (len(vae["block_out_channels"]) - 1)
    side = model.resolution // downscale
    return Shapes((vae["latent_channels"], side, side),
                  (encoders[0]["max_position_embeddings"], sum(e["hidden_size"] for e in encoders)),
                  encoders[-1]["projection_dim"] if model.family == "sdxl" else None, downscale)


class _ShapeCodec:
    """The latent layout of the family's VAE (what ``ModelBundle.latent_shape`` reads)."""

    def __init__(self, s: Shapes) -> None:
        self.latent_channels, self.downscale = s.latent[0], s.vae_downscale


class _TracedStep:
    """A sampler scheduler whose ``step`` does the update's arithmetic on fake tensors: diffusers' DDPM and
    DDIM look the timestep up with ``nonzero`` (a data-dependent shape fake tensors cannot have). The update
    itself is a few latent-sized tensors, beside the UNet's gigabytes."""

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler
        self.timesteps = scheduler.timesteps
        self.init_noise_sigma = scheduler.init_noise_sigma

    def scale_model_input(self, sample: Any, timestep: Any) -> Any:
        return sample

    def step(self, model_output: Any, timestep: Any, sample: Any, **kwargs: Any) -> Any:
        from types import SimpleNamespace

        x0 = sample - 0.5 * model_output  # the same tensors as DDIM's x₀ and direction terms, up to scalars
        return SimpleNamespace(prev_sample=0.9 * x0 + 0.1 * model_output)


def bundle(model: ModelConfig, device: str = "cpu") -> Any:
    """A :class:`~sail_core.models.bundle.ModelBundle` with the published noise schedule and the VAE's latent
    layout; no text encoder (conditionings are tensors of its output shapes)."""
    import torch
    from diffusers import DDPMScheduler

    from sail_core.models.architectures import architecture
    from sail_core.models.bundle import ModelBundle

    class TracedBundle(ModelBundle):
        def sampler_scheduler(self, sampler: SamplerConfig) -> Any:
            return _TracedStep(super().sampler_scheduler(sampler))

    config = DDPMScheduler.load_config(architecture(model.family).published / "scheduler")
    return TracedBundle(model, DDPMScheduler.from_config(config), _ShapeCodec(shapes(model)),  # type: ignore[arg-type]
                        None, torch.device(device))  # type: ignore[arg-type]


def conditioning(model: ModelConfig, n: int) -> Any:
    import torch

    from sail_core.models.conditioning import Conditioning

    s = shapes(model)
    return Conditioning(torch.zeros(n, *s.context), torch.zeros(n, s.pooled) if s.pooled else None)


@contextlib.contextmanager
def default_dtype(dtype: str) -> Any:
    """Build modules directly in ``dtype``: ``Module.to(dtype)`` cannot convert fake parameters in place."""
    import torch

    from sail_core.models.bundle import torch_dtype

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype(dtype))  # type: ignore[arg-type]
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def fake_component(family: str, component: str, dtype: str, prepare: Any = None) -> Any:
    """A published component (``unet``, ``vae``) in ``dtype`` with fake parameters on the CPU: built on the meta
    device (initialising a UNet's weights, even fake ones, takes seconds), then each parameter and buffer
    replaced by a fake tensor of its shape (``prepare(module)`` runs on the meta module first). Call inside
    :func:`fake_mode`."""
    import torch
    from torch._guards import active_fake_mode

    from sail_core.models.architectures import architecture

    mode = active_fake_mode()
    if mode is None:
        raise RuntimeError("fake_component needs an active fake_mode()")
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily(), default_dtype(dtype):  # plain meta tensors while building
        module = architecture(family).build(component, device="meta")
        if prepare is not None:  # e.g. LoRA adapters, added on the meta device (peft moves them with .to())
            prepare(module)
    cpu = torch.device("cpu")
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None:
                fake = mode.fake_tensor_converter.from_meta_and_device(mode, param.detach(), cpu)
                sub._parameters[name] = torch.nn.Parameter(fake, requires_grad=param.requires_grad)
        for name, buffer in list(sub._buffers.items()):
            if buffer is not None:
                sub._buffers[name] = mode.fake_tensor_converter.from_meta_and_device(mode, buffer, cpu)
    return module


def unet(model: ModelConfig, dtype: str) -> Any:
    """The family's UNet (published config) in ``dtype``: call inside :func:`fake_mode`."""
    return fake_component(model.family, "unet", dtype)


class SingleProcess:
    """What ``DpoTrainer`` asks of accelerate, for one process: autocast and backward as accelerate does them."""

    num_processes = 1
    process_index = 0
    is_main_process = True
    scaler = None

    def __init__(self, mixed_precision: str, device_type: str = "cpu") -> None:
        self.mixed_precision = mixed_precision
        self.device_type = device_type

    def prepare(self, *objects: Any) -> tuple[Any, ...]:
        return objects

    def autocast(self) -> Any:
        import torch

        if self.mixed_precision == "no":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.mixed_precision == "bf16" else torch.float16
        return torch.autocast(self.device_type, dtype=dtype)

    def backward(self, loss: Any) -> None:
        loss.backward()

    def no_sync(self, module: Any) -> Any:
        return contextlib.nullcontext()


class FakePairs:
    """``PairDataset``'s interface over fake latents and conditionings of the real shapes."""

    def __init__(self, model: ModelConfig, n: int) -> None:
        self.model, self.n = model, n

    def __len__(self) -> int:
        return self.n

    def batch(self, indices: Sequence[int]) -> tuple[Any, Any, Any]:
        import torch

        s = shapes(self.model)
        k = len(indices)
        return torch.zeros(k, *s.latent), torch.zeros(k, *s.latent), conditioning(self.model, k)


# --- the traced workloads ---------------------------------------------------------------------------

def trace_sampling(model: ModelConfig, sampler: SamplerConfig, images: int) -> Trace:
    """One step of ``sample_latents`` for ``images`` samples (a UNet batch of 2 × images with guidance)."""
    import torch

    from sail_core.algorithm.sampler import sample_latents
    from sail_core.models.bundle import torch_dtype
    from sail_core.models.conditioning import Conditioning
    from sail_core.models.denoisers import TwoUnets

    with fake_mode():
        policy = unet(model, model.frozen_dtype).eval().requires_grad_(False)
        b = bundle(model)
        cond = conditioning(model, images)
        uncond = Conditioning(torch.zeros_like(cond.prompt_embeds[:1]),
                              None if cond.pooled is None else torch.zeros_like(cond.pooled[:1]))
        one_step = sampler.model_copy(update={"steps": 1, "batch_size": images})
        predict = TwoUnets(policy, None).policy
        return trace(lambda _: sample_latents(predict, b, cond, uncond, list(range(images)), one_step,
                                              torch_dtype(model.frozen_dtype)), policy)


def _inference_denoisers(model: ModelConfig) -> tuple[Any, list[Any]]:
    """Ranking's policy and reference: two UNets in ``frozen_dtype`` (full fine-tuning) or one UNet whose
    adapters are the two views (LoRA: the adapters' memory is left out, under 1% of the UNet)."""
    from sail_core.models.denoisers import AdapterViews, TwoUnets

    if model.train_mode == "full":
        policy = unet(model, model.frozen_dtype).eval().requires_grad_(False)
        reference = unet(model, model.frozen_dtype).eval().requires_grad_(False)
        return TwoUnets(policy, reference), [policy, reference]
    base = unet(model, model.frozen_dtype).eval().requires_grad_(False)
    return AdapterViews(base, [], []), [base]


def trace_ranking(model: ModelConfig, rows: int) -> Trace:
    """``denoising_errors`` on one batch of ``rows`` (candidate, draw) rows: a policy and a reference pass each."""
    import torch

    from sail_core.algorithm.reward import denoising_errors

    with fake_mode():
        denoisers, modules = _inference_denoisers(model)
        b = bundle(model)
        s = shapes(model)
        latents = torch.zeros(rows, *s.latent)
        timesteps = torch.zeros(rows, dtype=torch.long)
        noise = torch.zeros(rows, *s.latent)
        cond = conditioning(model, rows)

        return trace(lambda _: denoising_errors(denoisers, b, latents, timesteps, noise, cond), *modules)


def _training_denoisers(model: ModelConfig, seed: int) -> Any:
    """What ``load_for_training`` returns, built from the published config instead of a folder."""
    import torch

    from sail_core.models.adapters import TRAIN_ADAPTER, add_adapter
    from sail_core.models.denoisers import AdapterViews, TwoUnets

    if model.train_mode == "full":
        policy = unet(model, "float32").train()
        reference = unet(model, model.reference_dtype).eval().requires_grad_(False)
        return TwoUnets(policy, reference)
    def with_adapter(module: Any) -> None:
        module.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            add_adapter(module, TRAIN_ADAPTER, model.lora)

    base = fake_component(model.family, "unet", "float32", with_adapter)
    base.train()
    views = AdapterViews(base, [TRAIN_ADAPTER], [])
    views.use(views.policy_adapters)
    return views


def _steady_state(optimizer: Any, params: list[Any]) -> None:
    """Give the optimizer the state a run's later steps see, set directly (a traced step of a thousand
    parameters costs more than the UNet's forward): AdamW's two moments and step count; Adafactor's
    (transformers, ``beta1=None``) factored row and column second moments of each matrix, the full one of
    each vector, its step and RMS. Any other optimizer takes one step on zero gradients."""
    import torch

    inner = getattr(optimizer, "optimizer", optimizer)
    name = type(inner).__name__
    for p in params:
        if name == "AdamW" and isinstance(inner, torch.optim.AdamW):
            inner.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                              "exp_avg_sq": torch.zeros_like(p)}
        elif name == "Adafactor" and p.dim() >= 2:
            inner.state[p] = {"step": 0, "RMS": 0, "exp_avg_sq_row": p.new_zeros(p.shape[:-1]),
                              "exp_avg_sq_col": p.new_zeros(p.shape[:-2] + p.shape[-1:])}
        elif name == "Adafactor":
            inner.state[p] = {"step": 0, "RMS": 0, "exp_avg_sq": torch.zeros_like(p)}
        else:
            p.grad = torch.zeros_like(p)
    if name not in ("AdamW", "Adafactor"):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def trace_dpo(model: ModelConfig, train: TrainConfig, micro_pairs: int, accumulation: int) -> Trace:
    """One micro-batch of the trainer (``DpoTrainer._micro_step``) at ``micro_pairs`` pairs.

    The optimizer's update is not traced (it would cost more than the step's forward and backward): its
    state exists from the start, and its update runs beside every weight, gradient and state byte with a
    transient of about two of the largest parameter's size (fused AdamW's on a GPU is smaller; Adafactor's
    update and its square of the largest matrix). With gradient accumulation every micro-batch after the
    first runs beside the whole gradient, which the traced first one builds up during its backward: the
    trace adds the gradient bytes not yet there at its peak."""

    from sail_core.training.trainer import DpoTrainer

    cfg = train.model_copy(update={"micro_batch_pairs": micro_pairs, "effective_batch_pairs": micro_pairs,
                                   "max_steps": 2})
    with fake_mode(), tempfile.TemporaryDirectory() as steps_dir:
        denoisers = _training_denoisers(model, train.seed)
        b = bundle(model)
        trainer = DpoTrainer(b, denoisers, FakePairs(model, 2 * micro_pairs), cfg, steps_dir,
                             accelerator=SingleProcess(cfg.mixed_precision))  # type: ignore[arg-type]
        params = denoisers.trainable_parameters()
        _steady_state(trainer.optimizer, params)
        modules = [denoisers.policy_unet] + ([denoisers.reference_unet] if hasattr(denoisers, "reference_unet")
                                             else [])
        result = trace(lambda _: trainer._micro_step(1, 0), *modules, trainer.optimizer)
        gradients = sum(p.numel() * p.element_size() for p in params)
        transient = 2 * max(p.numel() * p.element_size() for p in params)
    update = result.end_bytes + transient
    if update > result.peak_bytes:  # the optimizer's update is the peak (small micro-batches)
        result = Trace(result.flops, update, {**result.at_end, "Update": transient}, result.end_bytes, result.at_end)
    if accumulation <= 1:
        return result
    missing = gradients - result.at_peak.get("Gradient", 0)
    return Trace(result.flops, result.peak_bytes + missing, {**result.at_peak, "Gradient": gradients},
                 result.end_bytes, result.at_end)


def trace_decode(model: ModelConfig, images: int) -> Trace:
    """``VaeCodec.decode`` of ``images`` latents with the family's VAE in ``frozen_dtype``."""
    import torch

    from sail_core.models.codec import VaeCodec

    with fake_mode():
        vae = fake_component(model.family, "vae", model.frozen_dtype)
        codec = VaeCodec(vae.eval().requires_grad_(False))
        latents = torch.zeros(images, *shapes(model).latent)
        return trace(lambda _: codec.decode(latents), vae)


def frozen_parts_bytes(model: ModelConfig) -> int:
    """Text encoders and VAE, which every stage's process holds on the device (``ModelBundle``), in
    ``frozen_dtype``: parameters counted on the meta device."""
    from sail_core.models.architectures import architecture

    counts = architecture(model.family).parameter_counts()
    return sum(n for name, n in counts.items() if name != "unet") * DTYPE_BYTES[model.frozen_dtype]


def unet_parameters(model: ModelConfig) -> int:
    from sail_core.models.architectures import architecture

    return sum(p.numel() for p in architecture(model.family).build("unet").parameters())
