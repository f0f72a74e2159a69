"""One traced call: its FLOPs and its memory peak, by category, without allocating anything.

Inside :func:`fake_mode` every tensor a model or a stage creates is a fake tensor (shape, dtype and
device, no storage), so the real SDXL architecture costs nothing to build. :func:`trace` runs a call
under :class:`LiveMemory`, which counts FLOPs with ``FlopCounterMode``'s formulas (matmuls, convolutions and
attention, forward and backward, as PyTorch counts them) and follows memory the way PyTorch's ``MemTracker``
does (torchtitan's way of estimating memory before a run): every storage from creation to release, so the
peak is the sum of what is alive at the worst moment (parameters, buffers, gradients, optimizer state,
activations saved for backward, temporaries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

CATEGORIES = ("Parameter", "Buffer", "Gradient", "Optstate", "Cast", "Update", "Activation", "Temp", "Other")
"""``Cast``: copies of parameters in another dtype (autocast's bf16 weights); ``Update``: the optimizer update's
transient. Neither grows with the batch."""
STATIC = ("Parameter", "Buffer", "Gradient", "Optstate", "Cast", "Update", "Other")


@dataclass(frozen=True)
class Trace:
    flops: int
    """FLOPs ``FlopCounterMode`` counted over the call."""
    peak_bytes: int
    """The largest total of live tensor bytes during the call (tracked tensors only)."""
    at_peak: dict[str, int] = field(default_factory=dict)
    """Bytes of each category (``CATEGORIES``) at the peak."""
    end_bytes: int = 0
    """Live bytes when the call returned."""
    at_end: dict[str, int] = field(default_factory=dict)

    @property
    def static_bytes(self) -> int:
        """What does not grow with the batch at the peak: weights, their casts, gradients, optimizer state."""
        return sum(self.at_peak.get(k, 0) for k in STATIC)

    @property
    def dynamic_bytes(self) -> int:
        """What grows with the batch: activations and temporaries at the peak."""
        return self.peak_bytes - self.static_bytes


@contextmanager
def fake_mode() -> Iterator[Any]:
    """Fake tensors for everything created inside (real tensors passed in are converted on use)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        yield mode


def attention_flop_formulas() -> dict[Any, Callable[..., int]]:
    """PyTorch's SDPA FLOP formulas for the CPU flash-attention kernels, which ``FlopCounterMode`` does not
    register (it knows the CUDA ones): fake tensors on a CPU take that path, and attention is 10-20% of a
    UNet's FLOPs at 1024²."""
    import torch
    from torch.utils import flop_counter

    def forward(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return flop_counter.sdpa_flop_count(query, key, value)

    def backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
                 **kwargs: Any) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    out: dict[Any, Callable[..., int]] = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        out[aten._scaled_dot_product_flash_attention_for_cpu] = forward
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        out[aten._scaled_dot_product_flash_attention_for_cpu_backward] = backward
    return out


class LiveMemory:
    """A ``TorchDispatchMode`` that follows every storage an operation creates until it is released, by
    category, and keeps the categories at the largest total. The bookkeeping of PyTorch's ``MemTracker``
    (``torch.distributed._tools.mem_tracker``) without its per-module snapshots, which cost ten times the
    trace itself on a UNet of a thousand modules (and refuse frozen parameters): parameters and buffers of
    the modules given, the optimizer's state, gradients (retagged when the autograd engine accumulates
    them), activations (created outside backward), temporaries (created inside backward or an optimizer
    step)."""

    def __init__(self) -> None:
        from torch.utils.weak import WeakIdKeyDictionary

        self.bytes: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.total = 0
        self.peak = 0
        self.at_peak: dict[str, int] = dict(self.bytes)
        self._seen: Any = WeakIdKeyDictionary()
        self._hooks: list[Any] = []
        self._in_step = False
        self._mode: Any = None
        self.flops = 0
        """FLOPs of every operation PyTorch's counter has a formula for (``torch.utils.flop_counter``)."""
        self._formulas: dict[Any, Any] = {}

    def _add(self, tensor: Any, category: str, retag: bool = False) -> None:
        import weakref

        import torch

        if not isinstance(tensor, torch.Tensor):
            return
        storage = tensor.untyped_storage()
        entry = self._seen.get(storage)
        if entry is not None:
            if retag and entry[0] != category:
                self.bytes[entry[0]] -= entry[1]
                self.bytes[category] += entry[1]
                entry[0] = category
            return
        size = storage.nbytes()
        entry = [category, size]
        self._seen[storage] = entry
        self.bytes[category] += size
        self.total += size
        weakref.finalize(storage, self._release, entry)
        if self.total > self.peak:
            self.peak = self.total
            self.at_peak = dict(self.bytes)

    def _is_parameter(self, tensor: Any) -> bool:
        import torch

        if not isinstance(tensor, torch.Tensor):
            return False
        entry = self._seen.get(tensor.untyped_storage())
        return entry is not None and entry[0] == "Parameter"

    def _release(self, entry: list[Any]) -> None:
        self.bytes[entry[0]] -= entry[1]
        self.total -= entry[1]

    def track(self, *objects: Any) -> None:
        """Modules (parameters, buffers, gradients), optimizers (state) and tensors that exist before the call."""
        import torch

        for obj in objects:
            if isinstance(obj, torch.nn.Module):
                for p in obj.parameters():
                    self._add(p, "Parameter")
                    if p.grad is not None:
                        self._add(p.grad, "Gradient")
                    if p.requires_grad:
                        self._hooks.append(p.register_post_accumulate_grad_hook(
                            lambda q: self._add(q.grad, "Gradient", retag=True)))
                for b in obj.buffers():
                    self._add(b, "Buffer")
            elif isinstance(obj, torch.optim.Optimizer):
                self._track_state(obj)
            elif isinstance(obj, torch.Tensor):
                self._add(obj, "Other")

    def _track_state(self, optimizer: Any) -> None:
        import torch

        for state in optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    self._add(value, "Optstate", retag=True)

    def __enter__(self) -> LiveMemory:
        import torch
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry, shape_wrapper

        tracker = self
        formulas = {**flop_registry, **{k: shape_wrapper(v) for k, v in attention_flop_formulas().items()}}

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                formula = formulas.get(func._overloadpacket)
                if formula is not None:
                    tracker.flops += formula(*args, **kwargs, out_val=out)
                backward = torch._C._current_graph_task_id() != -1
                category = "Temp" if backward or tracker._in_step else "Activation"
                if func is torch.ops.aten._to_copy.default and tracker._is_parameter(args[0]):
                    category = "Cast"
                for t in (out if isinstance(out, (tuple, list)) else (out,)):
                    tracker._add(t, category)
                return out

        def pre(optimizer: Any, *_: Any) -> None:
            self._in_step = True

        def post(optimizer: Any, *_: Any) -> None:
            self._in_step = False
            self._track_state(optimizer)

        self._hooks += [register_optimizer_step_pre_hook(pre), register_optimizer_step_post_hook(post)]
        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


def trace(call: Callable[[LiveMemory], Any], *external: Any) -> Trace:
    """Run ``call`` once under :class:`LiveMemory`, which also counts FLOPs with ``FlopCounterMode``'s
    formulas (one dispatch mode instead of two: a trace of SDXL is thousands of operations). ``external``
    are the modules, optimizers and tensors that exist before the call (their memory counts from the start)."""
    memory = LiveMemory()
    memory.track(*external)
    with memory:
        call(memory)
    return Trace(int(memory.flops), memory.peak, dict(memory.at_peak), memory.total, dict(memory.bytes))
