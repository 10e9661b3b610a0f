"""What the driver, reports and projection know about the toy task (no TensorFlow here)."""
import math
import os

from tf_gp2bm.tasks.spec import StopPoint, TaskSpec

TRAIN_EXAMPLES, EVAL_EXAMPLES = 2048, 512
DATA_FILE = "blobs.npz"


def stop_point(global_batch_size, epochs):
  """One eval per epoch: the run stops at the first whole epoch at or after `epochs`."""
  stop = max(1, math.ceil(epochs))
  return StopPoint(progress=stop, evals=stop, samples=stop * (TRAIN_EXAMPLES // global_batch_size) * global_batch_size)


def check_data(data):
  path = os.path.join(data.get("data_dir") or "", DATA_FILE)
  return [("toy blobs", "PASS" if os.path.isfile(path) else "FAIL", path)]


SPEC = TaskSpec(
    name="toy", benchmark="toy", title="Toy blobs / MLP", target_accuracy=0.9, accuracy_label="accuracy",
    min_runs=3, progress_unit="epochs", sample_unit="points", eval_examples=EVAL_EXAMPLES, data_flags=("data_dir",),
    demo_module="toy_task.demo", demo_data=lambda root: {"data_dir": root}, stop_point=stop_point,
    check_data=check_data, samples_per_epoch=TRAIN_EXAMPLES)
