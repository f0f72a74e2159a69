"""Diffusion models: loading SD1.5 / SDXL / the embedded world, prompt conditioning, latent codecs,
policy/reference views for full fine-tuning and LoRA, and tiny random models for tests."""
