#!/usr/bin/env bash
# Stages everything one call on the lent GPU machine needs (it has JAX and PyTorch, no TensorFlow) in .gpubench/:
# our train steps exported as HLO at the closed flagfiles' per-GPU batches and the variants worth comparing, the
# project's step timer (scripts/gpu/step_timer.py), and the PyTorch peers. Run here, where TensorFlow is; the
# exports trace but do not run the steps.
#
#   bash scripts/gpu/prepare.sh          # writes .gpubench/ (git-ignored) and .gpubench/measure.sh
#   then, on the device machine, carrying .gpubench:  bash .gpubench/measure.sh
#   bash scripts/gpu/prepare.sh --kernels=MODULE   # adds the BERT (28 packed rows) and ResNet (408) steps with MODULE
#   bash scripts/gpu/prepare.sh --dry    # tiny exports (flags/*/smoke.flags) to rehearse measure.sh --dry on a CPU
#
# GPUBENCH: the folder to write (default .gpubench in the repository).
set -euo pipefail
cd "$(dirname "$0")/../.."
DRY=0 KERNELS=""
for arg in "$@"; do
  case $arg in
    --dry) DRY=1 ;;
    --kernels=*) KERNELS=${arg#--kernels=} ;;  # also the BERT and ResNet steps with this vendor kernel module
    *) echo "prepare.sh: unknown argument $arg (expected --dry or --kernels=MODULE)" >&2; exit 2 ;;
  esac
done
OUT=${GPUBENCH:-.gpubench}
PY=${PYTHON:-.venv/bin/python}
rm -rf "$OUT"
mkdir -p "$OUT"
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2
: > "$OUT/order.txt"

export_step() {  # name, task, bench flags... [-- prepare_step.py flags...]
  local name=$1 task=$2 bench=() step=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do bench+=("$1"); shift; done
  [ $# -gt 0 ] && shift && step=("$@")
  local precision=bf16 a  # the step's precision, for its PyTorch peer: a later flag wins over the flagfile's
  for a in "${bench[@]}"; do
    case $a in
      --flagfile=*) precision=$(sed -n 's/^--precision=//p' "${a#--flagfile=}" | tail -n 1) ;;
      --precision=*) precision=${a#--precision=} ;;
    esac
  done
  echo "[prepare] $name"
  "$PY" -m tf_gp2bm.bench --task="$task" "${bench[@]}" --export_only --export_hlo="$OUT/$name" \
    | grep -v "^\[bench\]" || true
  [ -f "$OUT/$name.hlo.pb" ] || { echo "prepare.sh: exporting $name failed" >&2; exit 1; }
  # A vendor module's export loses its HLO metadata (op names, source lines; only profiles read them), about a third
  # of its size, so the folder with --kernels stays under the device tool's 64 MiB.
  [[ $name == *_kernels ]] && step+=(--strip_metadata)
  "$PY" scripts/gpu/prepare_step.py "$OUT/$name" --task="$task" --precision="${precision:-bf16}" "${step[@]}"
  echo "$name" >> "$OUT/order.txt"  # measure.sh times the steps in this order
}

if [ $DRY = 1 ]; then
  export_step resnet_smoke resnet --flagfile=flags/resnet/smoke.flags --xla
  export_step bert_smoke bert --flagfile=flags/bert/smoke.flags --xla
  export_step bert_packed_smoke bert --flagfile=flags/bert/smoke.flags --xla --packed --packing_factor=2.0 \
    --global_batch_size=64 -- --packing_factor=2.0
  [ -z "$KERNELS" ] || export_step bert_smoke_kernels bert --flagfile=flags/bert/smoke.flags --xla --kernels="$KERNELS"
