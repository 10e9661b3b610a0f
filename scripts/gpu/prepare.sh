#!/usr/bin/env bash
# Stages everything one call on the lent GPU machine needs (it has JAX and PyTorch, no TensorFlow) in .gpubench/:
# our train steps exported as HLO at the closed flagfiles' per-GPU batches, the step timer, the PyTorch peers and
# measure.sh. Run here, where TensorFlow is; the exports trace but do not run the steps.
#
#   bash scripts/gpu/prepare.sh [--kernels=MODULE]   # writes .gpubench/ (git-ignored) and .gpubench/measure.sh
#   then, on the device machine, carrying .gpubench:  bash .gpubench/measure.sh   (figures in $OUT)
#   bash scripts/gpu/prepare.sh --dry                # tiny exports, then the whole measure.sh here on the CPU
#
# --kernels=MODULE adds BERT and ResNet steps with the vendor module. The text form of each export keeps only the
# header and ENTRY parameters the timer reads, and a --kernels export's binary form drops the HLO metadata (op
# names and source lines: only profiles read them), so the folder stays under the device tool's 64 MiB.
# GPUBENCH_DIR: stage there instead of .gpubench. OUT (--dry): where the rehearsal's figures go (default $STAGE/out).
# --dry: PYTHON_JAX names a Python that imports jax (default: the venv's python; PYTHONPATH may add a jax).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
DRY=0 KERNELS=""
for arg in "$@"; do
  case $arg in
    --dry) DRY=1 ;;
    --kernels=*) KERNELS=${arg#--kernels=} ;;
    *) echo "prepare.sh: unknown argument $arg (expected --dry or --kernels=MODULE)" >&2; exit 2 ;;
  esac
done
STAGE=${GPUBENCH_DIR:-.gpubench}  # GPUBENCH_DIR: another staging folder (the tests stage in a temporary one)
rm -rf "$STAGE" && mkdir -p "$STAGE"
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2
STEPS=()  # name:batch, in the order measure.sh runs them

export_step() {  # name, batch, strip metadata (0/1), bench flags...
  local name=$1 batch=$2 strip=$3
  shift 3
  echo "[prepare] $name"
  "$PY" -m tf_gp2bm.bench "$@" --xla --export_only --export_hlo="$STAGE/$name" | grep -v "^\[bench\]\|^exported" || true
  [ -f "$STAGE/$name.hlo.pb" ] || { echo "prepare.sh: exporting $name failed" >&2; exit 1; }
  "$PY" scripts/gpu/rewrite_copies.py "$STAGE/$name.hlo.pb" "$strip"
  # The timer reads only the header (aliasing) and the ENTRY parameters from the text form; the rest of it (150 MB
  # for BERT-large) would not fit the 64 MiB the device tool carries.
  "$PY" - "$STAGE/$name.hlo.txt" <<'TRIM'
import re, sys
path = sys.argv[1]
text = open(path).read()
entry = text[text.index("\nENTRY") + 1:]
entry = entry[:entry.index("\n}")].splitlines()
keep = [text[:text.index("\n")], entry[0]] + [line for line in entry[1:] if re.search(r" parameter\(\d+\)", line)]
open(path, "w").write("\n".join(keep) + "\n}\n")
TRIM
  STEPS+=("$name:$batch")
}

if [ $DRY = 1 ]; then  # the smoke flagfiles' tiny models, the same code path
  export_step resnet_b4_fp32 4 0 --task=resnet --flagfile=flags/resnet/smoke.flags --global_batch_size=4
  export_step bert_b4_fp32 4 0 --task=bert --flagfile=flags/bert/smoke.flags --global_batch_size=4
  [ -n "$KERNELS" ] && export_step bert_b4_fp32_kernels 4 1 --task=bert --flagfile=flags/bert/smoke.flags \
    --global_batch_size=4 --kernels="$KERNELS"
  PEERS="--device=cpu --tiny --steps=2 --warmup=1"
