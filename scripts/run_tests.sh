#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, then runs the whole suite.
#   bash scripts/run_tests.sh                  everything (what CI runs)
#   bash scripts/run_tests.sh -m "not slow"    the edit loop: no training runs, no TensorFlow subprocesses
# Extra arguments go to pytest (markers and test paths: pyproject.toml).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit
# System tools the suite runs for real: strace (no record opened before run_start). The Slurm tests install
# slurm-wlm and munge themselves (tests/slurm_cluster.py).
if ! command -v strace >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[tests] installing strace"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends strace >/dev/null
fi
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
  # pytest's "no tests collected": a filter or a collection problem must not read as a pass.
  echo "run_tests.sh: pytest collected no tests (exit 5); check the arguments: $*" >&2
fi
exit "$status"
