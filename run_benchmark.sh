#!/usr/bin/env bash
# GP2BM benchmark driver: ./run_benchmark.sh {all|resnet|bert|demo|preflight|report|package|score} [options]
#   ./run_benchmark.sh demo                      the whole flow on CPU with demo data (5 ResNet + 10 BERT runs) -> DEMO
#   ./run_benchmark.sh all --system=8xgpu --org=ACME --status="Available on-premise" \
#       --resnet_data_dir=... --bert_data_dir=... --bert_eval_dir=... --bert_init_checkpoint=...
#   multi-node: add --hosts=node1:8,node2:8 (or --hostfile=F, or --launcher=slurm inside an allocation)
#   ./run_benchmark.sh score VENDOR_TREE...         an evaluator scores and ranks vendors' MLPerf results
# Rerunning the same command continues an interrupted set; --new starts a new one. --help lists every option.
# All logic lives in Python (tf_gp2bm/driver); this script only picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec "$PY" -m tf_gp2bm.driver "$@"
