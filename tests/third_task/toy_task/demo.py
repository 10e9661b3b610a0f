"""`python -m toy_task.demo --out=DIR`: the toy task's data, Gaussian blobs around four corners (5 % of the
labels flipped, so accuracy stays below 1.0)."""
import argparse
import os

import numpy as np

from toy_task.spec import DATA_FILE, EVAL_EXAMPLES, TRAIN_EXAMPLES


def blobs(rng, n):
  y = rng.integers(0, 4, n).astype(np.int32)
  centers = np.array([[-2, -2], [-2, 2], [2, -2], [2, 2]], np.float32)
  x = centers[y] + rng.normal(0, 0.8, (n, 2)).astype(np.float32)
  flip = rng.random(n) < 0.05
  y[flip] = (y[flip] + 1) % 4
  return x, y


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--out", required=True)
  a = p.parse_args(argv)
  rng = np.random.default_rng(0)
  (train_x, train_y), (eval_x, eval_y) = blobs(rng, TRAIN_EXAMPLES), blobs(rng, EVAL_EXAMPLES)
  os.makedirs(a.out, exist_ok=True)
  np.savez(os.path.join(a.out, DATA_FILE), train_x=train_x, train_y=train_y, eval_x=eval_x, eval_y=eval_y)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
