"""Progress of a long stage, shown as a Prefect progress artifact and as a terminal progress bar."""

from __future__ import annotations

import os
import signal
import sys
import time

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from tqdm import tqdm

MIN_INTERVAL_S = 2.0
"""Artifact updates are API calls: at most one every two seconds (and one at the end)."""


class StageProgress:
    def __init__(self, key: str, description: str, kill_after: int | None = None) -> None:
        self.artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)
        self.bar = tqdm(desc=description, unit="it", file=sys.stderr, dynamic_ncols=True, disable=None)
        self.last = 0.0
        self.reported = 0.0
        self.kill_after = kill_after

    def __call__(self, done: int, total: int, metrics: dict[str, float] | None = None) -> None:
        """``metrics`` (training: loss, implicit accuracy) are shown on the terminal bar."""
        if self.kill_after is not None and done >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # fault injection: die mid-stage, leaving no chance to clean up
        if metrics:
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['implicit_accuracy']:.2f}",
                                 refresh=False)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()
        now = time.monotonic()
        if done >= total or now - self.last >= MIN_INTERVAL_S:
            self.last = now
            self._report(100.0 * done / max(1, total))

    def _report(self, percent: float) -> None:
        self.reported = percent
        update_progress_artifact(artifact_id=self.artifact_id, progress=percent)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # a stage that counts its work coarsely (or not at all, like the mix) still ends at 100%
        if exc_type is None and self.reported < 100.0:
            self._report(100.0)
        self.close()
