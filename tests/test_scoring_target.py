"""The quality target is inclusive, as the checker's `v['value'] >= 0.7590` (ResNet) and `>= 0.720` (BERT): a run
whose best eval is exactly the target converged; one a hair below did not."""
import pytest

from test_scoring import write_log
from tf_gp2bm.driver import scoring


@pytest.mark.parametrize("task,target", [("resnet", 0.759), ("bert", 0.72)])
def test_an_eval_exactly_at_the_target_converges(task, target, tmp_path):
  at = scoring.parse_run(write_log(tmp_path / "at.txt", task, 10, [0.5, target]), task)
  assert at.converged and at.reason == ""
  below = scoring.parse_run(write_log(tmp_path / "below.txt", task, 10, [0.5, target - 1e-6]), task)
  assert not below.converged and "banner not trusted" in below.reason
