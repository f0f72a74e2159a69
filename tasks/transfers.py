"""What a flow's stages and shard runs moved to and from a remote run store, where an operator sees it."""

from __future__ import annotations

from prefect import get_run_logger

from sail_core.io.remote import RunStore, transfer_log


def log_transfers(store: RunStore, what: str) -> dict[str, int]:
    """What a stage or shard run moved to and from the run store: in its log, and one line of the
    host's ``<cache>/transfers.jsonl``."""
    stats = store.stats.as_dict()
    get_run_logger().info("%s: downloaded %d bytes in %d files (%d more from the host cache), uploaded %d bytes in "
                          "%d files (%d already held)", what, stats["bytes_down"], stats["files_down"],
                          stats["from_host_cache"], stats["bytes_up"], stats["files_up"], stats["uploads_skipped"])
    transfer_log(store.stats, what=what, location=store.location)
    return stats
