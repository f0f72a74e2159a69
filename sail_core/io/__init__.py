"""File formats and places: atomic writes, Parquet tables, safetensors shards, ``pkg:`` paths and
remote run stores."""