else
  # ResNet: the 8-GPU flagfile's 3264 / 8 = 408 per GPU, bf16; fp16 with loss scaling; the 256 of the anchor figures.
  export_step resnet_b408_bf16 resnet --flagfile=flags/resnet/8xgpu.flags --global_batch_size=408
  export_step resnet_b408_fp16 resnet --flagfile=flags/resnet/8xgpu.flags --global_batch_size=408 --precision=fp16
  export_step resnet_b256_bf16 resnet --flagfile=flags/resnet/8xgpu.flags --global_batch_size=256
  # BERT: the 8-GPU flagfile's 28 packed rows per GPU (448 sequences / 2.0 per row / 8 GPUs), the unpacked
  # flagfile's micro-batch of 28 sequences (not with --kernels: the folder must stay under 64 MiB), the vendor's
  # steps at the same batches, and 56 packed rows without accumulation (does it fit?) last, as the likely
  # out-of-memory step, so that it cannot hide the others' figures.
  export_step bert_packed_r28_bf16 bert --flagfile=flags/bert/8xgpu.flags --global_batch_size=56 \
    --accumulation_steps=1 -- --packing_factor=2.0
  if [ -z "$KERNELS" ]; then
    export_step bert_b28_bf16 bert --flagfile=flags/bert/8xgpu_unpacked.flags --global_batch_size=28 \
      --accumulation_steps=1
  else
    export_step resnet_b408_bf16_kernels resnet --flagfile=flags/resnet/8xgpu.flags --global_batch_size=408 \
      --kernels="$KERNELS"
    export_step bert_packed_r28_bf16_kernels bert --flagfile=flags/bert/8xgpu.flags --global_batch_size=56 \
      --accumulation_steps=1 --kernels="$KERNELS" -- --packing_factor=2.0
  fi
  export_step bert_packed_r56_bf16 bert --flagfile=flags/bert/8xgpu.flags --global_batch_size=112 \
    --accumulation_steps=1 -- --packing_factor=2.0
fi

