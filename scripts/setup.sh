#!/usr/bin/env bash
# Creates .venv with the pinned stack and Horovod 0.28.1 (patched for TF 2.20, built once per machine).
#
#   bash scripts/setup.sh            # idempotent: a second run only checks
#   bash scripts/setup.sh --plan     # says what it would install and build (GPU or CPU, wheel cache), installs nothing
#   GP2BM_GPU=auto|1|0               # auto (default): a GPU node is one where nvidia-smi lists a GPU;
#                                    # 1: GPU stack without asking nvidia-smi (docker build); 0: CPU stack
#   GP2BM_NO_HOROVOD=1 bash scripts/setup.sh   # skip Horovod (tf.distribute path only)
#
# GPU node: TensorFlow comes with its CUDA wheels (tensorflow[and-cuda]) and Horovod is built with NCCL against
# the NCCL wheel TensorFlow uses (nvidia-nccl-cu12), so all-reduces run on the GPUs. That build compiles Horovod's
# CUDA kernels with nvcc, which no pip wheel ships: without nvcc setup stops and says so.
# Why the build at all: horovod 0.28.1 is the last release and includes tensorflow/compiler/xla/client/xla_builder.h,
# which TF 2.20 moved to xla/hlo/builder/xla_builder.h. We patch that one line in the registry's sdist, build a wheel
# and cache it under $GP2BM_WHEEL_CACHE (default ~/.cache/tf_gp2bm/wheels), keyed by Horovod, TF, CUDA and NCCL.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${GP2BM_VENV:-.venv}
CACHE=${GP2BM_WHEEL_CACHE:-$HOME/.cache/tf_gp2bm/wheels}
HVD_VERSION=0.28.1
CUDA_MAJOR=12
GPU_MODE=${GP2BM_GPU:-auto}
PLAN=0
[ "${1:-}" = "--plan" ] && PLAN=1

log() { echo "[setup] $*"; }
stop() { echo "[setup] STOP: $*" >&2; exit 2; }

# --- what kind of node ----------------------------------------------------------------------------------------
case "$GPU_MODE" in
  0) gpu=0; gpu_why="GP2BM_GPU=0" ;;
  1) gpu=1; gpu_why="GP2BM_GPU=1" ;;
  auto)
    if ! command -v nvidia-smi >/dev/null; then
      gpu=0; gpu_why="nvidia-smi not found on PATH: CPU node"
    elif smi=$(nvidia-smi -L 2>&1) && grep -q '^GPU ' <<<"$smi"; then
      gpu=1; gpu_why="nvidia-smi lists $(grep -c '^GPU ' <<<"$smi") GPU(s)"
    else
      stop "nvidia-smi is installed but lists no GPU (${smi//$'\n'/ }); fix the driver, or set GP2BM_GPU=0 for a CPU-only stack"
    fi ;;
  *) stop "GP2BM_GPU=$GPU_MODE: expected auto, 1 or 0" ;;
esac

tf_version=$(sed -n 's/^tensorflow==\([^ ;#]*\).*/\1/p' requirements.txt)
[ -n "$tf_version" ] || stop "requirements.txt pins no tensorflow==VERSION"

