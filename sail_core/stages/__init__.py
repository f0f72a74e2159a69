"""The SAIL stages as plain functions over a run directory.

Each stage reads earlier artifacts, writes its own atomically, and returns a small record (paths
relative to the run directory, content hashes, counts, metrics). Long stages resume from what they
already wrote: generation by shard, training by step checkpoint. The orchestration layer
(``tasks/``, ``flows/``) calls these and nothing else.
"""
