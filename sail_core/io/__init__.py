"""File formats: atomic writes, Parquet tables and safetensors tensor shards."""
