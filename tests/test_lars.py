"""LARS and its schedule against NumPy implementations of the reference equations (mlperf_spec.md section 3)."""
import numpy as np
import tensorflow as tf

from tf_gp2bm.optimizers.lars import KERAS_EPSILON, LARS, PolynomialWarmup


def numpy_lars_step(w, g, m, lr, momentum, wd, eeta, eps, adapt):
  if adapt:
    wn, gn = np.linalg.norm(w), np.linalg.norm(g)
    trust = eeta * wn / (gn + wd * wn + eps) if wn > 0 and gn > 0 else 1.0
    g = g + wd * w
    scaled = lr * trust
  else:
    scaled = lr
  m = momentum * m - scaled * g
  return w + m, m


def test_lars_updates_equal_numpy():
  rng = np.random.default_rng(0)
  shapes = {"conv2d/kernel": (3, 3, 4, 8), "batch_normalization/gamma": (8,), "fc1000/bias": (5,),
            "fc1000/kernel": (8, 5)}
  init = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
  variables = [tf.Variable(v, name=n) for n, v in init.items()]
  schedule = lambda step: 0.5 + 0.1 * tf.cast(step, tf.float32)  # noqa: E731
  opt = LARS(schedule, momentum=0.9, weight_decay=5e-5, eeta=0.001, epsilon=0.0).build(variables)
  ref_w = dict(init)
  ref_m = {n: np.zeros_like(v) for n, v in init.items()}
  for step in range(3):
    grads = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
    opt.apply([tf.constant(grads[v.name.split(":")[0]]) for v in variables])
    for n in shapes:
      adapt = not any(k in n for k in ("batch_normalization", "bias"))
      ref_w[n], ref_m[n] = numpy_lars_step(ref_w[n], grads[n], ref_m[n], 0.5 + 0.1 * step, 0.9, 5e-5, 0.001,
                                           KERAS_EPSILON, adapt)
  for v in variables:
    np.testing.assert_allclose(v.numpy(), ref_w[v.name.split(":")[0]], rtol=1e-5, atol=1e-6)
  assert int(opt.iterations.numpy()) == 3


def test_epsilon_zero_means_the_keras_epsilon_as_in_the_reference():
  # |w| = 1e-6, |g| = 1e-7, no weight decay: trust = eeta |w| / (|g| + 1e-7) = 0.001 * 1e-6 / 2e-7 = 5e-3
  w = tf.Variable(np.full((1,), 1e-6, np.float32), name="dense/kernel")
  opt = LARS(lambda s: 1.0, momentum=0.0, weight_decay=0.0, eeta=0.001, epsilon=0.0).build([w])
  opt.apply([tf.constant([1e-7])])
  np.testing.assert_allclose(w.numpy(), [1e-6 - 5e-3 * 1e-7], rtol=1e-6)


def test_lars_trust_ratio_is_one_for_zero_weights():
  w = tf.Variable(np.zeros((4, 4), np.float32), name="dense/kernel")
  opt = LARS(lambda s: 1.0, momentum=0.0, weight_decay=0.0).build([w])
  opt.apply([tf.ones((4, 4))])
  np.testing.assert_allclose(w.numpy(), -np.ones((4, 4)))  # trust 1: plain SGD step


def test_schedule_values_equal_formula():
  base, warmup, train, end, power = 10.5, 784, 14896, 1e-4, 2.0
  sched = PolynomialWarmup(base, warmup, train, end_lr=end, power=power)
  decay = train - warmup + 1
  assert sched.decay_steps == 14113
  for step in (0, 1, 392, 783, 784, 785, 5000, 14896, 20000):
    if step < warmup:
      want = base * step / warmup
    else:
      s = min(step - warmup, decay)
      want = (base - end) * (1 - s / decay) ** power + end
    np.testing.assert_allclose(float(sched(tf.constant(step, tf.int64))), want, rtol=1e-5)