cp scripts/gpu/step_timer.py scripts/gpu/torch_peers.py "$OUT/"
cat > "$OUT/measure.sh" <<'MEASURE'
#!/usr/bin/env bash
# On the GPU machine: every figure side by side in one call (written by scripts/gpu/prepare.sh).
#   bash measure.sh [--dry]      # --dry: on a CPU, tiny peers, short timeouts (rehearsal)
# Figures go to $OUT (the device tool brings that folder back; default: out/ beside this script): one JSON per step,
# versions.json, measure.log, and table.txt, the one-screen summary printed last. Each step has its own timeout
# (STEP_TIMEOUT), and all of it fits BUDGET seconds: a step that would start with too little left is marked so.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DRY=0
[ "${1:-}" = --dry ] && DRY=1
RESULTS=${OUT:-$HERE/out}
PY=${PYTHON:-python3}
STEP_TIMEOUT=${STEP_TIMEOUT:-$([ $DRY = 1 ] && echo 120 || echo 150)}
BUDGET=${BUDGET:-540}  # seconds for the whole script: the device tool stops a command at 600
PEERS_RESERVE=$([ $DRY = 1 ] && echo 0 || echo 120)  # kept for the PyTorch peers when steps run long
left() { echo $((BUDGET - SECONDS - ${1:-0})); }  # seconds of the budget left, less a reserve
limit() {  # the timeout for the next command: its own, or what is left of the budget (less a reserve)
  local left
  left=$(left "${1:-0}")
  echo $((left < STEP_TIMEOUT ? left : STEP_TIMEOUT))
}
STEPS=$([ $DRY = 1 ] && echo 3 || echo 20)
mkdir -p "$RESULTS"
log() { tee -a "$RESULTS/measure.log"; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | log
# Fail fast, before any compile, when this JAX cannot run the timer.
if ! "$PY" "$HERE/step_timer.py" --versions > "$RESULTS/versions.json"; then
  echo "measure.sh: the step timer cannot run here (above)" | log
  exit 3
fi
"$PY" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null | log
cat "$RESULTS/versions.json" | log
export XLA_PYTHON_CLIENT_PREALLOCATE=false
while read -r step; do  # one process each, with its own timeout: an out-of-memory or hung step stops only itself
  t=$(limit "$PEERS_RESERVE")
  if [ "$(left "$PEERS_RESERVE")" -lt 10 ]; then
    echo "$step: skipped, ${BUDGET}s budget spent" | log
    echo "{\"step\": \"$step\", \"status\": \"no time left\"}" > "$RESULTS/$step.json"
    continue
  fi
  timeout "$t" "$PY" "$HERE/step_timer.py" "$HERE/$step.step.json" --steps="$STEPS" --out="$RESULTS" \
    < /dev/null > "$RESULTS/$step.log" 2>&1
  rc=$?
  tail -n 1 "$RESULTS/$step.log" | log
  if [ $rc -ne 0 ] && [ ! -f "$RESULTS/$step.json" ]; then
    why=$([ $rc = 124 ] && echo "timeout ${t}s" || echo "exit $rc")
    grep -m1 -o "RESOURCE_EXHAUSTED.\{0,80\}" "$RESULTS/$step.log" | log
    echo "{\"step\": \"$step\", \"status\": \"$why\"}" > "$RESULTS/$step.json"
  fi
done < "$HERE/order.txt"
# The PyTorch peers (torch_peers.py: LARS / LAMB, packed rows with a block-diagonal mask), one per distinct step
# configuration (a vendor step shares its base step's), each in its own process under its own timeout: eager at
# every batch first, then torch.compile'd at the first ResNet and BERT step (the flagfiles' batches), time allowing.
peer() {  # peer, step, [--compile]
  local name=$1 step=$2 mode=eager file rc t why
  shift 2
  [ "${1:-}" = --compile ] && mode=compiled
  file=torch_$name$([ $mode = compiled ] && echo _compiled)
  t=$(limit)
  if [ "$(left)" -lt 10 ]; then
    echo "$file: skipped, ${BUDGET}s budget spent" | log
    why="no time left"
  else
    timeout "$t" "$PY" "$HERE/torch_peers.py" --like="$HERE/$step.step.json" --out="$RESULTS" "${PEER_FLAGS[@]}" "$@" \
      < /dev/null > "$RESULTS/$file.log" 2>&1
    rc=$?
    tail -n 1 "$RESULTS/$file.log" | log
    why=$([ $rc = 124 ] && echo "timeout ${t}s" || echo "exit $rc")
  fi
  [ -f "$RESULTS/$file.json" ] \
    || echo "{\"peer\": \"$name\", \"mode\": \"$mode\", \"status\": \"$why\"}" > "$RESULTS/$file.json"
}
if "$PY" -c 'import torch' 2>/dev/null; then
  PEER_FLAGS=()
  [ $DRY = 1 ] && PEER_FLAGS=(--device=cpu --tiny --warmup=1 --steps=2)
  # "peer step task" for each distinct peer, in measure order
  mapfile -t peers < <("$PY" -c 'import json, os, sys
seen = set()
for step in open(sys.argv[1]).read().split():
  spec = json.load(open(os.path.join(os.path.dirname(sys.argv[1]), step + ".step.json")))
  if spec["peer"] not in seen:
    seen.add(spec["peer"])
    print(spec["peer"], step, spec["task"])' "$HERE/order.txt")
  for line in "${peers[@]}"; do
    read -r name step task <<< "$line"
    peer "$name" "$step"
  done
  if [ $DRY = 0 ]; then  # torch.compile compiles for minutes on a CPU: not in --dry
    compiled=""
    for line in "${peers[@]}"; do
      read -r name step task <<< "$line"
      [[ $compiled == *"$task"* ]] && continue
      compiled+=" $task"
      peer "$name" "$step" --compile
    done
  fi
else
  echo "torch peers: skipped (no torch)" | log
fi
"$PY" "$HERE/step_timer.py" --table "$RESULTS" --order "$HERE/order.txt" > "$RESULTS/table.txt"
cat "$RESULTS/table.txt"
MEASURE
chmod +x "$OUT/measure.sh"
du -sh "$OUT"
size=$(du -sk "$OUT" | cut -f1)
if [ "$size" -gt $((62 * 1024)) ]; then  # the device tool carries at most 64 MiB
  echo "prepare.sh: $OUT holds ${size} KiB, over the 62 MiB kept under the device tool's 64 MiB; drop a step" >&2
  exit 1
fi
echo "[prepare] done: carry $OUT to the device machine and run: bash $OUT/measure.sh"
