#!/usr/bin/env bash
# Stages everything one call on the lent GPU machine needs (it has JAX and PyTorch, no TensorFlow) in .gpubench/:
# our train steps exported as HLO at the closed flagfiles' per-GPU batches and the variants worth comparing, the
# shared step timer, and the PyTorch peers. Run here, where TensorFlow is; the exports trace but do not run the steps.
#
#   bash scripts/gpu/prepare.sh                    # writes .gpubench/ (git-ignored) and .gpubench/measure.sh
#   then, on the device machine, carrying .gpubench:  bash .gpubench/measure.sh
#
# GPU_STEP_BENCH: the folder of the shared gpu_step_bench tool (default ../shared/tools/gpu_step_bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
TOOL=${GPU_STEP_BENCH:-../shared/tools/gpu_step_bench}
OUT=.gpubench
PY=${PYTHON:-.venv/bin/python}
[ -f "$TOOL/run.py" ] && [ -f "$TOOL/prepare.py" ] || { echo "prepare.sh: no run.py/prepare.py in $TOOL; set GPU_STEP_BENCH" >&2; exit 2; }
mkdir -p "$OUT"
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2

export_step() {  # name, bench flags...
  local name=$1
  shift
  echo "[prepare] $name"
  "$PY" -m tf_gp2bm.bench "$@" --export_only --export_hlo="$OUT/$name" | grep -v "^\[bench\]" || true
  [ -f "$OUT/$name.hlo.pb" ] || { echo "prepare.sh: exporting $name failed" >&2; exit 1; }
  "$PY" "$TOOL/prepare.py" "$OUT/$name.hlo.pb" >/dev/null
  # run.py reads only the header (aliasing) and the ENTRY parameters from the text form; the rest of it (150 MB
  # for BERT-large) would not fit the 64 MiB the device tool carries.
  "$PY" - "$OUT/$name.hlo.txt" <<'TRIM'
import re, sys
path = sys.argv[1]
text = open(path).read()
entry = text[text.index("\nENTRY") + 1:]
entry = entry[:entry.index("\n}")].splitlines()
keep = [text[:text.index("\n")], entry[0]] + [line for line in entry[1:] if re.search(r" parameter\(\d+\)", line)]
open(path, "w").write("\n".join(keep) + "\n}\n")
TRIM
}

# ResNet: the 8-GPU flagfile's 3264 / 8 = 408 per GPU, bf16; fp16 with loss scaling; the 256 of the anchor figures.
export_step resnet_b408_bf16 --task=resnet --flagfile=flags/resnet/8xgpu.flags --global_batch_size=408
export_step resnet_b408_fp16 --task=resnet --flagfile=flags/resnet/8xgpu.flags --global_batch_size=408 --precision=fp16
export_step resnet_b256_bf16 --task=resnet --flagfile=flags/resnet/8xgpu.flags --global_batch_size=256
# BERT: the 8-GPU flagfile's micro-batch (448 / 8 GPUs / 2 accumulation steps = 28), and 56 without accumulation
# (does it fit?); one micro-batch per exported step.
export_step bert_b28_bf16 --task=bert --flagfile=flags/bert/8xgpu.flags --global_batch_size=28 --accumulation_steps=1
export_step bert_b56_bf16 --task=bert --flagfile=flags/bert/8xgpu.flags --global_batch_size=56 --accumulation_steps=1

cp "$TOOL/run.py" scripts/gpu/torch_peers.py "$OUT/"
cat > "$OUT/measure.sh" <<'MEASURE'
#!/usr/bin/env bash
# On the GPU machine: every figure side by side in one call (written by scripts/gpu/prepare.sh).
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for module in .gpubench/*.hlo.pb; do  # one process each: an out-of-memory module does not stop the others
  XLA_PYTHON_CLIENT_PREALLOCATE=false python3 .gpubench/run.py "$module" || echo "$module: failed (see above)"
done
python3 .gpubench/torch_peers.py --resnet_batch=408 --bert_batch=28
python3 .gpubench/torch_peers.py --resnet_batch=408 --bert_batch=28 --compile
MEASURE
chmod +x "$OUT/measure.sh"
du -sh "$OUT"  # the device tool carries at most 64 MiB
echo "[prepare] done: carry .gpubench to the device machine and run: bash .gpubench/measure.sh"
