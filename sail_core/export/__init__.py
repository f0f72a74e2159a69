"""A finished run's model, out of the run: the folder plain diffusers loads, its card, and samples.

=================  ================================================================================
module             what it does
=================  ================================================================================
run_contents       a finished run's config, models and report; which model ``best``/``last`` is
lora_merge         a LoRA lineage (one adapter per round) merged exactly into one adapter
pipeline_folder    diffusers' files: the LoRA (diffusers/Kohya keys), a fused or fine-tuned pipeline
pixel_pipeline     the pipeline of a pixel-space model (no VAE), loadable without the rest of sail
model_card         the ``README.md`` (front matter, lineage, metrics, samples, a load snippet)
exporter           the export folder, written atomically
sampling           images of any model of a run with the run's sampler, one grid
=================  ================================================================================
"""
