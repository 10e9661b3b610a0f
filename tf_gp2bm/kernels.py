"""The vendor kernel swap point: named hot spots that a vendor module may replace.

    python -m tf_gp2bm.train --task=resnet --kernels=my_vendor.kernels ...

imports `my_vendor.kernels`, which calls `tf_gp2bm.kernels.register(NAME, fn)` for the hot spots it replaces.
Model and optimizer code call `tf_gp2bm.kernels.get(NAME)` when they are built/traced, so a replacement takes
effect in the compiled step. Each name's contract (arguments, shapes, return value) is documented in DEFAULTS
below and in docs/vendor_kernels.md; the defaults are plain TensorFlow ops.
"""
import importlib

from tf_gp2bm.errors import InputError

_DEFAULTS = {}
_REGISTRY = {}


def default(name, doc):
  """Decorator used by tf_gp2bm modules to declare a hot spot and its default implementation."""
  def wrap(fn):
    fn.__doc__ = doc
    _DEFAULTS[name] = fn
    return fn
  return wrap


def register(name, fn):
  """Replaces hot spot `name` with `fn` (same signature and semantics as the default)."""
  _load_defaults()
  if name not in _DEFAULTS:
    raise InputError(f"kernels.register({name!r}): unknown hot spot; known: {', '.join(sorted(_DEFAULTS))}")
  _REGISTRY[name] = fn


def get(name):
  _load_defaults()
  if name not in _DEFAULTS:
    raise KeyError(f"unknown kernel hot spot {name!r}")
  return _REGISTRY.get(name, _DEFAULTS[name])


def reset():
  """Back to the defaults (tests)."""
  _REGISTRY.clear()


def replaced():
  return sorted(_REGISTRY)


def names():
  _load_defaults()
  return sorted(_DEFAULTS)


def load_plugin(module_name):
  """Imports a vendor module given by --kernels; it registers its replacements at import time."""
  if not module_name:
    return []
  try:
    importlib.import_module(module_name)
  except ImportError as e:
    raise InputError(f"--kernels={module_name}: cannot import the module ({e})") from None
  return replaced()


_DECLARING_MODULES_LOADED = []


def _load_defaults():
  # The defaults live next to the code that uses them; importing these modules declares them. Import all of them
  # once, whatever was imported first (a task importing lars alone must not hide the model-side defaults).
  if not _DECLARING_MODULES_LOADED:
    _DECLARING_MODULES_LOADED.append(True)
    importlib.import_module("tf_gp2bm.optimizers.lars")
    importlib.import_module("tf_gp2bm.optimizers.lamb")
    importlib.import_module("tf_gp2bm.ops")
