"""Optional task behaviour is declared on the Task base with defaults, and generic code never branches on a task's
name: the data-error diagnosis and the pipeline benchmark are hooks a task overrides."""
import re

import pytest

from conftest import ROOT
from tf_gp2bm import dry_run
from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks.base import PipelineBenchOptions, Task

GENERIC = sorted([*ROOT.glob("tf_gp2bm/*.py"), *ROOT.glob("tf_gp2bm/driver/*.py"), *ROOT.glob("tf_gp2bm/runtime/*.py"),
                  *ROOT.glob("tf_gp2bm/kernels/*.py")])


@pytest.mark.parametrize("path", GENERIC, ids=lambda p: str(p.relative_to(ROOT)))
def test_generic_code_never_names_a_task(path):
  text = path.read_text()
  assert not re.findall(r"""["'](resnet|bert)["']""", text), "a task's name in generic code"
  assert "hasattr(task" not in text


def test_the_hooks_have_defaults_on_the_task_base():
  assert Task.diagnose_data_error(object(), ValueError("x")) is None
  assert Task.step_benchmark_batches(object(), PipelineBenchOptions()) == []

  class Plain(Task):
    benchmark = "plain"

  with pytest.raises(InputError, match="--task=plain has no input-pipeline benchmark"):
    Plain.pipeline_benchmark(None, PipelineBenchOptions(), print)


def test_resnet_names_the_file_behind_a_label_out_of_range():
  import tensorflow as tf
  from tf_gp2bm.tasks.resnet import imagenet_input
  from tf_gp2bm.tasks.resnet.task import ResNetTask
  config = dry_run.parse_config("resnet", [f"--flagfile={ROOT}/flags/resnet/smoke.flags", "--image_op=tf"])
  task = ResNetTask(dry_run.PlanningRuntime(1), config)
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:  # the pipeline's own label check
    imagenet_input._checked_label(tf.constant(12, tf.int64), tf.constant("/data/train-00003"), 0, 10)
  diagnosis = task.diagnose_data_error(raised.value)
  assert diagnosis.startswith("label out of range in") and "/data/train-00003" in diagnosis
  assert diagnosis.endswith("(expected the label convention written in the manifest)")
  assert task.diagnose_data_error(tf.errors.InvalidArgumentError(None, None, "Incompatible shapes")) is None
