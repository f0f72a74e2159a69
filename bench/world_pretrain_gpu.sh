#!/usr/bin/env bash
# Pretraining variants of the embedded world's base model on one NVIDIA GPU, all at once, in at most 5 minutes.
#
#   bench/world_pretrain_gpu.sh              # on the GPU machine (bench/README.md: what to carry)
#   bench/world_pretrain_gpu.sh --dry-run    # two tiny variants on the CPU, the same code path (tests/bench)
#
# 1. says what is there and installs only the carried wheels the machine lacks (bench/gpu_setup.sh);
# 2. runs python -m bench.world_pretrain, unbuffered, within the time left: one model folder per variant
#    under $OUT/world-pretrain (or $RESULTS_DIR/world-pretrain), its newest EMA export, and one JSON line
#    per export in world_pretrain.jsonl there; the whole log to world_pretrain.log beside them.
# Then, on any machine: sail world audit --model <that folder>/<variant>/model
# Options after the script's name go to bench.world_pretrain (python -m bench.world_pretrain --help).
# Environment: PYTHON (python3), WHEELHOUSE (bench/wheelhouse), RESULTS_DIR (bench/results),
# WORLD_PRETRAIN_LIMIT_S (300: the whole script's limit), GPU_CHECK_SITE (where wheels go).
set -uo pipefail
cd "$(dirname "$0")/.."
read -r -a PY <<<"${PYTHON:-python3}"
WHEELHOUSE=${WHEELHOUSE:-bench/wheelhouse}
RESULTS_DIR=${RESULTS_DIR:-bench/results}
LIMIT_S=${WORLD_PRETRAIN_LIMIT_S:-300}
SITE=${GPU_CHECK_SITE:-/tmp/sail-gpu-check-site}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error \
  DIFFUSERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
if [ -n "${OUT:-}" ]; then dir=$OUT/world-pretrain; else dir=$RESULTS_DIR/world-pretrain; fi
mkdir -p "$dir"
log=$dir/world_pretrain.log

say() { echo "world_pretrain_gpu.sh: $*"; }
# shellcheck source=bench/gpu_setup.sh
source bench/gpu_setup.sh

main() {
  say "started $(date -u +%FT%TZ) in $PWD; limit ${LIMIT_S} s; models and log under $dir"
  gpu_setup || return $?
  # the budget stops the variants still running (their newest export stays)
  gpu_run bench.world_pretrain --out-dir "$dir" "$@"
  local rc=$?
  say "finished after ${SECONDS} s with status $rc"
  return $rc
}

main "$@" 2>&1 | tee -a "$log"
exit "${PIPESTATUS[0]}"
