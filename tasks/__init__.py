"""One Prefect task per SAIL stage; each is a thin wrapper of a ``sail_core.stages`` function."""
