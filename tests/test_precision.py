"""Mixed precision on the settings the closed configs use.

bf16: one XLA step of ResNet and BERT (tiny configs) from the same initial weights and batch as an fp32 step gives a
finite loss within BF16_LOSS_RTOL of the fp32 loss, while master weights and optimizer slots stay float32.
fp16 dynamic loss scaling, checked against tf_keras's LossScaleOptimizer defaults: an overflowing step changes no
weight, slot or step counter and halves the scale; the scale doubles after the growth interval of good steps.
fp32: a run whose loss turns NaN exits 4 with run_stop aborted is test_faults_trainer's NaN-abort test.
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from conftest import fixed_batch, snapshot, train_on

pytestmark = pytest.mark.slow

# bf16 keeps 8 mantissa bits (relative rounding 2^-8 per operation). Measured on these models: 1.3e-4 (ResNet) and
# 1.5e-5 (BERT) relative to the fp32 loss; 0.5 % leaves room for other CPUs and XLA versions.
BF16_LOSS_RTOL = 0.005
TINY = {"resnet": ["--resnet_depth=10", "--global_batch_size=16", "--warmup_epochs=0"],
        "bert": ["--global_batch_size=8"]}


def _step_loss(trainer, batch, initial=None):
  if initial is not None:
    for v, value in zip(trainer.model.variables, initial):
      v.assign(value)
  train_on(trainer, batch)
  return float(trainer.loss_sum.read_value())


@pytest.mark.parametrize("task", sorted(TINY))
def test_bf16_xla_step_is_close_to_fp32_with_float32_state(task, trainer_factory):
  fp32 = trainer_factory(task, "--precision=fp32", "--xla", *TINY[task])
  batch = fixed_batch(fp32)
  initial = snapshot(fp32.model.variables)
  loss32 = _step_loss(fp32, batch)

  bf16 = trainer_factory(task, "--precision=bf16", "--xla", *TINY[task])
  assert {layer.compute_dtype for layer in bf16.model.submodules if hasattr(layer, "compute_dtype")} \
      >= {"bfloat16"}, "the model must compute in bfloat16"
  loss16 = _step_loss(bf16, batch, initial)

  print(f"{task}: loss fp32 {loss32:.6f}, bf16 {loss16:.6f}")
  assert np.isfinite(loss16) and np.isfinite(loss32)
  assert abs(loss16 - loss32) <= BF16_LOSS_RTOL * abs(loss32), (loss16, loss32)
  for v in bf16.model.variables + bf16.optimizer.variables:
    want = tf.int64 if v is bf16.optimizer.iterations else tf.float32
    assert v.dtype == want, f"{v.name} is {v.dtype.name}, expected {want.name}"
    assert np.all(np.isfinite(v.numpy())), v.name
  assert int(bf16.optimizer.iterations.numpy()) == 1


@pytest.fixture
def fp16_bert(trainer_factory):
  trainer = trainer_factory("bert", "--precision=fp16", "--xla", *TINY["bert"])
  return trainer, fixed_batch(trainer)


def _keras_loss_scale_defaults():
  opt = tf_keras.mixed_precision.LossScaleOptimizer(tf_keras.optimizers.SGD())
  return float(opt.initial_scale), int(opt.dynamic_growth_steps)


def test_fp16_scale_starts_and_grows_like_keras(fp16_bert):
  trainer, batch = fp16_bert
  precision = trainer.precision
  initial, interval = _keras_loss_scale_defaults()
  assert float(precision.scale.numpy()) == initial
  precision.good_steps.assign(interval - 2)
  train_on(trainer, batch)  # good step number interval - 1: not yet
  assert float(precision.scale.numpy()) == initial and int(precision.good_steps.numpy()) == interval - 1
  train_on(trainer, batch)  # good step number interval: the scale doubles and the count restarts
  assert float(precision.scale.numpy()) == 2 * initial and int(precision.good_steps.numpy()) == 0
  assert int(trainer.optimizer.iterations.numpy()) == 2


def test_fp16_overflow_skips_the_step_and_halves_the_scale(fp16_bert):
  trainer, batch = fp16_bert
  precision = trainer.precision
  train_on(trainer, batch)  # one good step first, so the slots and counters are not trivially zero
  huge = float(np.finfo(np.float32).max)  # loss x scale overflows: every gradient is inf or NaN
  precision.scale.assign(huge)
  state = trainer.model.variables + trainer.optimizer.variables
  before = snapshot(state)
  assert int(precision.good_steps.numpy()) == 1 and int(trainer.optimizer.iterations.numpy()) == 1
  train_on(trainer, batch)
  for v, value in zip(state, before):
    np.testing.assert_array_equal(v.numpy(), value, err_msg=f"{v.name} changed on a skipped step")
  assert float(precision.scale.numpy()) == np.float32(huge) / 2
  assert int(precision.good_steps.numpy()) == 0
  assert float(trainer.skipped.read_value()) == 1.0
