"""Data: Pick-a-Pic v2 reading, prompt pools and prompt sets, the pair table schema, real images and
their perturbations."""
