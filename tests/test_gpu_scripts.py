"""The one-call GPU measurement rehearsed on this CPU: `prepare.sh --dry` exports the smoke models' steps, writes
measure.sh and runs all of it with JAX on the CPU, so a change that would break the real call (with its 600 s and
no second try) breaks here. JAX is not in the venv: GP2BM_JAX_PATH names a folder holding it, else the test installs
it from PyPI into a temporary folder (`pip install --target`), never into the venv."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, skip_unless

pytestmark = pytest.mark.slow  # TensorFlow exports and JAX compiles in child processes (about 2 minutes)


@pytest.fixture(scope="module")
def jax_path(tmp_path_factory):
  path = os.environ.get("GP2BM_JAX_PATH")
  if not path:
    path = str(tmp_path_factory.mktemp("jax"))
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", path, "jax", "jaxlib"],
                            capture_output=True, text=True, timeout=600)
    skip_unless(result.returncode == 0, f"jax could not be installed from PyPI: {result.stderr[-500:]}")
  check = subprocess.run([sys.executable, "-c", "import jax; print(jax.__version__)"], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=path))
  skip_unless(check.returncode == 0, f"jax is not importable from {path}")
  return path


def test_dry_rehearsal_runs_the_whole_measurement_and_tees_every_figure(jax_path, tmp_path):
  stage, out = tmp_path / "stage", tmp_path / "out"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([jax_path, str(ROOT), str(ROOT / "tests")]),
             PYTHON=sys.executable, GPUBENCH_DIR=str(stage), OUT=str(out))
  result = subprocess.run(["bash", "scripts/gpu/prepare.sh", "--dry", "--kernels=examples.vendor_kernels"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  records = {r["step"]: r for r in map(json.loads, (out / "figures.jsonl").read_text().splitlines())}
  assert {"resnet_b4_fp32", "bert_b4_fp32", "bert_b4_fp32_kernels"} <= set(records), records
  for name in ("resnet_b4_fp32", "bert_b4_fp32", "bert_b4_fp32_kernels"):
    r = records[name]
    assert r["finite"] and r["not_finite_outputs"] == 0, r  # synthetic inputs keep the step finite
    assert r["samples_per_s"] > 0 and r["batch"] == 4 and r["versions"].startswith("jax "), r
  # measure.sh puts the likely out-of-memory step last and gives every step its own timeout.
  measure = (stage / "measure.sh").read_text()
  assert measure.count('timeout "$STEP_TIMEOUT"') >= 2 and "../shared" not in measure
  table = (out / "table.txt").read_text()
  assert table.startswith("step ") and "bert_b4_fp32_kernels" in table and len(table.splitlines()) < 25
  assert (out / "measure.log").stat().st_size > 0


def test_no_gpu_script_reads_the_workspace_shared_folder():
  for name in os.listdir(ROOT / "scripts" / "gpu"):
    assert "../shared" not in (ROOT / "scripts" / "gpu" / name).read_text(), name