nvcc_bin=""
if [ "$gpu" = 1 ] && [ "${GP2BM_NO_HOROVOD:-0}" != 1 ]; then
  for c in ${CUDA_HOME:+"$CUDA_HOME/bin/nvcc"} "$(command -v nvcc || true)" /usr/local/cuda/bin/nvcc; do
    if [ -n "$c" ] && [ -x "$c" ]; then nvcc_bin=$c; break; fi
  done
  [ -n "$nvcc_bin" ] || stop "GPU node ($gpu_why) but no nvcc: Horovod's NCCL build compiles CUDA kernels with nvcc, \
and pip's CUDA wheels ship none (nvidia-cuda-nvcc-cu12 holds only ptxas). Install the CUDA 12 compiler \
(e.g. apt-get install cuda-nvcc-12-5, or 'module load cuda/12'), put it on PATH or set CUDA_HOME, and rerun; \
or build the Docker image; GP2BM_GPU=0 installs the CPU-only stack (Horovod would all-reduce through host memory)"
  cuda_version=$("$nvcc_bin" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
  # tensorflow[and-cuda] 2.20 pins the CUDA 12 wheels (nvidia-*-cu12): Horovod's kernels must match them.
  [ "${cuda_version%%.*}" = "$CUDA_MAJOR" ] || stop "$nvcc_bin is CUDA $cuda_version; TensorFlow $tf_version's CUDA \
wheels are CUDA $CUDA_MAJOR, so Horovod must be compiled by a CUDA $CUDA_MAJOR nvcc: put one first on PATH or set CUDA_HOME"
fi

# Horovod wheel cache key: a wheel only fits the TF it was compiled against, and the CUDA/NCCL it links.
wheel_key() {  # tf_version flavor [cuda nccl]
  if [ "$2" = nccl ]; then echo "horovod-$HVD_VERSION-tf$1-cuda$3-nccl$4"; else echo "horovod-$HVD_VERSION-tf$1-cpu"; fi
}

VPY="$VENV/bin/python"
nccl_version() { "$VPY" -m pip show nvidia-nccl-cu12 2>/dev/null | sed -n 's/^Version: //p'; }

if [ "$PLAN" = 1 ]; then
  log "node: $gpu_why"
  if [ "$gpu" = 1 ]; then
    log "tensorflow: tensorflow[and-cuda]==$tf_version (CUDA wheels from pip)"
    nccl=$( [ -x "$VPY" ] && nccl_version || true)
    log "horovod: $HVD_VERSION with NCCL (nvidia-nccl-cu12 ${nccl:-version known after install}), nvcc $nvcc_bin (CUDA $cuda_version)"
    log "wheel cache: $CACHE/$(wheel_key "$tf_version" nccl "$cuda_version" "${nccl:-<version>}")"
  else
    log "tensorflow: tensorflow==$tf_version (CPU)"
    log "horovod: $HVD_VERSION with Gloo only"
    log "wheel cache: $CACHE/$(wheel_key "$tf_version" cpu)"
  fi
  if command -v c++ >/dev/null && [ -f /usr/include/jpeglib.h ]; then
    log "fused image op: will build (c++ and jpeglib.h found)"
  else
    log "fused image op: needs c++ and libjpeg-dev (installed as root with apt-get, else ResNet uses TensorFlow's ops)"
  fi
  exit 0
fi
log "node: $gpu_why"

# --- Python stack -----------------------------------------------------------------------------------------------
if [ ! -x "$VPY" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
[ "$gpu" = 1 ] && want="$want-and-cuda"  # a CPU venv turned GPU gets the CUDA wheels on the next run
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing requirements.txt (about 2 min on a fresh machine)"
  "$VPY" -m pip install -q --upgrade pip
  "$VPY" -m pip install -q -r requirements.txt
  if [ "$gpu" = 1 ]; then
    log "installing tensorflow[and-cuda]==$tf_version: the CUDA/cuDNN/NCCL wheels TensorFlow needs to see the GPUs"
    "$VPY" -m pip install -q "tensorflow[and-cuda]==$tf_version"
  fi
  echo "$want" > "$stamp"
else
  log "requirements already installed"
fi

# --- fused ResNet image op -------------------------------------------------------------------------------------
# One C++ op decodes, crops, flips and resizes each train image (TensorFlow's exact pixels, checked whenever it
# loads) at about 1.7x the reference's images per core. It needs g++ and the libjpeg-turbo headers; without them
# training still runs, on TensorFlow's ops. Built here once per TensorFlow version (cached like the Horovod wheel).
build_jpeg_op() { TF_CPP_MIN_LOG_LEVEL=3 "$VPY" -m tf_gp2bm.tasks.resnet.jpeg_op 2>&1 | grep -v cuInit; }
if [ ! -d tf_gp2bm ]; then
  log "fused image op: no source tree yet (image build); built when the source is copied in"
elif jpeg_out=$(build_jpeg_op); then
  log "${jpeg_out##*$'\n'}"
else
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && { [ ! -f /usr/include/jpeglib.h ] || ! command -v c++ >/dev/null; }; then
    log "installing g++ and libjpeg-dev for the fused image op"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends g++ libjpeg-dev >/dev/null
  fi
  if jpeg_out=$(build_jpeg_op); then
    log "${jpeg_out##*$'\n'}"
  else
    log "WARNING: ${jpeg_out##*$'\n'}"
    log "WARNING: ResNet will make its train images with TensorFlow's ops (the same pixels, about 1.7x the CPU per image)"
  fi
fi

if [ "${GP2BM_NO_HOROVOD:-0}" = 1 ]; then
  log "GP2BM_NO_HOROVOD=1: skipping Horovod; --distribution=auto will use tf.distribute"
  exit 0
fi
if [ "$gpu" = 1 ]; then
  built_check="assert h.gloo_built() and h.nccl_built()"
else
  built_check="assert h.gloo_built()"
fi
if "$VPY" -c "import horovod.tensorflow as h; $built_check" 2>/dev/null; then
  log "horovod already installed: $("$VPY" -c 'import horovod; print(horovod.__version__)')"
  exit 0
fi

installed_tf=$("$VPY" -c "import tensorflow as tf; print(tf.__version__)" 2>/dev/null) \
  || stop "TensorFlow does not import from $VENV; see the pip output above"
[ "$installed_tf" = "$tf_version" ] || stop "$VENV has TensorFlow $installed_tf, requirements.txt pins $tf_version"

if [ "$gpu" = 1 ]; then
  flavor=nccl
  nccl=$(nccl_version)
  [ -n "$nccl" ] || stop "tensorflow[and-cuda] installed no nvidia-nccl-cu12; Horovod has no NCCL to build against"
  nccl_dir=$("$VPY" -c "import nvidia.nccl as n; print(list(n.__path__)[0])")
  [ -f "$nccl_dir/include/nccl.h" ] && [ -f "$nccl_dir/lib/libnccl.so.2" ] \
    || stop "$nccl_dir lacks include/nccl.h or lib/libnccl.so.2 (nvidia-nccl-cu12 $nccl)"
  wheel_dir="$CACHE/$(wheel_key "$tf_version" nccl "$cuda_version" "$nccl")"
else
  flavor=cpu
  wheel_dir="$CACHE/$(wheel_key "$tf_version" cpu)"
fi

if ! ls "$wheel_dir"/horovod-*.whl >/dev/null 2>&1; then
  log "building horovod $HVD_VERSION for TF $tf_version ($flavor); about 6 min on 2 cores, done once per machine"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$VPY" -m pip download -q --no-deps --no-binary :all: -d "$work" "horovod==$HVD_VERSION"
  tar -xzf "$work"/horovod-$HVD_VERSION.tar.gz -C "$work"
  src="$work/horovod-$HVD_VERSION"
  f="$src/horovod/tensorflow/xla_mpi_ops.cc"
  grep -q 'tensorflow/compiler/xla/client/xla_builder.h' "$f" || stop "expected include not found in $f: sdist changed?"
  sed -i 's#tensorflow/compiler/xla/client/xla_builder.h#xla/hlo/builder/xla_builder.h#' "$f"
  gpu_env=()
  if [ "$flavor" = nccl ]; then
    # The wheel has libnccl.so.2 only; the linker wants libnccl.so, so a private folder offers both names.
    # The rpath lets Horovod load the very NCCL TensorFlow uses, without LD_LIBRARY_PATH.
    mkdir -p "$work/nccl/lib"
    ln -s "$nccl_dir/include" "$work/nccl/include"
    ln -s "$nccl_dir/lib/libnccl.so.2" "$work/nccl/lib/libnccl.so"
    gpu_env=(HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_NCCL_HOME="$work/nccl" HOROVOD_NCCL_LINK=SHARED
             HOROVOD_CUDA_HOME="$(dirname "$(dirname "$nvcc_bin")")"
             LDFLAGS="-Wl,-rpath,$nccl_dir/lib ${LDFLAGS:-}")
  fi
  # cmake and build tooling come from the venv's pip so a bare machine needs only gcc/g++.
  "$VPY" -m pip install -q "cmake<4" wheel setuptools
  repo=$(pwd)
  mkdir -p "$wheel_dir.partial"
  ( cd "$src" && env PATH="$repo/$VENV/bin:$PATH" "${gpu_env[@]}" \
      HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
      HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
      MAKEFLAGS="-j$(nproc)" "$repo/$VPY" -m pip wheel -q --no-deps --no-build-isolation -w "$wheel_dir.partial" . )
  # Only a finished wheel enters the cache under its key.
  mkdir -p "$wheel_dir"
  mv "$wheel_dir.partial"/horovod-*.whl "$wheel_dir"/
  rmdir "$wheel_dir.partial"
else
  log "using cached wheel in $wheel_dir"
fi
"$VPY" -m pip install -q --no-deps --force-reinstall "$wheel_dir"/horovod-*.whl
"$VPY" -m pip install -q cloudpickle psutil pyyaml packaging
"$VPY" -c "import horovod.tensorflow as h; $built_check, 'horovod built without ' + ('NCCL' if '$flavor' == 'nccl' else 'Gloo'); print('[setup] horovod', __import__('horovod').__version__, 'gloo ok', 'nccl ok' if h.nccl_built() else '')"
