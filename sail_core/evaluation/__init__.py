"""Evaluation: the pinned generation protocol, scorers, prompt sets and summaries."""
