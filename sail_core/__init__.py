"""sail_core: the SAIL algorithm as a plain library (no orchestration code).

Stages (seed preparation, candidate generation, self-reward ranking, mixup, Diffusion-DPO and
evaluation) are functions over files: they read Parquet tables and safetensors tensors and write
new ones atomically. The Prefect layer in ``tasks/`` and ``flows/`` only wires them together.
"""

__version__ = "0.1.0"
