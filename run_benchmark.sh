#!/usr/bin/env bash
# GP2BM benchmark driver: ./run_benchmark.sh {demo|all|resnet|bert|preflight|report|package} [flags]
#   ./run_benchmark.sh demo                      whole flow on CPU with demo data (5 ResNet + 10 BERT runs) -> score
#   ./run_benchmark.sh all --system=8xgpu --org=ACME --status="Available on-premise" \
#       --resnet_data_dir=... --bert_data_dir=... --bert_eval_dir=... --bert_init_checkpoint=...
# Rerunning the same command continues an interrupted set; --new starts a new one. --help lists every flag.
# All logic lives in Python (tf_gp2bm/driver); this script only picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export TF_USE_LEGACY_KERAS=1
exec "$PY" -m tf_gp2bm.driver "$@"
