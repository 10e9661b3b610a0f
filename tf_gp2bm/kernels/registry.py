"""The hot-spot table: each name's default, its contract, and what a vendor module put in its place.

Plain bookkeeping with no TensorFlow and nothing from the rest of the project, so anything may import it without
a cycle. tf_gp2bm.kernels fills it with the defaults (tf_gp2bm.kernels.defaults) and loads vendor modules.
"""
import contextlib
import dataclasses
import functools
import inspect
from typing import Any, Callable, Optional


class KernelError(Exception):
  """A replacement breaks its hot spot's contract (signature, output shape or dtype). A plain Exception subclass so
  that autograph re-raises it as itself (with the trace location) from inside tf.function."""


@dataclasses.dataclass(frozen=True)
class HotSpot:
  """name: what vendors register; default: the reference implementation, whose docstring is the contract;
  expect(**arguments) -> the structure of objects with .shape/.dtype the output must match (None: no output);
  optimizer: True for the hot spots that update variables instead of returning tensors."""
  name: str
  default: Callable
  expect: Optional[Callable[..., Any]] = None
  optimizer: bool = False

  @property
  def parameters(self):
    return list(inspect.signature(self.default).parameters)


_HOT_SPOTS = {}
_REPLACED = {}  # name -> (fn, module that registered it)
_USED = set()  # replaced hot spots looked up (so traced into a step) since the last reset


def declare(hot_spots):
  for spot in hot_spots:
    _HOT_SPOTS[spot.name] = spot


def declared():
  return bool(_HOT_SPOTS)


def names():
  return sorted(_HOT_SPOTS)


def hot_spot(name):
  if name not in _HOT_SPOTS:
    raise KeyError(f"unknown kernel hot spot {name!r}; known: {', '.join(names())}")
  return _HOT_SPOTS[name]


def _signature_mismatch(fn, spot):
  """None when `fn` accepts the default's parameters by the same names in the same order, else a description."""
  try:
    params = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return None  # builtins and C extensions: nothing to compare
  kinds = {p.kind for p in params}
  if inspect.Parameter.VAR_POSITIONAL in kinds and inspect.Parameter.VAR_KEYWORD in kinds:
    return None  # a generic wrapper forwards everything
  got = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
  want = spot.parameters
  if got[:len(want)] == want and all(p.default is not p.empty for p in params if p.name in got[len(want):]):
    return None
  return f"takes ({', '.join(got)}); the contract is {spot.name}({', '.join(want)})"


def register(name, fn, source=None):
  """Puts `fn` in place of hot spot `name`. `source` names the vendor module (default: fn's module)."""
  if name not in _HOT_SPOTS:
    raise KernelError(f"kernels.register({name!r}): unknown hot spot; known: {', '.join(names())}")
  if not callable(fn):
    raise KernelError(f"kernels.register({name!r}): {fn!r} is not callable")
  mismatch = _signature_mismatch(fn, _HOT_SPOTS[name])
  source = source or getattr(fn, "__module__", None) or "?"
  if mismatch:
    raise KernelError(f"kernels.register({name!r}) from {source}: {mismatch}")
  _REPLACED[name] = (fn, source)


def get(name):
  """The implementation in force: a replacement (wrapped in its output check) or the default."""
  spot = hot_spot(name)
  if name not in _REPLACED:
    return spot.default
  fn, source = _REPLACED[name]
  _USED.add(name)
  return _checked(spot, fn, source)


def replaced():
  return sorted(_REPLACED)


def sources():
  """{hot spot: module that replaced it}."""
  return {name: source for name, (_, source) in sorted(_REPLACED.items())}


def used():
  """The replaced hot spots that have been looked up: those a step traced so far contains."""
  return sorted(_USED)


def reset():
  _REPLACED.clear()
  _USED.clear()


@contextlib.contextmanager
def defaults_only():
  """Within the block every hot spot is its default (the parity tool's reference side)."""
  saved = dict(_REPLACED)
  _REPLACED.clear()
  try:
    yield
  finally:
    _REPLACED.update(saved)


def _guarded(spot, fn, source):
  """Runs the replacement; whatever the vendor's code raises when called or traced becomes a KernelError naming
  --kernels and the module (a KernelError of its own, e.g. a nested contract check, passes as it is)."""
  @functools.wraps(fn)
  def call(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except KernelError:
      raise
    except Exception as e:
      first = (str(e).strip().splitlines() or [""])[0][:300]
      raise KernelError(f"--kernels={source}: hot spot {spot.name} raised {type(e).__name__}: {first}") from e
  call.autograph_info__ = frozenset()
  return call


def _checked(spot, fn, source):
  """Runs the replacement and compares its output with the contract's shapes and dtypes (at trace time)."""
  fn = _guarded(spot, fn, source)
  if spot.expect is None:
    return fn
  signature = inspect.signature(spot.default)

  @functools.wraps(fn)
  def call(*args, **kwargs):
    out = fn(*args, **kwargs)
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    problem = _compare(out, spot.expect(**bound.arguments))
    if problem:
      raise KernelError(f"{spot.name} from {source} returned {problem[0]}; expected {problem[1]}")
    return out
  call.autograph_info__ = frozenset()
  return call


# The marker tf.autograph.experimental.do_not_convert sets (this module does not import TensorFlow): the lookup and
# the output check stay plain Python inside tf.function, so a contract error reaches the caller as a KernelError.
get.autograph_info__ = frozenset()


def describe(t):
  dims = ",".join("?" if d is None else str(d) for d in _dims(t.shape))
  return f"[{dims}] {getattr(t.dtype, 'name', t.dtype)}"


def _dims(shape):
  try:
    return list(shape.as_list())
  except (AttributeError, ValueError):
    return list(shape) if shape is not None else []


def _compare(out, want):
  """(got, expected) descriptions at the first difference, or None."""
  if isinstance(want, (tuple, list)):
    if not isinstance(out, (tuple, list)) or len(out) != len(want):
      return (f"{type(out).__name__} of {len(out) if isinstance(out, (tuple, list)) else 1}",
              f"a tuple of {len(want)}")
    for o, w in zip(out, want):
      problem = _compare(o, w)
      if problem:
        return problem
    return None
  if not hasattr(out, "shape") or not hasattr(out, "dtype"):
    return type(out).__name__, describe(want)
  got, exp = _dims(out.shape), _dims(want.shape)
  same_shape = len(got) == len(exp) and all(g is None or e is None or g == e for g, e in zip(got, exp))
  if not same_shape or out.dtype != want.dtype:
    return describe(out), describe(want)
  return None
