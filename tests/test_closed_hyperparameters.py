"""The values the closed division fixes reach the math: each is read off the object that computes with it (the
optimizer, the schedule, the loss, the data settings) for the closed flagfiles, against the reference's value.
How each value is used in the math is proven elsewhere against NumPy or the reference's own formulas
(test_lars.py, test_lamb.py, test_schedules.py, test_resnet_task.py, test_bert_task.py, test_wikipedia_prep.py);
docs/fidelity.md lists, for every fixed value, the tests that guard it."""
import dataclasses
import hashlib
import json
import types

import pytest
import tensorflow as tf

from conftest import ROOT
from tf_gp2bm import dry_run, tasks
from tf_gp2bm.errors import InputError
from tf_gp2bm.formats.bert_checkpoint import PUBLISHED_PHASE1
from tf_gp2bm.optimizers.lamb import LAMB
from tf_gp2bm.optimizers.lars import LARS
from tf_gp2bm.tasks.bert.sizes import LARGE

CLOSED = {task: sorted((ROOT / "flags" / task).glob("*gpu.flags")) for task in ("resnet", "bert")}
REPLICAS = {"1xgpu": 1, "8xgpu": 8, "2x8xgpu": 16}


def _task(task, path):
  config = dry_run.parse_config(task, [f"--flagfile={path}"])
  return tasks.task_class(task)(dry_run.PlanningRuntime(REPLICAS[path.stem]), config)


def _model(*names):
  return types.SimpleNamespace(trainable_variables=[tf.Variable(tf.ones([2, 2]), name=n) for n in names])


@pytest.mark.parametrize("path", CLOSED["resnet"], ids=lambda p: p.stem)
def test_resnet_lars_and_schedule_carry_the_fixed_values(path):
  task = _task("resnet", path)
  opt = task.build_optimizer(_model("conv2d/kernel"))
  assert type(opt) is LARS
  # eeta 0.001 and epsilon 0 (which the reference turns into the Keras epsilon, 1e-7, in the trust ratio).
  assert (opt.eeta, opt.epsilon) == (0.001, 1e-7)
  schedule = opt.learning_rate
  assert (schedule.end_lr, schedule.power) == (1e-4, 2.0)
  logged = task.hyperparameters()
  assert (logged["lars_epsilon"], logged["lars_opt_end_learning_rate"],
          logged["lars_opt_learning_rate_decay_poly_power"]) == (0.0, 1e-4, 2)
  assert task.config.label_smoothing == 0.1 and task.config.num_classes == 1000
  assert (task.config.resnet_depth, task.config.image_size, task.config.width_multiplier) == (50, 224, 1.0)


@pytest.mark.parametrize("path", CLOSED["bert"], ids=lambda p: p.stem)
def test_bert_lamb_schedule_and_shapes_carry_the_fixed_values(path):
  task = _task("bert", path)
  opt = task.build_optimizer(_model("layer_0/attention/kernel"))
  assert type(opt) is LAMB
  assert opt.exclude_from_adaptation == ("LayerNorm", "layer_norm", "bias")
  schedule = opt.learning_rate
  assert (schedule.end_lr, schedule.power) == (0.0, 1.0)
  assert task.hyperparameters()["opt_lamb_learning_rate_decay_poly_power"] == 1.0
  assert (task.config.max_seq_length, task.config.max_predictions_per_seq) == (512, 76)
  # Gradients are clipped to global norm 1.0: a gradient of norm 13 comes out with norm 1.
  clipped = task.process_micro_gradients([tf.constant([5.0, 12.0])])
  assert float(tf.linalg.global_norm(clipped)) == pytest.approx(1.0)


def test_closed_configs_refuse_a_fixed_value_changed():
  resnet = dry_run.parse_config("resnet", [f"--flagfile={CLOSED['resnet'][0]}"])
  bert = dry_run.parse_config("bert", [f"--flagfile={CLOSED['bert'][0]}"])
  for config, change in ((resnet, {"label_smoothing": 0.2}), (resnet, {"image_size": 192}),
                         (bert, {"max_seq_length": 384}), (bert, {"max_predictions_per_seq": 80})):
    with pytest.raises(InputError, match=f"--{next(iter(change))}"):
      dataclasses.replace(config, **change).validate(closed=True)


def test_tunable_values_reach_the_optimizer_and_schedule():
  """What the flags say is what the optimizer computes with (the log reports the config, so a value dropped on
  the way would be logged but not used)."""
  resnet = _task("resnet", CLOSED["resnet"][0])
  resnet = type(resnet)(resnet.runtime, dataclasses.replace(resnet.config, lars_momentum=0.95, weight_decay=1e-4,
                                                            base_learning_rate=7.0, warmup_epochs=3.0))
  lars = resnet.build_optimizer(_model("conv2d/kernel"))
  assert (lars.momentum, lars.weight_decay, lars.learning_rate.base_lr) == (0.95, 1e-4, 7.0)
  assert lars.learning_rate.warmup_steps == 3 * resnet.steps_per_epoch
  bert = _task("bert", CLOSED["bert"][0])
  bert = type(bert)(bert.runtime, dataclasses.replace(bert.config, lamb_beta_1=0.7, lamb_beta_2=0.95,
                                                      lamb_epsilon=1e-8, weight_decay=0.02, train_steps=1234))
  lamb = bert.build_optimizer(_model("layer_0/attention/kernel"))
  assert (lamb.beta_1, lamb.beta_2, lamb.epsilon, lamb.weight_decay) == (0.7, 0.95, 1e-8, 0.02)
  assert lamb.learning_rate.train_steps == 1234


def test_defaults_without_a_flagfile_are_the_references():
  """A command line that names no flagfile gets the reference's fixed values too: they are the flags' defaults."""
  def defaults(task):
    return {f.name: f.default for f in dataclasses.fields(tasks.config_class(task))}

  resnet, bert = defaults("resnet"), defaults("bert")
  assert [resnet[n] for n in ("label_smoothing", "num_classes", "resnet_depth", "image_size")] == [0.1, 1000, 50, 224]
  assert [bert[n] for n in ("max_seq_length", "max_predictions_per_seq", "bert_config")] == [512, 76, "large"]


def test_bert_large_is_the_published_bert_config_json_byte_for_byte():
  """BERT-large's sizes, dropouts and initializer range, written as the reference's bert_config.json (2-space JSON,
  sorted keys), have the published file's size and md5: any changed value (a dropout of 0, say) changes both."""
  text = (json.dumps(LARGE.to_json(), indent=2, sort_keys=True) + "\n").encode()
  published = PUBLISHED_PHASE1["bert_config.json"]
  assert (len(text), hashlib.md5(text).hexdigest()) == (published["bytes"], published["md5"])
  assert _task("bert", CLOSED["bert"][0]).model_config == LARGE
