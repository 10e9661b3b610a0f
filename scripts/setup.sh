#!/usr/bin/env bash
# Creates .venv with the pinned stack and Horovod 0.28.1 (patched for TF 2.20, built once per machine).
#
#   bash scripts/setup.sh            # idempotent: a second run only checks
#   GP2BM_NO_HOROVOD=1 bash scripts/setup.sh   # skip Horovod (tf.distribute path only)
#
# Why the build: horovod 0.28.1 is the last release and includes
# tensorflow/compiler/xla/client/xla_builder.h, which TF 2.20 moved to xla/hlo/builder/xla_builder.h.
# We patch that one line in the registry's sdist, build a wheel, and cache it under
# $GP2BM_WHEEL_CACHE (default ~/.cache/tf_gp2bm/wheels), keyed by TF version and GPU support.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${GP2BM_VENV:-.venv}
CACHE=${GP2BM_WHEEL_CACHE:-$HOME/.cache/tf_gp2bm/wheels}
HVD_VERSION=0.28.1

log() { echo "[setup] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing requirements.txt (about 2 min on a fresh machine)"
  "$VPY" -m pip install -q --upgrade pip
  "$VPY" -m pip install -q -r requirements.txt
  echo "$want" > "$stamp"
else
  log "requirements already installed"
fi

if [ "${GP2BM_NO_HOROVOD:-0}" = 1 ]; then
  log "GP2BM_NO_HOROVOD=1: skipping Horovod; --distribution=auto will use tf.distribute"
  exit 0
fi
if "$VPY" -c "import horovod.tensorflow as h; assert h.gloo_built()" 2>/dev/null; then
  log "horovod already installed: $("$VPY" -c 'import horovod; print(horovod.__version__)')"
  exit 0
fi

tf_version=$("$VPY" -c "import tensorflow as tf; print(tf.__version__)" 2>/dev/null)
if command -v nvcc >/dev/null && ls /usr/lib/*/libnccl.so* /usr/local/cuda/lib64/libnccl.so* >/dev/null 2>&1; then
  flavor=nccl
  export HOROVOD_GPU_OPERATIONS=NCCL
else
  flavor=cpu
fi
wheel_dir="$CACHE/horovod-$HVD_VERSION-tf$tf_version-$flavor"
if ! ls "$wheel_dir"/horovod-*.whl >/dev/null 2>&1; then
  log "building horovod $HVD_VERSION for TF $tf_version ($flavor); about 6 min on 2 cores, done once per machine"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$VPY" -m pip download -q --no-deps --no-binary :all: -d "$work" "horovod==$HVD_VERSION"
  tar -xzf "$work"/horovod-$HVD_VERSION.tar.gz -C "$work"
  src="$work/horovod-$HVD_VERSION"
  f="$src/horovod/tensorflow/xla_mpi_ops.cc"
  grep -q 'tensorflow/compiler/xla/client/xla_builder.h' "$f" || { echo "[setup] expected include not found in $f: sdist changed?" >&2; exit 1; }
  sed -i 's#tensorflow/compiler/xla/client/xla_builder.h#xla/hlo/builder/xla_builder.h#' "$f"
  mkdir -p "$wheel_dir"
  # cmake and build tooling come from the venv's pip so a bare machine needs only gcc/g++.
  "$VPY" -m pip install -q "cmake<4" wheel setuptools
  ( cd "$src" && PATH="$(cd "$OLDPWD" && pwd)/$VENV/bin:$PATH" \
      HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
      HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
      MAKEFLAGS="-j$(nproc)" "$(cd "$OLDPWD" && pwd)/$VPY" -m pip wheel -q --no-deps --no-build-isolation -w "$wheel_dir" . )
else
  log "using cached wheel in $wheel_dir"
fi
"$VPY" -m pip install -q --no-deps "$wheel_dir"/horovod-*.whl
"$VPY" -m pip install -q cloudpickle psutil pyyaml packaging
"$VPY" -c "import horovod.tensorflow as h; assert h.gloo_built(), 'horovod built without gloo'; print('[setup] horovod', __import__('horovod').__version__, 'gloo ok')"
