"""A third task is one package plus its flagfiles. A toy task (tests/third_task: a tiny MLP on generated blobs, its
own flags, spec, demo generator and flagfile) is installed outside the tree and registered through the public entry
point group; with no project file edited it goes through the driver's demo flow (preflight's --dry_run of its
flagfile, real training runs, scoring, reports) and the projection, and does not join the GP2BM score.
docs/architecture.md's "adding a task" checklist is this test in words."""
import json
import os
import subprocess
import sys

import pytest

import third_task
from conftest import ROOT


def _git_status():
  return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_a_toy_task_runs_the_whole_flow_from_its_own_package(tmp_path):
  before = _git_status()
  root = third_task.install(tmp_path / "toy")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(ROOT)]), PYTHON=sys.executable,
             TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")

  def run(*cmd):
    return subprocess.run(list(map(str, cmd)), cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)

  results = tmp_path / "results"
  r = run(ROOT / "run_benchmark.sh", "demo", "--tasks", "toy", "--runs_toy=3", f"--flags_dir={root / 'flags'}",
          f"--demo_data_dir={tmp_path / 'demo_data'}", f"--results_root={results}", "--force")
  out = r.stdout + r.stderr
  assert r.returncode == 0, out[-4000:]
  assert "generating demo data: python -m toy_task.demo" in out
  assert "flagfile dry run toy" in out and "PASS    python -m tf_gp2bm.train --task=toy" in out  # its --dry_run
  assert "[toy 3/3] time to train" in out and "N/A: the 4.0.0 rules have no toy benchmark" in out
  set_dir = next(results.glob("*-demo"))
  summary = json.loads((set_dir / "summary.json").read_text())
  toy = summary["tasks"]["toy"]
  assert list(summary["tasks"]) == ["toy"] and toy["title"] == "Toy blobs / MLP" and toy["valid"]
  assert len(toy["runs"]) == 3 and all(run["status"] == "converged" for run in toy["runs"]), toy["runs"]
  assert all(json.loads((set_dir / "runs" / "toy" / f"run_{i}" / "run.json").read_text())["status"] == "success"
             for i in range(3))
  assert toy["latency_min"] > 0 and toy["weight"] is None  # scored as a task, but not part of the GP2BM score
  assert summary["score"]["formula"] == "7.19/R + 9.05/B" and summary["score"]["value"] is None
  assert "Toy blobs / MLP" in (set_dir / "summary.md").read_text() and (set_dir / "convergence_toy.png").exists()

  r = run(sys.executable, "-m", "tf_gp2bm.projection", "--resnet_rate=2500", "--bert_rate=350", "--toy_rate=10000",
          "--toy_gbs=64", "--toy_progress=2")
  assert r.returncode == 0, r.stdout + r.stderr[-3000:]
  assert "toy     2 epochs (2 evals)" in r.stdout and "projected score 7.19/R + 9.05/B = 7.19/" in r.stdout
  assert _git_status() == before  # no project file was touched
