"""The benchmark command runs end to end and exports an HLO module that gpu_step_bench's prepare step accepts."""
from pathlib import Path

from conftest import ROOT, SHARED, run_module


def test_bench_prints_rates_and_exports_hlo(demo_imagenet, tmp_path):
  prefix = tmp_path / "resnet_step"
  r = run_module("tf_gp2bm.bench", "--task=resnet", f"--flagfile={ROOT}/flags/resnet/smoke.flags",
                 "--resnet_depth=10", f"--data_dir={demo_imagenet}", "--bench_steps=2", f"--export_hlo={prefix}")
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert "synthetic (device-resident) :" in r.stdout and "real input pipeline" in r.stdout
  pb = Path(f"{prefix}.hlo.pb")
  assert pb.stat().st_size > 10_000 and "HloModule" in Path(f"{prefix}.hlo.txt").read_text()[:200]
  prepare = SHARED / "tools" / "gpu_step_bench" / "prepare.py"
  if prepare.exists():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, str(prepare), str(pb)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "copies rewritten" in out.stdout, out.stderr[-2000:]
