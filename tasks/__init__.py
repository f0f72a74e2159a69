"""The Prefect layer: one generic task that runs any declared stage (``stage_task``), the flow's handle
on a run (``PipelineRun``), progress and result artifacts for the UI, and fault injection for tests."""
