"""Compares replaced hot spots with their defaults: forward, gradients, XLA compilation, optimizer trajectories.

The engine of `python -m tf_gp2bm.kernel_check`; inputs come from tf_gp2bm.kernels.cases.
"""
import dataclasses

import numpy as np
import tensorflow as tf

tf.get_logger().setLevel("ERROR")  # one tf.function per case retraces by design
from tf_gp2bm.kernels import cases, registry

# Inputs the contract does not differentiate: masks and loss weights are data, moving statistics are assigned.
NOT_DIFFERENTIATED = {"mask", "weights", "moving_mean", "moving_variance"}
GRADIENT_FLOOR = 1e-3  # a gradient's error is relative to at least this fraction of the whole gradient's norm


@dataclasses.dataclass
class Row:
  hot_spot: str
  precision: str
  case: str
  forward: str
  gradient: str
  xla: str
  ok: bool
  note: str = ""  # the error a cell refers to, printed under the table


def _norm(a):
  return float(np.linalg.norm(np.asarray(a, np.float64).ravel()))


def _relative(got, want, floor=0.0):
  return _norm(np.asarray(got, np.float64) - np.asarray(want, np.float64)) / max(_norm(want), floor, 1e-30)


def _differentiated(args):
  return [k for k, v in args.items()
          if k not in NOT_DIFFERENTIATED and isinstance(v, tf.Tensor) and v.dtype.is_floating]


def _evaluate(fn, args, jit):
  """(outputs as float64 arrays, {input: gradient or None}) of fn(**args); the gradient is that of the first
  output against a fixed random cotangent."""
  wrt = _differentiated(args)

  def run(*tensors):
    call = dict(args, **dict(zip(wrt, tensors)))
    with tf.GradientTape() as tape:
      tape.watch(tensors)
      out = fn(**call)
      first = tf.cast(tf.nest.flatten(out)[0], tf.float32)
      cotangent = tf.cast(tf.random.stateless_normal(tf.shape(first), [1, 2]), tf.float32)
      loss = tf.reduce_sum(first * cotangent)
    grads = tape.gradient(loss, list(tensors))
    return out, grads

  if jit:
    run = tf.function(run, jit_compile=True)
  out, grads = run(*[args[k] for k in wrt])
  outputs = [np.asarray(tf.cast(o, tf.float64)) for o in tf.nest.flatten(out)]
  return outputs, {k: (None if g is None else np.asarray(tf.cast(g, tf.float64))) for k, g in zip(wrt, grads)}


def _compare(got, want, tolerance):
  """(forward error, gradient error or a problem, ok)."""
  (out_r, grad_r), (out_d, grad_d) = got, want
  forward = max((_relative(r, d) for r, d in zip(out_r, out_d)), default=0.0)
  total = _norm(np.concatenate([g.ravel() for g in grad_d.values() if g is not None] or [np.zeros(1)]))
  gradient, missing = 0.0, []
  for k, d in grad_d.items():
    if d is None:
      continue
    if grad_r.get(k) is None:
      missing.append(k)
      continue
    gradient = max(gradient, _relative(grad_r[k], d, GRADIENT_FLOOR * total))
  ok = forward <= tolerance and gradient <= 2 * tolerance and not missing
  grad_text = f"no gradient for {', '.join(missing)}" if missing else _fmt(gradient, 2 * tolerance)
  return _fmt(forward, tolerance), grad_text, ok


def _fmt(err, tolerance):
  return f"{err:.1e}" + ("" if err <= tolerance else f" > {tolerance:.0e}")


def _problem(e):
  """One line of an error: XLA's 'unsupported operations' line when there is one, else the last line."""
  text = [line.strip() for line in str(e).strip().splitlines() if line.strip()] or [""]
  line = next((t for t in text if "unsupported operations" in t or "No registered" in t), text[-1])
  return f"{type(e).__name__}: {line}"[:300]


def _least_precise(args):
  """The float dtype among the case's tensors that sets its tolerance (bfloat16 < float16 < float32)."""
  dtypes = {v.dtype for v in args.values() if isinstance(v, tf.Tensor) and v.dtype.is_floating}
  return next((d for d in (tf.bfloat16, tf.float16) if d in dtypes), tf.float32)


