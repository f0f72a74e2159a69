"""Diffusion-DPO training: the loss, optimizers, step checkpoints and the training loop."""
