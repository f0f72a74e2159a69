"""The run machinery: where a run's artifacts live, what keys a stage, the record of a finished stage,
the lineage of models, and the one runner that executes a declared stage.

Nothing here knows what a stage computes; ``sail_core.stages`` declares the stages
(:class:`~sail_core.run.stage.Stage`) and ``sail_core.algorithm`` holds the paper's mathematics.
"""
