"""Parquet tables: atomic writes and reads that name the file and column on a schema mismatch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sail_core.errors import InputError
from sail_core.io.atomic import atomic_path


def write_table(
    path: str | Path,
    table: pa.Table | Mapping[str, Sequence[Any]],
    *,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a Parquet file atomically; ``metadata`` goes into the schema's key/value metadata."""
    if not isinstance(table, pa.Table):
        table = pa.table(dict(table))
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    with atomic_path(path, overwrite=overwrite) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_table(
    path: str | Path,
    *,
    columns: Iterable[str] | None = None,
    required: Iterable[str] = (),
) -> pa.Table:
    """Read a Parquet file; a missing file or required column raises :class:`InputError`."""
    path = Path(path)
    schema = read_schema(path)
    for name in required:
        if name not in schema.names:
            raise InputError(f"missing column (found: {', '.join(schema.names)})", file=path, column=name)
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({_first_line(exc)})", file=path) from exc


def read_schema(path: str | Path) -> pa.Schema:
    """A Parquet file's schema; a missing, unreadable or non-Parquet file raises :class:`InputError` naming it."""
    path = Path(path)
    if not path.exists():
        raise InputError("file does not exist", file=path)
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({_first_line(exc)})", file=path) from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def table_metadata(path: str | Path) -> dict[str, str]:
    schema = pq.read_schema(path)
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items() if not k.startswith(b"ARROW")}
