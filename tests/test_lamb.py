"""LAMB and its LR schedule against a NumPy transcription of the reference equations (mlperf_spec.md section 4)."""
import numpy as np
import pytest
import tensorflow as tf

from tf_gp2bm import kernels
from tf_gp2bm.optimizers.lamb import EXCLUDE, LAMB, PolynomialDecayWarmup


def numpy_lamb(w, grads, lrs, beta_1, beta_2, eps, wd, excluded):
  m, v = np.zeros_like(w), np.zeros_like(w)
  w = w.astype(np.float64)
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    m_hat, v_hat = m / (1 - beta_1 ** t), v / (1 - beta_2 ** t)
    u = m_hat / (np.sqrt(v_hat) + eps)
    trust = 1.0
    if not excluded:
      u = u + wd * w
      w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(u)
      trust = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
    w = w - lr * trust * u
  return w


def numpy_lr(step, base, train_steps, warmup, start_warmup):
  decayed = base * (1 - min(step, train_steps) / train_steps)
  if warmup and step - start_warmup < warmup:
    return base * (step - start_warmup) / warmup
  return decayed


@pytest.mark.parametrize("warmup,start", [(0, 0), (3, 0), (3, -2)])
def test_lamb_matches_numpy(warmup, start):
  rng = np.random.default_rng(0)
  shapes = {"layer_0/attention/kernel": (6, 4), "layer_0/LayerNorm/gamma": (4,), "layer_0/output/bias": (4,),
            "cls/predictions/output_bias": (5,), "word_embeddings": (5, 3), "zero_init/kernel": (3, 2)}
  init = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
  init["zero_init/kernel"][:] = 0.0  # |w| = 0: trust ratio 1
  variables = [tf.Variable(value, name=name) for name, value in init.items()]
  steps, base, train_steps = 5, 0.02, 8
  schedule = PolynomialDecayWarmup(base, train_steps, warmup_steps=warmup, start_warmup_step=start)
  opt = LAMB(schedule, beta_1=0.8, beta_2=0.95, epsilon=1e-6, weight_decay=0.1).build(variables)
  grads = {n: [rng.normal(size=s).astype(np.float32) for _ in range(steps)] for n, s in shapes.items()}
  lrs = []
  for t in range(steps):
    lrs.append(float(opt.current_learning_rate()))
    opt.apply([tf.constant(grads[n][t]) for n in shapes])
  assert int(opt.iterations.numpy()) == steps
  np.testing.assert_allclose(lrs, [numpy_lr(t, base, train_steps, warmup, start) for t in range(steps)], rtol=1e-6)
  for var, name in zip(variables, shapes):
    excluded = any(k in name for k in EXCLUDE)
    assert opt.excluded(var) == excluded, name
    want = numpy_lamb(init[name], grads[name], lrs, 0.8, 0.95, 1e-6, 0.1, excluded)
    np.testing.assert_allclose(var.numpy(), want, rtol=2e-5, atol=1e-6, err_msg=name)


def test_excluded_names_are_the_reference_list():
  assert EXCLUDE == ("LayerNorm", "layer_norm", "bias")


def test_schedule_decays_linearly_to_zero_and_stays():
  s = PolynomialDecayWarmup(4.25e-4, 6700)
  assert float(s(0)) == pytest.approx(4.25e-4)
  assert float(s(3350)) == pytest.approx(4.25e-4 / 2)
  assert float(s(6700)) == 0.0 and float(s(9000)) == 0.0


def test_lamb_step_is_one_multi_tensor_hot_spot_call():
  calls = []
  default = kernels.get("lamb_apply")

  def counting(variables, grads, m_slots, v_slots, lr, step, beta_1, beta_2, epsilon, weight_decay, adapt):
    calls.append([v.name for v in variables])
    default(variables, grads, m_slots, v_slots, lr, step, beta_1, beta_2, epsilon, weight_decay, adapt)

  kernels.register("lamb_apply", counting)
  try:
    variables = [tf.Variable(tf.ones([2]), name="dense/kernel"), tf.Variable(tf.ones([2]), name="dense/bias")]
    opt = LAMB(lambda s: 0.1).build(variables)
    opt.apply([tf.ones([2]), None])  # a variable without a gradient is left out of the call
  finally:
    kernels.reset()
  assert calls == [["dense/kernel:0"]]
  assert variables[1].numpy().tolist() == [1.0, 1.0]


def test_lamb_equals_numpy_where_every_term_matters():
  """Gradients of ~1e-6, against which epsilon 1e-6 is as large as sqrt(v_hat); weight decay 1 so that wd * w is as
  large as the adaptive step; betas far from 1 and 3 steps, so the bias corrections differ from 1 by 10-50 %."""
  rng = np.random.default_rng(3)
  shapes = {"layer_0/attention/kernel": (4, 3), "layer_0/LayerNorm/gamma": (3,), "layer_0/output/bias": (3,)}
  init = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
  steps, b1, b2, eps, wd = 3, 0.5, 0.8, 1e-6, 1.0
  grads = {n: [(1e-6 * rng.normal(size=s)).astype(np.float32) for _ in range(steps)] for n, s in shapes.items()}
  lrs = [0.01, 0.008, 0.006]
  variables = [tf.Variable(v, name=n) for n, v in init.items()]
  opt = LAMB(lambda step: tf.gather(tf.constant(lrs), step), beta_1=b1, beta_2=b2, epsilon=eps,
             weight_decay=wd).build(variables)
  for t in range(steps):
    opt.apply([tf.constant(grads[n][t]) for n in shapes])

  def numpy_all(**change):
    args = dict(beta_1=b1, beta_2=b2, eps=eps, wd=wd, excluded=lambda n: any(k in n for k in EXCLUDE))
    args.update(change)
    return {n: numpy_lamb(init[n], grads[n], lrs, args["beta_1"], args["beta_2"], args["eps"], args["wd"],
                          args["excluded"](n)) for n in shapes}

  want = numpy_all()
  scale = {n: np.abs(want[n] - init[n]).max() for n in shapes}
  for var, n in zip(variables, shapes):
    np.testing.assert_allclose(var.numpy(), want[n], rtol=1e-5, atol=1e-4 * scale[n], err_msg=n)
  # Each term moves some variable by far more than the tolerance, so a bug in any of them is seen.
  variants = {"no epsilon": dict(eps=0.0), "no weight decay": dict(wd=0.0), "epsilon 1e-8": dict(eps=1e-8),
              "beta_1 0.9": dict(beta_1=0.9), "beta_2 0.999": dict(beta_2=0.999),
              "nothing excluded": dict(excluded=lambda n: False),
              "everything excluded": dict(excluded=lambda n: True)}
  for label, change in variants.items():
    other = numpy_all(**change)
    worst = max(np.abs(other[n] - want[n]).max() / (1e-4 * scale[n] + 1e-5 * np.abs(want[n]).max()) for n in shapes)
    assert worst > 10, f"{label} stays within the tolerance, so the test could not see it"


def test_lamb_bias_correction_uses_the_one_based_update_number():
  """After one update of gradient g from zero slots, m_hat = g and v_hat = g^2 exactly: u = g / (|g| + eps)."""
  w = tf.Variable([[1.0, -2.0]], name="dense/bias")  # excluded: w <- w - lr * u
  opt = LAMB(lambda step: 1.0, beta_1=0.9, beta_2=0.999, epsilon=0.0).build([w])
  opt.apply([tf.constant([[3.0, -0.5]])])
  np.testing.assert_allclose(w.numpy(), [[0.0, -1.0]], atol=2e-5)  # float32 1 - 0.999 is off by 7e-6
