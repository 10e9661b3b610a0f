"""An installed copy stands on its own: a wheel built from the tree ships the flagfiles as package data, and the
installed trainer and projection find them there, run from a folder that is not the repository."""
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

_SKIP = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "results")


@pytest.mark.slow
def test_an_installed_copy_finds_its_flagfiles(tmp_path):
  src = tmp_path / "src"
  shutil.copytree(ROOT, src, symlinks=True, ignore=_SKIP)  # build from a copy: setuptools writes into its tree
  pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
  subprocess.run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
                 check=True, capture_output=True, timeout=600)
  wheel = next((tmp_path / "dist").glob("tf_gp2bm-*.whl"))
  site = tmp_path / "site"
  subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True,
                 timeout=600)
  env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()

  def run(*args):
    return subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=600)

  r = run("-c", "from tf_gp2bm import files; print(files.repo_root()); print(files.flags_dir())")
  assert r.returncode == 0, r.stderr[-2000:]
  root, flags = r.stdout.split()
  assert root == str(site) and flags == str(site / "tf_gp2bm" / "flags")
  assert sorted(p.name for p in (site / "tf_gp2bm" / "flags" / "resnet").glob("*.flags")) == sorted(
      p.name for p in (ROOT / "flags" / "resnet").glob("*.flags"))
  r = run("-m", "tf_gp2bm.projection", "--resnet_rate=2500", "--bert_rate=350")  # global batches: 8xgpu.flags
  assert r.returncode == 0 and "projected score 7.19/R + 9.05/B" in r.stdout, r.stdout + r.stderr[-2000:]
  r = run("-m", "tf_gp2bm.train", "--task=resnet", f"--flagfile={flags}/resnet/8xgpu.flags", "--dry_run",
          "--dry_run_replicas=8")
  assert r.returncode == 0 and "step cap:" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
