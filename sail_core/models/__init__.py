"""Diffusion models: loading SD1.5 / SDXL-layout models (the embedded world is one), prompt
conditioning, latent codecs, policy/reference views for full fine-tuning and LoRA, checkpoint specs,
and tiny random models for tests."""