def check_forward(name, precision, tolerances, xla):
  """Rows for hot spot `name` at `precision`; `tolerances`: {dtype name: relative tolerance}."""
  rows = []
  replacement = registry.get(name)
  default = registry.hot_spot(name).default
  for label, args in cases.forward_cases(name, precision):
    tolerance = tolerances[_least_precise(args).name]
    with registry.defaults_only():
      want = _evaluate(default, args, jit=False)
    try:
      forward, gradient, ok = _compare(_evaluate(replacement, args, jit=False), want, tolerance)
    except Exception as e:  # the vendor's kernel: report whatever it raises against this case
      rows.append(Row(name, precision, label, "error", "-", "-", False, _problem(e)))
      continue
    xla_text, note = "not checked", ""
    if xla:
      try:
        with registry.defaults_only():
          want_jit = _evaluate(default, args, jit=True)
        f, g, xla_ok = _compare(_evaluate(replacement, args, jit=True), want_jit, tolerance)
        xla_text = "ok" if xla_ok else f"{f} / {g}"
        ok = ok and xla_ok
      except Exception as e:  # e.g. a custom op without an XLA kernel
        xla_text, ok, note = "fails", False, "under jit_compile: " + _problem(e)
    rows.append(Row(name, precision, label, forward, gradient, xla_text, ok, note))
  return rows


def _state_labels(name):
  """What each entry of a _trajectory state is: the variables, then each slot of each variable."""
  names = [n for n, _, _ in cases.OPTIMIZER_VARIABLES]
  return names + [f"{n} slot {slot}" for slot in cases.optimizer_slots(name) for n in names]


def _trajectory(fn, name, steps, jit):
  """Values of every variable and slot after each of `steps` updates through hot spot `fn`."""
  names, values, adapt = cases.optimizer_state(0)
  variables = [tf.Variable(v, name=n) for n, v in zip(names, values)]
  slots = [[tf.Variable(tf.zeros_like(v)) for v in values] for _ in cases.optimizer_slots(name)]

  def step(grads, t):
    scalars = cases.optimizer_scalars(name, tf.constant(0.05), tf.cast(t + 1, tf.float32))
    if name.endswith("_apply"):
      fn(variables, grads, *slots, **scalars, adapt=adapt)
    else:
      for i, (v, g) in enumerate(zip(variables, grads)):
        fn(v, g, *[s[i] for s in slots], **scalars, adapt=adapt[i])

  if jit:
    step = tf.function(step, jit_compile=True)
  states = []
  for t in range(steps):
    step(cases.optimizer_grads(t), tf.constant(t))
    states.append([v.numpy() for v in variables] + [s.numpy() for group in slots for s in group])
  return states


def _trajectory_error(got, want, name):
  """(largest error relative to the default's value over every variable and slot after every step, where: the
  variable or slot and step of the first entry with that error)."""
  labels = _state_labels(name)
  errors = [(_relative(a, b), f"{label} after step {t + 1}")
            for t, (g, w) in enumerate(zip(got, want)) for label, a, b in zip(labels, g, w)]
  return max(errors, key=lambda e: e[0])


def check_optimizer(name, steps, tolerance, xla):
  with registry.defaults_only():
    want = _trajectory(registry.hot_spot(name).default, name, steps, jit=False)
  replacement = registry.get(name)
  case = f"{steps} steps over {len(cases.OPTIMIZER_VARIABLES)} variables"
  try:
    err, where = _trajectory_error(_trajectory(replacement, name, steps, jit=False), want, name)
  except Exception as e:  # the vendor's kernel
    return [Row(name, "fp32", case, "error", "-", "-", False, _problem(e))]
  updates, ok = _fmt(err, tolerance), err <= tolerance
  note = "" if ok else f"{name}: largest difference in {where}"
  xla_text = "not checked"
  if xla:
    try:
      err, where = _trajectory_error(_trajectory(replacement, name, steps, jit=True), want, name)
      xla_text = "ok" if err <= tolerance else _fmt(err, tolerance)
      if err > tolerance:
        note = note or f"{name} under jit_compile: largest difference in {where}"
      ok = ok and err <= tolerance
    except Exception as e:
      xla_text, ok, note = "fails", False, "under jit_compile: " + _problem(e)
  return [Row(name, "fp32", case, updates, "(updates)", xla_text, ok, note)]


def table(rows):
  header = ("hot spot", "precision", "case", "output", "gradient", "xla", "")
  notes = list(dict.fromkeys(r.note for r in rows if r.note))
  lines = [header] + [(r.hot_spot, r.precision, r.case, r.forward, r.gradient, r.xla,
                       ("ok" if r.ok else "DIFFERS") + (f" [{notes.index(r.note) + 1}]" if r.note else ""))
                      for r in rows]
  widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
  text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
  text.insert(1, "  ".join("-" * w for w in widths))
  text += [f"[{i}] {note}" for i, note in enumerate(notes, start=1)]
  return "\n".join(text)
