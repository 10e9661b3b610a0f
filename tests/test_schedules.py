"""Learning-rate schedules against the reference's own definitions (oracles that are not our code).

ResNet (resnet-tf2 lars_util.py / resnet_runnable.py): steps_per_epoch = train images // global batch; the
schedule spans train_epochs x steps_per_epoch (train_epochs as given, not rounded to the eval grid); warm-up
warmup_epochs x steps_per_epoch; lr = base * step / warmup while step <= warmup, else tf_keras PolynomialDecay(base,
train - warmup + 1, 1e-4, power=2) at step - warmup.
BERT (bert/optimization.py): tf.compat.v1.train.polynomial_decay(lr, step, train_steps, 0, power=1) with the
linear warm-up from start_warmup_step in int32 arithmetic.
"""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from conftest import ROOT
from tf_gp2bm import dry_run
from tf_gp2bm.tasks.bert.task import BertTask
from tf_gp2bm.tasks.resnet.task import ResNetTask

IMAGENET_TRAIN_IMAGES = 1_281_167  # the reference's NUM_IMAGES['train']


def reference_resnet_lr(base, gbs, train_epochs, warmup_epochs, step):
  steps_per_epoch = IMAGENET_TRAIN_IMAGES // gbs
  train_steps = steps_per_epoch * train_epochs
  warmup = warmup_epochs * steps_per_epoch
  poly = tf_keras.optimizers.schedules.PolynomialDecay(base, train_steps - warmup + 1, 1e-4, power=2.0)
  step = tf.cast(step, tf.float32)
  return float(tf.where(step <= warmup, base * step / warmup, poly(step - warmup)))


def reference_bert_lr(base, train_steps, warmup_steps, start_warmup_step, step):
  global_step = tf.constant(step, tf.int64)
  lr = tf.compat.v1.train.polynomial_decay(tf.constant(base, tf.float32), global_step, train_steps,
                                           end_learning_rate=0.0, power=1.0, cycle=False)
  lr = lr() if callable(lr) else lr  # eager mode returns a callable
  if warmup_steps:
    steps_int = tf.cast(global_step, tf.int32) - tf.constant(start_warmup_step, tf.int32)
    warm_int = tf.constant(warmup_steps, tf.int32)
    warm_lr = base * (tf.cast(steps_int, tf.float32) / tf.cast(warm_int, tf.float32))
    is_warm = tf.cast(steps_int < warm_int, tf.float32)
    lr = (1.0 - is_warm) * lr + is_warm * warm_lr
  return float(lr)


def _resnet(flagfile, replicas, **overrides):
  config = dry_run.parse_config("resnet", [f"--flagfile={ROOT}/flags/resnet/{flagfile}.flags"])
  return ResNetTask(dry_run.PlanningRuntime(replicas), dataclasses.replace(config, **overrides))


@pytest.mark.parametrize("overrides", [{}, {"warmup_epochs": 5.0, "train_epochs": 41},
                                       {"warmup_epochs": 2.5, "train_epochs": 35}])
def test_resnet_schedule_is_the_references(overrides):
  task = _resnet("8xgpu", 8, **overrides)
  c = task.config
  spe = IMAGENET_TRAIN_IMAGES // c.global_batch_size
  warmup, train = c.warmup_epochs * spe, c.train_epochs * spe
  steps = sorted({0, 1, 2, int(warmup) - 1, int(warmup), int(warmup) + 1, 5000, 10_000, int(train) - 1, int(train),
                  int(train) + 1, task.plan().max_steps})
  ours = task.learning_rate_schedule()
  for step in steps:
    want = reference_resnet_lr(c.base_learning_rate, c.global_batch_size, c.train_epochs, c.warmup_epochs, step)
    assert float(ours(step)) == pytest.approx(want, rel=1e-5, abs=1e-7), step


def test_resnet_8xgpu_decay_steps_come_from_the_unrounded_train_epochs():
  task = _resnet("8xgpu", 8)
  assert task.config.train_epochs == 37
  assert task.hyperparameters()["lars_opt_learning_rate_decay_steps"] == 392 * 37 - 784 + 1 == 13_721
  # The eval grid (offset 2, every 4) moves only the stop point: epoch 38.
  assert task.plan().max_steps == 38 * 392
  assert float(task.learning_rate_schedule()(37 * 392)) == pytest.approx(1e-4, rel=1e-3)


@pytest.mark.parametrize("row", [
    dict(base_learning_rate=4.25e-4, train_steps=6700, warmup_steps=0, start_warmup_step=0),       # RCP 448
    dict(base_learning_rate=0.002, train_steps=1141, warmup_steps=100, start_warmup_step=0),       # RCP 3072
    dict(base_learning_rate=0.00288293, train_steps=600, warmup_steps=287, start_warmup_step=-76),  # RCP 8192
    dict(base_learning_rate=0.0029293, train_steps=700, warmup_steps=0, start_warmup_step=-700),   # RCP 6144
])
def test_bert_schedule_is_the_references(row):
  config = dry_run.parse_config("bert", [f"--flagfile={ROOT}/flags/bert/8xgpu.flags"])
  task = BertTask(dry_run.PlanningRuntime(8), dataclasses.replace(config, **row))
  ours = task.learning_rate_schedule()
  n, w, s = row["train_steps"], row["warmup_steps"], row["start_warmup_step"]
  steps = sorted({0, 1, 2, 50, max(w + s - 1, 0), max(w + s, 0), w + s + 1, n // 2, n - 1, n, n + 1, n + 50})
  for step in steps:
    want = reference_bert_lr(row["base_learning_rate"], n, w, s, step)
    assert float(ours(step)) == pytest.approx(want, rel=1e-5, abs=1e-9), step
  assert np.isclose(float(ours(n)), 0.0)
