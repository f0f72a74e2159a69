"""Diffusion mechanics shared by every stage: forward noising, training targets and sampling."""
