#!/usr/bin/env bash
# The wheels bench/gpu_check.sh may install on a GPU machine that reaches no package index.
#
#   bench/make_wheelhouse.sh [DIR]      # default DIR: bench/wheelhouse (ignored by git)
#
# Run it where pip reaches PyPI, then carry DIR with the tree (device tool: carry=["bench/wheelhouse"]).
# gpu_check.sh installs a wheel from here only when the machine lacks that package or has a version
# outside pyproject.toml's range (bench/gpu_env.py), so the list holds what the GPU image was seen
# without (diffusers and its importlib_metadata, pydantic and its parts) and small fall-backs for the
# rest of what the check imports; torch and transformers are too large to carry and must be there.
# Versions: the ones the project's tests run with. GPU_PYTHON_VERSION: the GPU image's python3 (3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-bench/wheelhouse}
read -r -a PY <<<"${PYTHON:-python3}"
pyv=${GPU_PYTHON_VERSION:-3.12}
WHEELS=(
  diffusers==0.42.1 importlib_metadata==10.2.0 zipp==4.1.2
  pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0 typing_inspection==0.4.5 typing_extensions==4.16.0
  peft==0.21.2 accelerate==1.15.0 safetensors==0.8.0
)
mkdir -p "$dir"
"${PY[@]}" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$pyv" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir" "${WHEELS[@]}"
ls -l "$dir"
du -sh "$dir"
