"""The benchmark command runs end to end and exports an HLO module that scripts/gpu/prepare_step.py accepts."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_module


@pytest.mark.slow
def test_bench_prints_rates_and_exports_hlo(demo_imagenet, tmp_path):
  prefix = tmp_path / "resnet_step"
  r = run_module("tf_gp2bm.bench", "--task=resnet", f"--flagfile={ROOT}/flags/resnet/smoke.flags",
                 "--resnet_depth=10", f"--data_dir={demo_imagenet}", "--bench_steps=2", f"--export_hlo={prefix}")
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert "synthetic (device-resident) :" in r.stdout and "real input pipeline" in r.stdout
  pb = Path(f"{prefix}.hlo.pb")
  assert pb.stat().st_size > 10_000 and "HloModule" in Path(f"{prefix}.hlo.txt").read_text()[:200]
  assert f"next: python scripts/gpu/prepare_step.py {prefix} --task=resnet" in r.stdout
  prepare = ROOT / "scripts" / "gpu" / "prepare_step.py"
  out = subprocess.run([sys.executable, str(prepare), str(prefix), "--task=resnet"], capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stdout + out.stderr[-2000:]
  assert "2 batch inputs (resnet, 64 rows, 64 samples)" in out.stdout, out.stdout
  spec = json.loads(Path(f"{prefix}.step.json").read_text())
  assert [i["name"] for i in spec["inputs"]] == ["image", "label"]
  assert spec["params"][spec["loss_param"]] == ["f32", []] and spec["samples"] == 64


@pytest.mark.slow
def test_export_only_writes_the_step_without_running_it(tmp_path):
  """scripts/gpu/prepare.sh exports GPU-sized steps this way: traced, never run on the CPU."""
  prefix = tmp_path / "bert_step"
  r = run_module("tf_gp2bm.bench", "--task=bert", f"--flagfile={ROOT}/flags/bert/smoke.flags", "--xla",
                 "--export_only", f"--export_hlo={prefix}")
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert "samples/s" not in r.stdout and f"exported {prefix}.hlo.pb" in r.stdout
  assert "HloModule" in Path(f"{prefix}.hlo.txt").read_text()[:200]
  r = run_module("tf_gp2bm.bench", "--task=bert", f"--flagfile={ROOT}/flags/bert/smoke.flags", "--xla",
                 "--export_only")
  assert r.returncode == 2 and "--export_only needs --export_hlo" in r.stderr


def test_help_answers_without_tensorflow():
  r = run_module("tf_gp2bm.bench", "--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
  assert r.returncode == 0 and "--reference_dir" in r.stdout and "--pipeline_cores" in r.stdout, r.stderr[-2000:]
  imported = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
  assert "absl.flags" in imported and not any(m.split(".")[0] == "tensorflow" for m in imported)


def test_pipeline_bench_refuses_a_missing_or_wrong_reference(demo_imagenet, tmp_path):
  r = run_module("tf_gp2bm.bench", "--task=resnet", "--pipeline_only", f"--data_dir={demo_imagenet}")
  assert r.returncode == 2 and "--reference_dir is required" in r.stderr, r.stderr[-2000:]
  r = run_module("tf_gp2bm.bench", "--task=resnet", "--pipeline_only", f"--data_dir={demo_imagenet}",
                 f"--reference_dir={tmp_path}")
  assert r.returncode == 2 and f"--reference_dir={tmp_path}: no imagenet_preprocessing.py" in r.stderr, r.stderr
  r = run_module("tf_gp2bm.bench", "--task=resnet", "--pipeline_only", f"--data_dir={demo_imagenet}",
                 f"--reference_dir={tmp_path}", "--pipeline_cores=0-99999")
  assert r.returncode == 2 and "--pipeline_cores='0-99999': this process may run on cores" in r.stderr, r.stderr


@pytest.mark.slow
def test_bert_bench_reports_effective_sequences_packed_vs_unpacked(demo_bert, tmp_path):
  from data_prep.wikipedia.cli import main as wikipedia
  assert wikipedia(["pack", f"--input={demo_bert.train}", f"--out={tmp_path / 'packed'}", "--workers=1"]) == 0
  r = run_module("tf_gp2bm.bench", "--task=bert", f"--flagfile={ROOT}/flags/bert/smoke.flags", "--bench_steps=2",
                 f"--packed_data_dir={tmp_path / 'packed'}")
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  line = [x for x in r.stdout.splitlines() if x.startswith("effective sequences/s")]
  assert line and "unpacked" in line[0] and "packed" in line[0], r.stdout
  r = run_module("tf_gp2bm.bench", "--task=bert", f"--flagfile={ROOT}/flags/bert/smoke.flags",
                 f"--packed_data_dir={tmp_path}")
  assert r.returncode == 2 and "manifest-pack.json" in r.stderr, r.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.multiproc
def test_pipeline_bench_through_the_data_service_runs_end_to_end(demo_imagenet):
  """A real dispatcher and 1, then 2 real workers feed a consumer process; the figures are printed (not judged)."""
  r = run_module("tf_gp2bm.bench", "--task=resnet", "--pipeline_only", "--pipeline_data_service",
                 f"--data_dir={demo_imagenet}", "--pipeline_batches=2", "--pipeline_batch_size=8",
                 "--pipeline_repeats=1")
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  for line in ("median images/s: local fused pipeline on 1 core", "the service, 1 worker(s)",
               "the service, 2 worker(s)", "service overhead"):
    assert line in r.stdout, r.stdout[-2000:]