else
  # ResNet: the 8-GPU flagfile's 3264 / 8 = 408 per GPU, bf16; fp16 with loss scaling.
  export_step resnet_b408_bf16 408 0 --task=resnet --flagfile=flags/resnet/8xgpu.flags --global_batch_size=408
  export_step resnet_b408_fp16 408 0 --task=resnet --flagfile=flags/resnet/8xgpu.flags --global_batch_size=408 \
    --precision=fp16
  # BERT: the 8-GPU flagfile's micro-batch (448 / 8 GPUs / 2 accumulation steps = 28).
  export_step bert_b28_bf16 28 0 --task=bert --flagfile=flags/bert/8xgpu.flags --global_batch_size=28 \
    --accumulation_steps=1
  if [ -n "$KERNELS" ]; then
    export_step resnet_b408_bf16_kernels 408 1 --task=resnet --flagfile=flags/resnet/8xgpu.flags \
      --global_batch_size=408 --kernels="$KERNELS"
    export_step bert_b28_bf16_kernels 28 1 --task=bert --flagfile=flags/bert/8xgpu.flags --global_batch_size=28 \
      --accumulation_steps=1 --kernels="$KERNELS"
  fi
  # 56 without accumulation: the likely out-of-memory step, so measure.sh runs it last.
  export_step bert_b56_bf16 56 0 --task=bert --flagfile=flags/bert/8xgpu.flags --global_batch_size=56 \
    --accumulation_steps=1
  PEERS="--resnet_batch=408"
fi

cp scripts/gpu/step_timer.py scripts/gpu/torch_peers.py scripts/gpu/table.py "$STAGE/"
{
  echo '#!/usr/bin/env bash'
  echo '# On the GPU machine (written by scripts/gpu/prepare.sh): every figure in one call, teed to $OUT.'
  echo '# Each step runs in its own process under its own timeout, the likely out-of-memory step last.'
  echo 'set -uo pipefail'
  echo 'HERE=$(cd "$(dirname "$0")" && pwd)'
  echo 'OUT=${OUT:-$HERE/out}; mkdir -p "$OUT"'
  echo 'PY=${PYTHON_JAX:-python3} STEP_TIMEOUT=${STEP_TIMEOUT:-150}'
  echo 'TIMER_FLAGS=${TIMER_FLAGS:-}'
  echo "PEERS=\"$PEERS\""
  echo 'exec > >(tee -a "$OUT/measure.log") 2>&1'
  echo 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU: CPU rehearsal"'
  echo '"$PY" -c "import jax, jaxlib, numpy; print(\"jax\", jax.__version__, \"jaxlib\", jaxlib.__version__, \"numpy\", numpy.__version__)"'
  echo 'peers() {  # batch of the BERT peer'
  echo '  if "$PY" -c "import torch" 2>/dev/null; then'
  echo '    timeout "$STEP_TIMEOUT" "$PY" "$HERE/torch_peers.py" $PEERS --bert_batch="$@" --out="$OUT" || echo "torch peers b$1: failed or timed out (exit $?)"'
  echo '  else echo "torch peers: torch is not importable here, skipped"; fi'
  echo '}'
  for step in "${STEPS[@]}"; do
    name=${step%%:*} batch=${step##*:}
    [[ $name == bert_b56* ]] && echo 'peers 28'
    echo "XLA_PYTHON_CLIENT_PREALLOCATE=false timeout \"\$STEP_TIMEOUT\" \"\$PY\" \"\$HERE/step_timer.py\" \"\$HERE/$name.hlo.pb\" --batch=$batch --out=\"\$OUT\" \$TIMER_FLAGS || echo \"$name: failed, timed out or not finite (exit \$?)\""
  done
  [ $DRY = 1 ] && echo 'peers 4' || echo 'peers 56 --only=bert'
  echo '"$PY" "$HERE/table.py" "$OUT"'
} > "$STAGE/measure.sh"
chmod +x "$STAGE/measure.sh"
du -sh "$STAGE"  # the device tool carries at most 64 MiB
if [ $DRY = 1 ]; then
  echo "[prepare] dry: running $STAGE/measure.sh on this CPU"
  OUT=${OUT:-$STAGE/out} TIMER_FLAGS="--steps=2 --allow_any_jax" JAX_PLATFORMS=cpu PYTHON_JAX=${PYTHON_JAX:-$PY} \
    bash "$STAGE/measure.sh"
else
  echo "[prepare] done: carry $STAGE to the device machine and run: bash $STAGE/measure.sh"
fi
