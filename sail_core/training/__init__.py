"""Diffusion-DPO training: the loop (accelerate), optimizers, step checkpoints, the pair dataset and
multi-process launching. The loss itself is ``sail_core.algorithm.dpo_loss``."""
