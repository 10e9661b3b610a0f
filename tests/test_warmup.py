"""Warm-up (compiling and running the train and eval steps on synthetic batches before run_start) leaves no trace:
every variable the trainer created -- weights, batch-norm statistics, optimizer slots and step counter, the fp16
loss scale and its counter -- is bit-identical afterwards, and no dataset is built before run_start.

The variables are collected by a variable-creator scope around `build()`, not from the trainer's own list, so a
variable the trainer forgot to restore is still seen.
"""
import numpy as np
import pytest
import tensorflow as tf

from conftest import snapshot

pytestmark = pytest.mark.slow


def _build_recording_variables(trainer):
  created = []

  def record(next_creator, **kwargs):
    v = next_creator(**kwargs)
    created.append(v)
    return v

  with tf.variable_creator_scope(record):
    trainer.build()
  return created


def test_warm_up_restores_every_variable_bit_for_bit(trainer_factory):
  # fp16 (loss scale and its counter) on ResNet (batch-norm statistics), LARS momentum slots.
  trainer = trainer_factory("resnet", "--resnet_depth=10", "--global_batch_size=16", "--warmup_epochs=0",
                            "--precision=fp16", "--noxla", "--steps_per_loop=3", build=False)
  created = _build_recording_variables(trainer)
  names = {v.name for v in created}
  assert any("moving_mean" in n for n in names) and any("loss_scale" in n for n in names)
  assert any(v is trainer.optimizer.iterations for v in created)
  # Non-default starting values, so that a reset to zeros/ones would be caught, not only a skipped restore. The
  # loss, skipped-step and counted-sample sums are per-loop counters that start every run at 0: kept at 0, still
  # compared.
  counters = (trainer.loss_sum, trainer.skipped, trainer.sample_sum)
  rng = np.random.default_rng(0)
  for v in created:
    if v.dtype.is_floating and not any(v is c for c in counters):
      v.assign(v.numpy() + rng.uniform(0.5, 1.0, v.shape).astype(v.dtype.as_numpy_dtype))
  trainer.optimizer.iterations.assign(5)
  trainer.precision.good_steps.assign(7)
  before = snapshot(created)

  trainer.warm_up()

  changed = [v.name for v, value in zip(created, before) if not np.array_equal(v.numpy(), value)]
  assert not changed, f"warm-up left {len(changed)} variable(s) changed: {changed[:10]}"


def test_no_dataset_is_built_before_run_start(trainer_factory, demo_imagenet, tmp_path):
  # A one-epoch plan: run() trains 18 steps and evaluates once, enough to see when the datasets are built.
  trainer = trainer_factory("resnet", "--resnet_depth=10", "--noxla", f"--data_dir={demo_imagenet}",
                            "--train_epochs=1", "--warmup_epochs=0", "--eval_offset_epochs=1", build=False,
                            mlperf_log_path=tmp_path / "mlperf.log")
  built = []  # (dataset, whether run_start was already logged)

  def watch(name):
    real = getattr(trainer.task, name)

    def build_dataset(ctx):
      built.append((name, trainer.ml.run_started))
      return real(ctx)
    setattr(trainer.task, name, build_dataset)

  watch("train_dataset")
  watch("eval_dataset")
  trainer.build()
  trainer.warm_up()
  assert built == []
  trainer.run()
  trainer.ml.close()
  assert [name for name, _ in built] == ["train_dataset", "eval_dataset"]
  assert all(started for _, started in built), built
