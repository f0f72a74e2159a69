"""Prompt conditioning for SD1.5-family (one CLIP text encoder) and SDXL (two, plus pooled embeddings).

A :class:`Conditioning` is what the UNet needs besides the noisy latent and the timestep. It is
computed once per prompt and cached as tensors (``prompt_embeds``, ``pooled``), so training and
ranking never re-run the text encoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer


@dataclass(frozen=True)
class Conditioning:
    prompt_embeds: torch.Tensor
    """[B, L, D]: the text encoder's hidden states (SDXL: both encoders' penultimate layers concatenated)."""
    pooled: torch.Tensor | None = None
    """[B, P]: SDXL's pooled projection of the second text encoder; None for SD1.5-family models."""

    def __len__(self) -> int:
        return self.prompt_embeds.shape[0]

    def select(self, index: torch.Tensor | Sequence[int] | slice) -> Conditioning:
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long, device=self.prompt_embeds.device)
        return Conditioning(self.prompt_embeds[index], None if self.pooled is None else self.pooled[index])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Conditioning:
        return Conditioning(
            self.prompt_embeds.to(device, dtype),
            None if self.pooled is None else self.pooled.to(device, dtype),
        )

    @staticmethod
    def cat(parts: Sequence[Conditioning]) -> Conditioning:
        pooled = [p.pooled for p in parts]
        return Conditioning(
            torch.cat([p.prompt_embeds for p in parts]),
            None if pooled[0] is None else torch.cat(pooled),  # type: ignore[arg-type]
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"prompt_embeds": self.prompt_embeds}
        if self.pooled is not None:
            out["pooled"] = self.pooled
        return out

    @staticmethod
    def from_tensors(tensors: dict[str, torch.Tensor]) -> Conditioning:
        return Conditioning(tensors["prompt_embeds"], tensors.get("pooled"))


class PromptEncoder:
    """Encodes prompts the way the model's own pipeline does (no attention mask, as in SD)."""

    def __init__(
        self,
        family: str,
        tokenizers: Sequence[CLIPTokenizer],
        text_encoders: Sequence[CLIPTextModel | CLIPTextModelWithProjection],
        *,
        empty_prompt_zeros: bool = False,
    ) -> None:
        expected = 2 if family == "sdxl" else 1
        if len(tokenizers) != expected or len(text_encoders) != expected:
            raise ValueError(f"{family} needs {expected} tokenizer(s) and text encoder(s)")
        self.family = family
        self.tokenizers = list(tokenizers)
        self.text_encoders = list(text_encoders)
        self.empty_prompt_zeros = empty_prompt_zeros

    @property
    def device(self) -> torch.device:
        return self.text_encoders[0].device

    def _ids(self, tokenizer: CLIPTokenizer, prompts: Sequence[str]) -> torch.Tensor:
        return tokenizer(
            list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        ).input_ids.to(self.device)

    @torch.no_grad()
    def _encode_batch(self, prompts: Sequence[str]) -> Conditioning:
        if self.family != "sdxl":
            hidden = self.text_encoders[0](self._ids(self.tokenizers[0], prompts)).last_hidden_state
            return Conditioning(hidden.float().cpu())
        from transformers import CLIPTextModelWithProjection

        states, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders):
            out = encoder(self._ids(tokenizer, prompts), output_hidden_states=True)
            states.append(out.hidden_states[-2])
            if isinstance(encoder, CLIPTextModelWithProjection):
                pooled = out.text_embeds
        if pooled is None:
            raise ValueError("SDXL's second text encoder must be a CLIPTextModelWithProjection")
        return Conditioning(torch.cat(states, dim=-1).float().cpu(), pooled.float().cpu())

    def encode(self, prompts: Sequence[str], batch_size: int = 64) -> Conditioning:
        """Float32 conditioning on the CPU, one row per prompt."""
        if not prompts:
            raise ValueError("no prompts to encode")
        return Conditioning.cat([self._encode_batch(prompts[i : i + batch_size])
                                 for i in range(0, len(prompts), batch_size)])

    def unconditional(self) -> Conditioning:
        """The one-row negative conditioning used by classifier-free guidance."""
        empty = self.encode([""])
        if not self.empty_prompt_zeros:
            return empty
        return Conditioning(torch.zeros_like(empty.prompt_embeds),
                            None if empty.pooled is None else torch.zeros_like(empty.pooled))
