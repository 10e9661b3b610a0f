"""TensorBoard files of a real run, read back with TensorBoard's own EventAccumulator."""
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from conftest import run_train


def _mllog(path):
  return [json.loads(line.split(":::MLLOG ", 1)[1]) for line in path.read_text().splitlines() if ":::MLLOG" in line]


@pytest.mark.slow
def test_fp16_run_writes_scalars_and_a_profile(demo_imagenet, tmp_path):
  out = tmp_path / "run"
  r = run_train("--task=resnet", "--flagfile=flags/resnet/smoke.flags", f"--data_dir={demo_imagenet}",
                f"--output_dir={out}", "--seed=7", "--precision=fp16", "--train_epochs=2", "--profile_steps=3,5")
  assert r.returncode in (0, 3), r.stdout[-3000:] + r.stderr[-3000:]
  logdir = out / "tensorboard"
  events = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
  events.Reload()
  # TF2 summaries are stored as tensors; one value per training loop, one per eval.
  series = {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
            for tag in events.Tags()["tensors"]}
  assert set(series) == {"train/loss", "train/learning_rate", "train/samples_per_second", "train/loss_scale",
                         "eval/accuracy"}
  # 36 steps, 18 per loop, cut before step 3 and after step 5 so the trace holds exactly steps 3..5.
  assert [step for step, _ in series["train/loss"]] == [2, 5, 23, 36]
  assert all(0 < loss < 10 for _, loss in series["train/loss"])
  assert all(rate > 0 for _, rate in series["train/samples_per_second"])
  assert all(scale >= 1 for _, scale in series["train/loss_scale"])
  # The eval accuracy is the one the MLPerf log holds, at the step the eval ran.
  logged = [e["value"] for e in _mllog(out / "mlperf.log") if e["key"] == "eval_accuracy"]
  assert len(logged) == len(series["eval/accuracy"])
  assert all(abs(acc - want) < 1e-6 for (_, acc), want in zip(series["eval/accuracy"], logged))
  assert series["eval/accuracy"][-1][0] == 36
  # The learning rate at the last loop is the end of the polynomial decay: far below the peak of 2.0.
  assert series["train/learning_rate"][-1][1] < 0.1 < max(lr for _, lr in series["train/learning_rate"])
  traces = list((logdir / "plugins" / "profile").glob("*/*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0
