"""Datasets: Pick-a-Pic reading, prompt pools, pair tables, mixup and the latent/embedding caches."""
