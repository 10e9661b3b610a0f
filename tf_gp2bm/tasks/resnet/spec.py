"""ResNet-50 v1.5 on ImageNet: the facts the driver needs (no TensorFlow here)."""
import math
import os

from tf_gp2bm.tasks import spec_checks
from tf_gp2bm.tasks.spec import StopPoint, TaskSpec

IMAGENET_TRAIN, IMAGENET_VAL = 1_281_167, 50_000
EVAL_PERIOD_EPOCHS = 4          # the rules: evaluate every 4 epochs ...
DEFAULT_EVAL_OFFSET_EPOCHS = 2  # ... starting at this epoch (1..4 allowed)


def eval_grid_epoch(epochs, offset=DEFAULT_EVAL_OFFSET_EPOCHS):
  """The first eval epoch at or after `epochs` on the rules' grid offset, offset+4, ... (the reference's
  get_num_train_iterations rounds train_epochs up the same way)."""
  return offset + math.ceil(max(epochs - offset, 0) / EVAL_PERIOD_EPOCHS) * EVAL_PERIOD_EPOCHS


def stop_point(global_batch_size, epochs, offset=DEFAULT_EVAL_OFFSET_EPOCHS):
  """Where a run that needs `epochs` stops: the first eval on the grid at or after it; the reference drops the
  remainder of each epoch's batches."""
  stop = eval_grid_epoch(epochs, offset)
  per_epoch = IMAGENET_TRAIN // global_batch_size * global_batch_size
  return StopPoint(progress=stop, evals=(stop - offset) // EVAL_PERIOD_EPOCHS + 1, samples=stop * per_epoch)


def check_data(data):
  data_dir = data.get("data_dir")
  name = "ResNet dataset"
  if not data_dir or not os.path.isdir(data_dir):
    return [(name, "FAIL", f"--resnet_data_dir {data_dir!r} is not a directory")]
  rc, text = spec_checks.python_module("data_prep.imagenet", "verify", data_dir, "--quick")
  detail = spec_checks.last_message(text)[:160]
  if rc is None:
    return [(name, "FAIL", detail)]
  return [(name, "PASS" if rc == 0 else "FAIL", f"data_prep.imagenet verify --quick: exit {rc}; {detail}")]


SPEC = TaskSpec(
    name="resnet", benchmark="resnet", title="ResNet-50 v1.5 / ImageNet",
    target_accuracy=0.759, accuracy_label="top-1 eval accuracy", min_runs=5,
    progress_unit="epochs", sample_unit="images", eval_examples=IMAGENET_VAL, data_flags=("data_dir",),
    demo_module="data_prep.demo.imagenet", demo_data=lambda root: {"data_dir": root},
    stop_point=stop_point, check_data=check_data, samples_per_epoch=IMAGENET_TRAIN)
