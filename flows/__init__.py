"""Prefect flows: ``sail-loop`` (seed DPO then self-amplified rounds)."""
