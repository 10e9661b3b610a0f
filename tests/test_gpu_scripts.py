"""The one-call GPU measurement, rehearsed on a CPU: scripts/gpu/prepare.sh --dry exports tiny steps, and the
measure.sh it writes times them through JAX (the device machine's stack), checks each loss and writes every figure
to $OUT. JAX is not a project dependency: when it is missing, jax[cpu] is installed into a temporary folder and put
on PYTHONPATH for the measure step only. The PyTorch peers' code path and their LARS / LAMB against the project's
optimizers run where torch is importable, or from a `pip install --target` folder named by TORCH_PYTHONPATH, or else
from CPU torch installed into a temporary folder (PyTorch's CPU wheel index: about 20 s from a local mirror). Where
that index cannot be reached either, those parts skip: torch is no project prerequisite."""
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import ROOT, skip_unless

# prepare.sh --dry --kernels=examples.vendor_kernels's exports, in measure.sh's order
STEPS = ["resnet_smoke", "bert_smoke", "bert_packed_smoke", "bert_smoke_kernels"]
# their PyTorch peers (flags/*/smoke.flags: fp32; 32 packed rows of 2 sequences)
PEERS = {"resnet_smoke": "resnet_b64_fp32", "bert_smoke": "bert_b32_fp32", "bert_packed_smoke": "bert_packed_r32_fp32",
         "bert_smoke_kernels": "bert_b32_fp32"}


@pytest.fixture(scope="module")
def jax_path(tmp_path_factory):
  """A PYTHONPATH entry under which `import jax` works ('' when the running python has it)."""
  if subprocess.run([sys.executable, "-c", "import jax"], capture_output=True).returncode == 0:
    return ""
  target = tmp_path_factory.mktemp("jax")
  r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "jax[cpu]"],
                     capture_output=True, text=True, timeout=600)
  skip_unless(r.returncode == 0, f"jax[cpu] could not be installed: {r.stderr[-500:]}")
  return str(target)


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # CPU-only wheels (PyPI's default build pulls in CUDA)


def _imports_torch(path):
  return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True,
                        env=dict(os.environ, PYTHONPATH=path)).returncode == 0


@pytest.fixture(scope="module")
def torch_path(tmp_path_factory):
  """A PYTHONPATH entry under which `import torch` works ('' when the running python has it); None: no torch."""
  path = os.environ.get("TORCH_PYTHONPATH", "")
  if _imports_torch(path):
    return path
  target = str(tmp_path_factory.mktemp("torch"))
  r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", target, "--index-url",
                      TORCH_CPU_INDEX, "--retries", "1", "--timeout", "20", "torch"],
                     capture_output=True, text=True, timeout=900)
  return target if r.returncode == 0 and _imports_torch(target) else None


def _run(script, *args, env):
  return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=900,
                        env=dict(os.environ, PYTHON=sys.executable, **env))


