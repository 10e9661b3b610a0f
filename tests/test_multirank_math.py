"""Multi-rank math: one training step on a fixed global batch with two replicas -- MirroredStrategy over two
logical CPU devices, and two Horovod processes under horovodrun -- gives the weights one replica computes.

Agreement between ranks is not enough (a sum in place of the mean in the all-reduce keeps every rank equal), so
the oracle is one process with --distribution=none on the same global batch. It accumulates 2 micro-batches, so
each micro-batch is exactly one replica's share: batch-norm statistics and BERT's per-micro-batch clipping then see
the same examples as in the 2-replica runs (accumulation itself is proven in test_grad_accumulation). As there,
the settings keep the update sensitive to the gradient's scale (see CASES).

This module is also the worker: `python -m test_multirank_math TASK DISTRIBUTION DIR FLAGS...` runs one step.
The first run (the oracle) writes the initial state and the batch to DIR; the others load them.
"""
import os
import sys

import numpy as np
import pytest

from conftest import build_trainer, fixed_batch, require_horovod, run_module, train_on

GLOBAL_BATCH = 8
CASES = {
    "resnet": ["--resnet_depth=10", "--warmup_epochs=0"],  # LARS: batch norm and biases take lr * g
    "bert": ["--lamb_epsilon=0.5"],                          # LAMB's g / (sqrt(v) + 0.5) keeps the gradient's scale
}


def _state(trainer):
  return trainer.model.trainable_variables + trainer.optimizer.variables


def worker(task, distribution, out_dir, *flag_args):
  trainer = build_trainer(task, "--precision=fp32", "--xla", f"--global_batch_size={GLOBAL_BATCH}", *flag_args,
                          distribution=distribution)
  start = os.path.join(out_dir, "start.npz")
  variables = trainer.model.variables + trainer.optimizer.variables
  if distribution == "none":
    batch = fixed_batch(trainer)
    np.savez(start, *[v.numpy() for v in variables], **{f"batch_{k}": v for k, v in batch.items()})
  else:
    saved = np.load(start)
    for i, v in enumerate(variables):
      v.assign(saved[f"arr_{i}"])
    batch = {k[len("batch_"):]: saved[k] for k in saved.files if k.startswith("batch_")}
  before = {f"before_{i}": v.numpy() for i, v in enumerate(_state(trainer))}
  train_on(trainer, batch)
  runtime = trainer.runtime
  np.savez(os.path.join(out_dir, f"{distribution}.rank{runtime.rank}.npz"), *[v.numpy() for v in _state(trainer)],
           names=np.array([v.name for v in _state(trainer)]), replicas=runtime.num_replicas, **before)


def _step(task, distribution, out_dir, flags, **kw):
  r = run_module("test_multirank_math", task, distribution, out_dir, *CASES[task], *flags, **kw)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  return np.load(os.path.join(out_dir, f"{distribution}.rank0.npz"))


def _assert_same_weights(got, want):
  assert int(got["replicas"]) == 2 and int(want["replicas"]) == 1
  moved = 0.0
  for i, name in enumerate(want["names"]):
    w, g = want[f"arr_{i}"], got[f"arr_{i}"]
    np.testing.assert_array_equal(got[f"before_{i}"], want[f"before_{i}"], err_msg=f"{name}: another start")
    delta = float(np.max(np.abs(w - want[f"before_{i}"])))
    moved = max(moved, delta)
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6 + 1e-3 * delta,
                               err_msg=f"{name}: 2 replicas differ from 1 replica on the same global batch")
  assert moved > 1e-3, "the step must move the weights for the comparison to mean anything"


@pytest.fixture(scope="module", params=sorted(CASES))
def oracle(request, tmp_path_factory):
  task = request.param
  out = tmp_path_factory.mktemp(f"multirank_{task}")
  return task, out, _step(task, "none", out, ["--accumulation_steps=2"])


@pytest.mark.slow
def test_mirrored_two_cpu_replicas_equal_one_replica(oracle):
  task, out, want = oracle
  got = _step(task, "mirrored", out, ["--accumulation_steps=1"], env={"GP2BM_CPU_REPLICAS": "2"})
  _assert_same_weights(got, want)


@pytest.mark.slow
@pytest.mark.multiproc
def test_two_horovod_ranks_equal_one_replica(oracle):
  require_horovod()
  task, out, want = oracle
  got = _step(task, "horovod", out, ["--accumulation_steps=1"], ranks=2)
  other = np.load(out / "horovod.rank1.npz")
  for i in range(len(want["names"])):
    np.testing.assert_array_equal(other[f"arr_{i}"], got[f"arr_{i}"])
  _assert_same_weights(got, want)


if __name__ == "__main__":
  worker(*sys.argv[1:])
