"""Checks the PyTorch peers' LARS and LAMB (scripts/gpu/torch_peers.py) against the project's TensorFlow optimizers
(tf_gp2bm.optimizers) on a CPU: the same weights and gradients for a few updates, every weight and slot compared.

    PYTHONPATH=. python scripts/gpu/check_peer_optimizers.py [--torch_path=DIR] [--steps=5]   # from the repository root

Needs TensorFlow and torch in one process; DIR (a `pip install --target` folder holding CPU torch) is appended to
sys.path, after the project's own packages. Prints the largest relative error per optimizer and tensor kind, and
exits 1 when one is above --tolerance.
"""
import argparse
import os
import sys

import numpy as np
import tensorflow as tf

from tf_gp2bm.optimizers.lamb import LAMB
from tf_gp2bm.optimizers.lars import LARS

HERE = os.path.dirname(os.path.abspath(__file__))

# name, shape: adapted tensors (kernels, embeddings), excluded ones (batch-norm / LayerNorm scale and shift, biases),
# and an all-zero kernel, whose trust ratio is 1 in both optimizers.
VARIABLES = {
    "lars": [("conv1/kernel", (3, 3, 4, 8)), ("dense/kernel", (16, 10)), ("zero/kernel", (4, 5)),
             ("bn1/gamma", (8,)), ("bn1/beta", (8,)), ("dense/bias", (10,))],
    "lamb": [("word_embeddings/embeddings", (32, 16)), ("attention/kernel", (16, 16)), ("zero/kernel", (4, 5)),
             ("LayerNorm/gamma", (16,)), ("LayerNorm/beta", (16,)), ("attention/bias", (16,))],
}


def tf_run(kind, weights, grads, lr):
  variables = [tf.Variable(w, name=name) for (name, _), w in zip(VARIABLES[kind], weights)]
  opt = (LARS(lambda _: lr, momentum=0.9, weight_decay=5e-5) if kind == "lars" else
         LAMB(lambda _: lr, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.01)).build(variables)
  for step_grads in grads:
    opt.apply([tf.constant(g) for g in step_grads])
  slots = [s.numpy() for name in opt.SLOTS for s in opt.slots[name]]
  return [v.numpy() for v in variables], slots, [opt.excluded(v) for v in variables]


def torch_run(kind, weights, grads, lr, excluded):
  import torch
  import torch_peers
  params = [torch.nn.Parameter(torch.tensor(w)) for w in weights]
  groups = [{"params": [p for p, e in zip(params, excluded) if not e], "adapt": True},
            {"params": [p for p, e in zip(params, excluded) if e], "adapt": False}]
  opt = (torch_peers.LARS(groups, lr=lr, momentum=0.9, weight_decay=5e-5) if kind == "lars" else
         torch_peers.LAMB(groups, lr=lr, betas=(0.9, 0.999), epsilon=1e-6, weight_decay=0.01))
  for step_grads in grads:
    for p, g in zip(params, step_grads):
      p.grad = torch.tensor(g)
    opt.step()
  names = ("momentum",) if kind == "lars" else ("m", "v")
  return [p.detach().numpy() for p in params], [opt.state[p][n].numpy() for n in names for p in params]


def rel_err(a, b):
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--torch_path", help="a folder holding torch (pip install --target), appended to sys.path")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--tolerance", type=float, default=1e-5, help="largest relative error allowed")
  args = p.parse_args(argv)
  if args.torch_path:
    sys.path.append(args.torch_path)
  sys.path.insert(0, HERE)
  import torch
  rng = np.random.default_rng(0)
  worst = 0.0
  print(f"torch {torch.__version__}, tensorflow {tf.__version__}, {args.steps} updates")
  # LARS at the 8-GPU flagfile's peak LR (10.5) and LAMB at its 4.25e-4, scaled up so the weights move visibly.
  for kind, lr in (("lars", 10.5), ("lamb", 4.25e-2)):
    shapes = [shape for _, shape in VARIABLES[kind]]
    weights = [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in shapes]
    weights[2][:] = 0.0
    grads = [[(rng.standard_normal(s) * 0.01).astype(np.float32) for s in shapes] for _ in range(args.steps)]
    tf_weights, tf_slots, excluded = tf_run(kind, weights, grads, lr)
    assert excluded == [False, False, False, True, True, True], excluded  # the exclusion lists as named above
    t_weights, t_slots = torch_run(kind, weights, grads, lr, excluded)
    moved = max(rel_err(w1, w0) for w1, w0 in zip(tf_weights, weights) if np.any(w0))
    for label, ours, theirs in (("weights", tf_weights, t_weights), ("slots", tf_slots, t_slots)):
      errs = [rel_err(b, a) for a, b in zip(ours, theirs)]
      worst = max(worst, *errs)
      print(f"{kind} {label:8} largest relative error {max(errs):.2e} over {len(errs)} tensors "
            f"(weights moved by up to {moved:.1e} of their size)")
  ok = worst <= args.tolerance
  print(f"{'ok' if ok else 'FAILED'}: largest relative error {worst:.2e} (tolerance {args.tolerance:g})")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
