"""Gradient accumulation: one update over k micro-batches (the XLA while loop in the compiled step) applies the
mean of the k micro-batch gradients -- for BERT the mean of the per-micro-batch clipped gradients, as the
reference's deferred-gradient optimizer does (clip each micro-batch to global norm 1.0, accumulate g / k, apply).

The oracle is an explicit Python loop over the micro-batches with its own GradientTape, so it shares only the model,
the loss and the optimizer's apply with the trainer. The optimizer settings make the update scale-sensitive:
LARS/LAMB trust ratios and LAMB's g / sqrt(v) normalize a gradient's size away, so a sum in place of a mean would
go unseen; LARS excluded variables (batch norm, biases) take lr * g, and a large LAMB epsilon (0.5) makes LAMB's
step nearly proportional to g.
"""
import numpy as np
import pytest
import tensorflow as tf

from conftest import fixed_batch, snapshot, train_on

pytestmark = pytest.mark.slow

K = 4
CASES = {
    # 16 images of 32px, micro-batch 4; no LR warm-up so the first update moves the weights.
    "resnet": ["--resnet_depth=10", "--global_batch_size=16", "--warmup_epochs=0"],
    # BERT 2x64, micro-batch 2; clip_by_global_norm(1.0) is active on every micro-batch (asserted below).
    "bert": ["--global_batch_size=8", "--lamb_epsilon=0.5"],  # the largest epsilon the config allows is < 1
}


def explicit_update(trainer, batch, k, clip_norm):
  """The oracle: mean over the k micro-batches of each one's (clipped) gradient, applied once."""
  model = trainer.model
  total, norms = None, []
  for micro in (dict(zip(batch, parts)) for parts in zip(*(np.split(v, k) for v in batch.values()))):
    with tf.GradientTape() as tape:
      loss = trainer.task.loss(model, micro)
    grads = tape.gradient(loss, model.trainable_variables)
    norms.append(float(tf.linalg.global_norm(grads)))
    if clip_norm:
      grads, _ = tf.clip_by_global_norm(grads, clip_norm)
    total = grads if total is None else [a + g for a, g in zip(total, grads)]
  trainer.optimizer.apply([g / k for g in total])
  return norms


@pytest.mark.parametrize("task", sorted(CASES))
def test_update_is_the_mean_of_micro_batch_gradients(task, trainer_factory):
  trainer = trainer_factory(task, f"--accumulation_steps={K}", "--xla", "--precision=fp32", *CASES[task])
  assert trainer.task.micro_batch_size * K == trainer.task.global_batch_size
  batch = fixed_batch(trainer)
  state = trainer.model.variables + trainer.optimizer.variables
  before = snapshot(state)

  train_on(trainer, batch)
  compiled = snapshot(state)
  for v, value in zip(state, before):
    v.assign(value)
  norms = explicit_update(trainer, batch, K, clip_norm=1.0 if task == "bert" else None)
  oracle = snapshot(state)

  if task == "bert":
    assert min(norms) > 1.0, f"clipping must be active for the test to see it: norms {norms}"
  moved = max(float(np.max(np.abs(o - b))) for o, b in zip(oracle, before))
  assert moved > 1e-3, "the update must move the weights for the comparison to mean anything"
  for v, got, want, b in zip(state, compiled, oracle, before):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 + 1e-3 * float(np.max(np.abs(want - b))),
                               err_msg=f"{v.name}: compiled accumulation differs from the explicit loop")
