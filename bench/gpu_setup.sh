# Sourced by the GPU scripts (gpu_check.sh, world_pretrain_gpu.sh): says what the machine is and installs,
# from the carried wheels, only what the project imports and the machine lacks.
#
#   gpu_setup    # after setting PY (array), WHEELHOUSE and SITE; returns 3-5 with a line saying why
#   gpu_run MODULE ARGS...   # python -m MODULE --budget-s B ARGS... within what is left of LIMIT_S
#
# 1. prints the interpreter, nvidia-smi's view of the GPU and torch's CUDA build;
# 2. python -m bench.gpu_env plan WHEELHOUSE lists the wheels to install; pip installs them into SITE
#    (--no-index: the machine may reach no package index) and PYTHONPATH gains SITE;
# 3. python -m bench.gpu_env verify imports everything.

gpu_setup() {
  say "python: $("${PY[@]}" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv
  else
    say "nvidia-smi: not found"
  fi
  "${PY[@]}" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())' \
    || { say "stopping: torch does not import"; return 3; }

  local wheels
  wheels=$("${PY[@]}" -m bench.gpu_env plan "$WHEELHOUSE") || { say "stopping: a package is missing (MISSING lines above)"; return 3; }
  if [ -n "$wheels" ]; then
    say "installing $(echo "$wheels" | wc -l) wheel(s) into $SITE"
    # shellcheck disable=SC2086  # one path a line, no spaces in wheel names
    "${PY[@]}" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" $wheels \
      || { say "stopping: pip install from $WHEELHOUSE failed"; return 4; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  fi
  "${PY[@]}" -m bench.gpu_env verify || { say "stopping: an import fails (FAILED lines above)"; return 5; }
}

# The module's budget only stops new work from starting; timeout ends what still runs at the limit.
gpu_run() {
  local module=$1; shift
  local left=$((LIMIT_S - SECONDS - 15))
  say "running $module: ${left} s left"
  timeout --kill-after=10 "$left" "${PY[@]}" -m "$module" --budget-s $((left - 20)) "$@"
}
