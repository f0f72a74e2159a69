"""sail_core: SAIL as a plain library (no orchestration code).

Where things are:

* ``algorithm/``: the paper: sampling (Alg. 1's candidates), the implicit self-reward (Eq. 8-10),
  pair selection, the Diffusion-DPO loss (Eq. 5), ranked-preference mixup (§4.2), the judge's
  reference. Start here to read SAIL.
* ``stages/``: the pipeline's stages, each declared once (name, inputs, what keys it, its work,
  its record); ``run/``: the machinery that executes any declared stage (keys, records,
  bookkeeping, lineage of models, the runner).
* ``models/`` (diffusers loading, conditioning, policy/reference views), ``training/`` (the DPO
  loop, optimizers, step checkpoints), ``data/`` (Pick-a-Pic, prompts, pair tables, real images),
  ``evaluation/`` (protocol, scorers, reports), ``io/`` (atomic files, Parquet, safetensors, paths),
  ``experiments/`` (multi-seed experiments), ``world/`` (the embedded world: a plain preset's model,
  data and judge).

Each floor imports only from the floors below it (``tests/run/test_layering.py`` checks it).
"""

__version__ = "0.1.0"
