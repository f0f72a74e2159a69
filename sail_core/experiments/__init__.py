"""Measurements of SAIL beyond a run's own evaluation: specs of multi-seed experiments, the
self-reward's accuracy on held-out human labels, and how well self-ranking agrees with a judge."""
