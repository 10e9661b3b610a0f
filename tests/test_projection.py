"""The projection command: convergence points from the pinned RCPs and the score formula."""
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
