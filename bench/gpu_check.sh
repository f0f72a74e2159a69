#!/usr/bin/env bash
# SAIL's three hot loops on the real SD1.5 / SDXL architectures on one NVIDIA GPU, in at most 8 minutes.
#
#   bench/gpu_check.sh              # on the GPU machine (bench/README.md: how to get there, what to carry)
#   bench/gpu_check.sh --dry-run    # tiny shapes on the CPU, the same code path (tests/bench runs it)
#
# 1. says what is there: python, torch and CUDA, nvidia-smi;
# 2. installs, from the wheels carried in bench/wheelhouse (bench/make_wheelhouse.sh), only what the
#    check imports and the machine lacks (bench/gpu_setup.sh), into a scratch folder;
# 3. runs python -m bench.gpu_check, unbuffered, within the time left: JSON lines under
#    $RESULTS_DIR (bench/results) and $OUT, a summary table at the end; the whole log to
#    $OUT/gpu_check.log (or $RESULTS_DIR/gpu-check-<time>.log).
# Options after the script's name go to bench.gpu_check (python -m bench.gpu_check --help).
# Environment: PYTHON (python3), WHEELHOUSE (bench/wheelhouse), RESULTS_DIR (bench/results),
# GPU_CHECK_LIMIT_S (480: the whole script's limit), GPU_CHECK_SITE (where wheels go).
set -uo pipefail
cd "$(dirname "$0")/.."
read -r -a PY <<<"${PYTHON:-python3}"
WHEELHOUSE=${WHEELHOUSE:-bench/wheelhouse}
RESULTS_DIR=${RESULTS_DIR:-bench/results}
LIMIT_S=${GPU_CHECK_LIMIT_S:-480}
SITE=${GPU_CHECK_SITE:-/tmp/sail-gpu-check-site}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error \
  DIFFUSERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
mkdir -p "$RESULTS_DIR"
kind=gpu-check; for arg in "$@"; do [ "$arg" = --dry-run ] && kind=gpu-check-dry-run; done
if [ -n "${OUT:-}" ]; then log=$OUT/gpu_check.log; else log=$RESULTS_DIR/$kind-$(date -u +%Y%m%dT%H%M%SZ).log; fi

say() { echo "gpu_check.sh: $*"; }
# shellcheck source=bench/gpu_setup.sh
source bench/gpu_setup.sh

main() {
  say "started $(date -u +%FT%TZ) in $PWD; limit ${LIMIT_S} s; log $log"
  gpu_setup || return $?

  gpu_run bench.gpu_check --out-dir "$RESULTS_DIR" "$@"
  local rc=$?
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    say "stopped at the time limit; the records written so far:"
    local latest
    latest=$(ls -t "$RESULTS_DIR"/gpu-check-*.jsonl 2>/dev/null | head -n 1)
    [ -n "$latest" ] && "${PY[@]}" -m bench.gpu_check --summarize "$latest"
  fi
  say "finished after ${SECONDS} s with status $rc"
  return $rc
}

main "$@" 2>&1 | tee -a "$log"
exit "${PIPESTATUS[0]}"