@pytest.mark.slow
def test_prepare_and_measure_dry_run_end_to_end(jax_path, torch_path, tmp_path):
  bench = tmp_path / "gpubench"
  r = _run(ROOT / "scripts" / "gpu" / "prepare.sh", "--dry", "--kernels=examples.vendor_kernels",
           env={"GPUBENCH": str(bench)})
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  assert (bench / "order.txt").read_text().split() == STEPS
  assert not list(bench.glob("*.hlo.txt"))  # the timer needs none of it: it stays out of the 64 MiB carried
  specs = {step: json.loads((bench / f"{step}.step.json").read_text()) for step in STEPS}
  # Each step names its PyTorch peer; the vendor's step shares its base step's (same batch and precision).
  assert {s: spec["peer"] for s, spec in specs.items()} == PEERS
  out = tmp_path / "out"
  env = {"OUT": str(out), "PYTHONPATH": os.pathsep.join(p for p in (jax_path, torch_path) if p)}
  r = _run(bench / "measure.sh", "--dry", env=env)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  versions = json.loads((out / "versions.json").read_text())
  assert versions["jax"] and versions["platform"] == "cpu"
  for step in STEPS:
    rec = json.loads((out / f"{step}.json").read_text())
    assert rec["status"] == "ok" and math.isfinite(rec["loss"]) and rec["skipped"] == 0, rec
    rate = rec["samples"] / rec["ms_median"] * 1e3
    assert rec["ms_median"] > 0 and rec["samples_per_s"] == pytest.approx(rate, rel=0.01)
  # The loss is the loss, not a weight: an untrained step's cross-entropy is near ln(classes) (10 classes for the
  # smoke ResNet; BERT: ln(128 tokens) + ln(2) for next-sentence).
  assert json.loads((out / "resnet_smoke.json").read_text())["loss"] == pytest.approx(math.log(10), rel=0.2)
  for step in ("bert_smoke", "bert_packed_smoke", "bert_smoke_kernels"):
    loss = json.loads((out / f"{step}.json").read_text())["loss"]
    assert loss == pytest.approx(math.log(128) + math.log(2), rel=0.2), step
  table = (out / "table.txt").read_text()
  assert "samples/s" in table and all(step in table for step in STEPS), table
  packed = json.loads((out / "bert_packed_smoke.json").read_text())
  assert packed["samples"] == 2 * 32  # sequences, as the trainer counts them: 32 rows at 2.0 per row
  assert table.strip() in r.stdout  # the one-screen table is the end of the output
  if torch_path is not None:  # the peers at the same batches, each figure beside its step's
    lines = {line.split()[0]: line.split() for line in table.splitlines() if line.split()}
    for step, peer in PEERS.items():
      rec = json.loads((out / f"torch_{peer}.json").read_text())
      assert rec["status"] == "ok" and rec["optimizer"] == "lars_lamb" and rec["mode"] == "eager", rec
      assert rec["samples"] == specs[step]["samples"]  # packed: 2 sequences per row, as ours
      ours = json.loads((out / f"{step}.json").read_text())["samples_per_s"]
      assert lines[step][6] == str(rec["samples_per_s"])
      assert lines[step][8] == f"{ours / rec['samples_per_s']:.2f}"
  else:
    assert "torch peers: skipped (no torch)" in r.stdout

  # A step past its timeout stops only itself, and its row says so.
  out2 = tmp_path / "out_timeout"
  r = _run(bench / "measure.sh", "--dry", env=dict(env, OUT=str(out2), STEP_TIMEOUT="1"))
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  for step in STEPS:
    assert json.loads((out2 / f"{step}.json").read_text())["status"] == "timeout 1s"
  for peer in set(PEERS.values()) if torch_path is not None else ():
    assert json.loads((out2 / f"torch_{peer}.json").read_text())["status"] == "timeout 1s"
  assert "timeout 1s" in (out2 / "table.txt").read_text()

  # A step that would start with too little of the whole call's budget left is marked, not started.
  out3 = tmp_path / "out_budget"
  r = _run(bench / "measure.sh", "--dry", env=dict(env, OUT=str(out3), BUDGET="0"))
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  assert all(json.loads((out3 / f"{step}.json").read_text())["status"] == "no time left" for step in STEPS)


def test_prepare_rejects_an_unknown_argument_before_exporting(tmp_path):
  r = _run(ROOT / "scripts" / "gpu" / "prepare.sh", "--kernel=acme", env={"GPUBENCH": str(tmp_path / "b")})
  assert r.returncode == 2 and "unknown argument --kernel=acme" in r.stderr
  assert not (tmp_path / "b").exists()


def test_measure_fails_fast_without_a_usable_jax(tmp_path):
  """Before any compile: a device whose python has no JAX gets one line and exit 3, not a stack per step."""
  r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu" / "step_timer.py"), "--versions"],
                     capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
  if r.returncode == 0:
    pytest.skip("this python has JAX")
  assert r.returncode == 3 and r.stderr.startswith("step_timer: needs JAX"), r.stderr


@pytest.mark.slow
def test_peer_lars_and_lamb_match_the_project_s_optimizers(torch_path):
  """The peers' multi-tensor LARS and LAMB against tf_gp2bm.optimizers: same weights and gradients, 5 updates."""
  if torch_path is None:  # not skip_unless: torch is no project prerequisite, and its index may be out of reach
    pytest.skip(f"no torch: {TORCH_CPU_INDEX} could not be reached; set TORCH_PYTHONPATH to a folder holding it")
  command = [sys.executable, str(ROOT / "scripts" / "gpu" / "check_peer_optimizers.py")]
  r = subprocess.run(command + ([f"--torch_path={torch_path}"] if torch_path else []), capture_output=True,
                     text=True, timeout=600, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith("ok: "), r.stdout + r.stderr[-2000:]
