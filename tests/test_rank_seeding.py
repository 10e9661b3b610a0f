"""run() seeds each rank from the run's seed and the runtime's rank: on two Horovod ranks with dropout on, the ranks
draw different dropout masks (as the reference's replicas do), and the same seed draws the same masks again."""
import dataclasses
import json

import pytest

from conftest import ROOT, require_horovod, run_train


def _masks(demo_bert, tmp_path, name, seed):
  """Each rank's mask digests, in call order, from a short 2-rank BERT run with dropout 0.1."""
  from tf_gp2bm.tasks.bert.model import TINY
  config = tmp_path / "bert_config_dropout.json"
  if not config.exists():
    config.write_text(json.dumps(dataclasses.replace(TINY, hidden_dropout_prob=0.1).to_json()))
  masks = tmp_path / f"masks_{name}"
  masks.mkdir()
  r = run_train("--task=bert", f"--flagfile={ROOT}/flags/bert/smoke.flags", *demo_bert.flags,
                f"--bert_config={config}", "--kernels=kernel_plugins.record_dropout_masks", "--train_steps=4",
                "--eval_interval_samples=128", "--steps_per_loop=2", f"--seed={seed}",
                f"--output_dir={tmp_path / name}", ranks=2, env={"DROPOUT_MASK_DIR": str(masks)})
  assert "horovod: rank 0/2" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
  return [(masks / f"rank{i}.txt").read_text().split() for i in range(2)]


@pytest.mark.slow
@pytest.mark.multiproc
def test_ranks_draw_their_own_dropout_masks_from_the_run_seed(demo_bert, tmp_path):
  require_horovod()
  rank0, rank1 = _masks(demo_bert, tmp_path, "first", seed=5)
  assert len(rank0) == len(rank1) >= 8  # 2 layers x 2 residual dropouts x the steps (warm-up included)
  assert not set(rank0) & set(rank1), "rank 1 drew rank 0's dropout masks"
  assert len(set(rank0)) == len(rank0)
  again0, again1 = _masks(demo_bert, tmp_path, "again", seed=5)
  assert (again0, again1) == (rank0, rank1)
