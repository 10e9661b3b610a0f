"""scripts/setup.sh's decisions, run for real with --plan (installs nothing): which stack a node gets, the Horovod
wheel-cache key, and the exact reason it stops on a GPU node it cannot build NCCL Horovod for."""
import os
import re
import subprocess

import pytest

from conftest import ROOT

SETUP = os.path.join(ROOT, "scripts", "setup.sh")
TF_PIN = re.search(r"^tensorflow==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)


def _plan(tmp_path, **env):
  full = dict(os.environ, GP2BM_WHEEL_CACHE=str(tmp_path / "wheels"), **env)
  return subprocess.run(["bash", SETUP, "--plan"], env=full, capture_output=True, text=True, timeout=120)


def _bin_without(tmp_path, *tools):
  """A PATH of the system folders with the named tools hidden (symlinks to everything else)."""
  d = tmp_path / "bin"
  d.mkdir()
  for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
      if name not in tools and not (d / name).exists():
        (d / name).symlink_to(os.path.join(folder, name))
  return str(d)


def test_cpu_node_plan_and_wheel_key(tmp_path):
  r = _plan(tmp_path, PATH=_bin_without(tmp_path, "nvidia-smi"), GP2BM_GPU="auto")
  assert r.returncode == 0, r.stderr
  assert "[setup] node: nvidia-smi not found on PATH: CPU node" in r.stdout
  assert f"tensorflow: tensorflow=={TF_PIN} (CPU)" in r.stdout
  assert f"wheel cache: {tmp_path / 'wheels'}/horovod-0.28.1-tf{TF_PIN}-cpu\n" in r.stdout


def _nvcc_candidates(path):
  found = [os.path.join(p, "nvcc") for p in path.split(":") if os.access(os.path.join(p, "nvcc"), os.X_OK)]
  return found + [p for p in ["/usr/local/cuda/bin/nvcc"] if os.access(p, os.X_OK)]


def test_gpu_node_without_a_cuda12_nvcc_stops_with_the_reason(tmp_path):
  path = _bin_without(tmp_path, "nvcc", "nvidia-smi")
  r = _plan(tmp_path, PATH=path, GP2BM_GPU="1", CUDA_HOME=str(tmp_path / "no-cuda"))
  nvcc = _nvcc_candidates(path)
  if not nvcc:
    assert r.returncode == 2, r.stdout
    assert "STOP: GPU node (GP2BM_GPU=1) but no nvcc" in r.stderr and "nvidia-cuda-nvcc-cu12" in r.stderr
    assert "GP2BM_GPU=0" in r.stderr
    return
  release = re.search(r"release (\d+)\.", subprocess.run([nvcc[0], "--version"], capture_output=True,
                                                         text=True).stdout).group(1)
  if release != "12":  # this machine's only nvcc is another CUDA: refused, naming it
    assert r.returncode == 2, r.stdout
    assert f"STOP: {nvcc[0]} is CUDA {release}." in r.stderr and "must be compiled by a CUDA 12 nvcc" in r.stderr
  else:
    assert r.returncode == 0 and "with NCCL (nvidia-nccl-cu12" in r.stdout
    assert re.search(rf"horovod-0\.28\.1-tf{re.escape(TF_PIN)}-cuda12\.\d+-nccl", r.stdout)


@pytest.mark.parametrize("value", ["yes", "2"])
def test_bad_gpu_setting_is_refused(tmp_path, value):
  r = _plan(tmp_path, GP2BM_GPU=value)
  assert r.returncode == 2 and f"STOP: GP2BM_GPU={value}: expected auto, 1 or 0" in r.stderr
