"""LARS and its schedule against NumPy implementations of the reference equations (mlperf_spec.md section 3)."""
import numpy as np
import pytest
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


# Hyperparameters where every term of the update moves the weights well past the tolerance: a weight decay large
# enough that g + wd w and wd |w| in the trust ratio dominate, eeta 1 (so the trust ratio is not a 1e-3 factor
# that hides the rest), and gradients of norm ~1e-7 in the "keras_epsilon" case, against which the 1e-7 epsilon is
# half the denominator.
EVERY_TERM = {
    "large_wd_eeta_1": dict(weight_decay=0.1, eeta=1.0, epsilon=0.0, grad_scale=1.0),
    "keras_epsilon": dict(weight_decay=0.0, eeta=1.0, epsilon=0.0, grad_scale=1e-7),
    "explicit_epsilon": dict(weight_decay=0.05, eeta=0.5, epsilon=1e-3, grad_scale=1e-3),
}


def _run_lars(case, steps=3, momentum=0.9):
  rng = np.random.default_rng(1)
  shapes = {"conv2d/kernel": (3, 3, 2, 4), "fc1000/kernel": (4, 3), "bn_conv1/gamma": (4,), "fc1000/bias": (3,)}
  init = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
  grads = [{n: (case["grad_scale"] * rng.normal(size=s)).astype(np.float32) for n, s in shapes.items()}
           for _ in range(steps)]
  lrs = [0.1, 0.05, 0.02][:steps]
  variables = [tf.Variable(v, name=n) for n, v in init.items()]
  opt = LARS(lambda step: tf.gather(tf.constant(lrs), step), momentum=momentum, weight_decay=case["weight_decay"],
             eeta=case["eeta"], epsilon=case["epsilon"]).build(variables)
  for g in grads:
    opt.apply([tf.constant(g[n]) for n in shapes])
  return {n: v.numpy() for n, v in zip(shapes, variables)}, init, grads, lrs


def _numpy_lars(init, grads, lrs, momentum, wd, eeta, eps, adapt_of):
  w = {n: v.astype(np.float64) for n, v in init.items()}
  m = {n: np.zeros_like(v) for n, v in w.items()}
  for g, lr in zip(grads, lrs):
    for n in w:
      w[n], m[n] = numpy_lars_step(w[n], g[n].astype(np.float64), m[n], lr, momentum, wd, eeta, eps, adapt_of(n))
  return w


@pytest.mark.parametrize("name", sorted(EVERY_TERM))
def test_lars_equals_numpy_where_every_term_matters(name):
  case = EVERY_TERM[name]
  got, init, grads, lrs = _run_lars(case)
  eps = case["epsilon"] or KERAS_EPSILON
  adapt = lambda n: not any(k in n for k in ("bn", "bias"))  # noqa: E731
  want = _numpy_lars(init, grads, lrs, 0.9, case["weight_decay"], case["eeta"], eps, adapt)
  scale = {n: np.abs(want[n] - init[n]).max() for n in want}  # how far the update moved each variable
  for n in want:
    np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-4 * scale[n] + 1e-12, err_msg=n)
  # The case is sensitive: dropping or changing any one term moves some variable by far more than the tolerance.
  variants = {"momentum 0": dict(momentum=0.0), "plain momentum SGD everywhere": dict(eeta=None),
              "batch norm and biases adapted too": dict(adapt=lambda n: True)}
  if case["weight_decay"]:
    variants.update({"no weight decay": dict(wd=0.0)})
  if case["grad_scale"] < 1e-2:
    variants.update({"no epsilon": dict(eps=1e-30)})
  for label, change in variants.items():
    args = dict(momentum=0.9, wd=case["weight_decay"], eeta=case["eeta"], eps=eps, adapt=adapt)
    args.update(change)
    if args["eeta"] is None:  # neither trust ratio nor weight decay on any variable
      args["eeta"], args["adapt"] = case["eeta"], lambda n: False
    other = _numpy_lars(init, grads, lrs, args["momentum"], args["wd"], args["eeta"], args["eps"], args["adapt"])
    worst = max(np.abs(other[n] - want[n]).max() / (1e-4 * scale[n] + 1e-5 * np.abs(want[n]).max() + 1e-12)
                for n in want)
    assert worst > 10, f"{name}: {label} stays within the tolerance, so the test could not see it"
