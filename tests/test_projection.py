"""The projection command: convergence points from the pinned RCPs and the score formula."""
import subprocess
import sys

import pytest

from tf_gp2bm import projection


def test_projection_uses_rcp_grid_and_score_formula(capsys):
  rows, score = projection.main(["--gpus=8", "--resnet_rate=5000", "--bert_rate=200", "--startup_s=0",
                                 "--eval_speedup=1e9"])
  resnet, bert = rows
  # RCP mean at GBS 3264 is 35.15 epochs: the first eval at or after it (offset 2, period 4) is epoch 38.
  assert resnet["converge_at"].startswith("38 epochs")
  assert resnet["minutes"] == pytest.approx(38 * (1_281_167 // 3264) * 3264 / (5000 * 8) / 60, rel=1e-6)
  # RCP mean at GBS 448 is 2,414,421 samples; evals every 335 steps x 448 = 150,080 samples -> 17 evals.
  assert bert["converge_at"].startswith("2,551,360 samples (17 evals)")
  assert score == pytest.approx(7.19 / resnet["minutes"] + 9.05 / bert["minutes"])
  assert "projected score" in capsys.readouterr().out


def test_projection_batch_defaults_come_from_the_system_flagfiles(capsys):
  rows, _ = projection.main(["--resnet_rate=5000", "--bert_rate=200"])
  explicit, _ = projection.main(["--resnet_rate=5000", "--bert_rate=200", "--resnet_gbs=3264", "--bert_gbs=448"])
  assert rows == explicit  # flags/<task>/8xgpu.flags hold 3264 and 448
  assert "a projection" in capsys.readouterr().out


def test_projection_help_imports_no_tensorflow():
  out = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['p', '--help']\n"
                        "import tf_gp2bm.projection as p\ntry:\n  p.main()\nexcept SystemExit as e:\n"
                        "  assert e.code == 0\nassert 'tensorflow' not in sys.modules"], capture_output=True, text=True)
  assert out.returncode == 0 and "--resnet_rate" in out.stdout, out.stderr


def test_projection_of_packed_bert_trains_at_rate_times_the_packing_factor(tmp_path, capsys):
  """flags/bert/8xgpu.flags trains packed rows: the BERT rate given is rows/s, training runs at rate x factor
  sequences/s; the factor is --bert_packing_factor, else the pack manifest's, else 2.0, and it is printed."""
  from data_prep.wikipedia import length_model
  from data_prep.wikipedia.cli import main as wikipedia
  args = ["--resnet_rate=5000", "--bert_rate=200", "--startup_s=0", "--eval_speedup=1e9"]
  (_, unpacked), _ = projection.main(args + ["--bert_packing_factor=1"])
  (_, default), _ = projection.main(args)
  assert "packing factor 2.000 (default" in capsys.readouterr().out
  assert default["train_min"] == pytest.approx(unpacked["train_min"] / 2.0)
  length_model.write_set(str(tmp_path / "records"), 300, seed=1)
  assert wikipedia(["pack", f"--input={tmp_path / 'records'}", f"--out={tmp_path / 'packed'}", "--workers=1"]) == 0
  factor = 300 / sum(1 for _ in __import__("data_prep.bert_records", fromlist=["read_records"]).read_records(
      str(tmp_path / "packed" / "part-00000")))
  capsys.readouterr()
  (_, measured), _ = projection.main(args + [f"--bert_packed_data_dir={tmp_path / 'packed'}"])
  assert f"packing factor {factor:.3f} ({tmp_path / 'packed' / 'manifest-pack.json'})" in capsys.readouterr().out
  assert measured["train_min"] == pytest.approx(unpacked["train_min"] / factor)
