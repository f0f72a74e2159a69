#!/usr/bin/env bash
# Where workers get the code from, printed for prefect.yaml's build steps (run by `prefect deploy`):
#   code-source.sh repository  ->  $SAIL_CODE_REPOSITORY, else this checkout's path (workers on this host)
#   code-source.sh commit      ->  the commit this checkout is at (every worker runs exactly that commit)
#   code-source.sh workdir     ->  $SAIL_WORKDIR, else this checkout's path: where deployment runs keep their
#                                  runs and find relative data paths (a worker's own SAIL_WORKDIR wins)
# Uncommitted changes do not reach the workers: a warning says so.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  repository) echo "${SAIL_CODE_REPOSITORY:-$(git rev-parse --show-toplevel)}" ;;
  commit)
    if ! git diff --quiet HEAD -- 2>/dev/null; then
      echo "warning: uncommitted changes are not deployed; workers run commit $(git rev-parse --short HEAD)" >&2
    fi
    git rev-parse HEAD ;;
  workdir)
    dir="${SAIL_WORKDIR:-$(git rev-parse --show-toplevel)}"
    [[ "$dir" == /* ]] || { echo "SAIL_WORKDIR must be an absolute path, got '$dir'" >&2; exit 2; }
    echo "$dir" ;;
  *) echo "usage: $0 repository|commit|workdir" >&2; exit 2 ;;
esac
