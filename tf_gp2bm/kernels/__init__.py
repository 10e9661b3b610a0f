"""The vendor kernel swap point: named hot spots a vendor module may replace (docs/vendor_kernels.md).

    python -m tf_gp2bm.train --task=resnet --kernels=acme.kernels ...

imports `acme.kernels`, which calls `tf_gp2bm.kernels.register(NAME, fn)` for the hot spots it replaces. Model and
optimizer code call `kernels.get(NAME)` while the train step is traced, so a replacement lands in the compiled step.
Each hot spot's contract is the docstring of its default in tf_gp2bm.kernels.defaults.

Importing this package does not load TensorFlow (the run-set driver hashes kernel modules with `module_files`);
the defaults load with the first hot spot that is asked for.
"""
import importlib

from tf_gp2bm.errors import InputError
from tf_gp2bm.kernels import registry
from tf_gp2bm.kernels.audit import files_sha256, module_files
from tf_gp2bm.kernels.registry import KernelError

__all__ = ["MLLOG_KEY", "KernelError", "audit", "check_gradients", "contract", "files_sha256", "get", "load_plugin", "loaded_module",
           "module_files", "names", "register", "replaced", "reset", "used"]

MLLOG_KEY = "vendor_kernels"  # the mllog event that carries audit(): module, replaced hot spots, sha256
_loaded = []  # the --kernels module of this process


def _declare_defaults():
  if not registry.declared():
    from tf_gp2bm.kernels import defaults  # TensorFlow loads here, with the first hot spot used
    registry.declare(defaults.HOT_SPOTS)


def get(name):
  """The implementation of hot spot `name` in force (call it while tracing, not when building the model)."""
  _declare_defaults()
  return registry.get(name)


get.autograph_info__ = registry.get.autograph_info__  # not converted by autograph (see registry)


def register(name, fn):
  """Replaces hot spot `name` with `fn`, which must take the default's parameters (see `contract(name)`)."""
  _declare_defaults()
  registry.register(name, fn, source=_loaded[-1] if _loaded else None)


def names():
  _declare_defaults()
  return registry.names()


def contract(name):
  """The hot spot's contract: its default's docstring."""
  _declare_defaults()
  return registry.hot_spot(name).default.__doc__


def replaced():
  return registry.replaced()


def used():
  """The replaced hot spots looked up so far, i.e. traced into a step (kernel_check --full_size skips a task
  whose step uses none)."""
  return registry.used()


def reset():
  """Back to the defaults (tests, the parity tool)."""
  registry.reset()
  _loaded.clear()


def loaded_module():
  return _loaded[-1] if _loaded else None


def load_plugin(module_name):
  """Imports the --kernels module, which registers its replacements at import time. Returns the replaced names.

  Anything that goes wrong while importing it, or a module that registers nothing, is bad input naming --kernels.
  """
  if not module_name:
    return []
  _declare_defaults()
  _loaded.append(module_name)
  try:
    importlib.import_module(module_name)
  except Exception as e:  # the vendor's code: whatever it raises is reported against the flag
    _loaded.pop()
    raise InputError(f"--kernels={module_name}: importing the module failed: {type(e).__name__}: {e}") from e
  mine = [name for name, source in registry.sources().items() if source == module_name]
  if not mine:
    _loaded.pop()
    raise InputError(f"--kernels={module_name}: the module registered no kernels (it must call "
                     f"tf_gp2bm.kernels.register(NAME, fn) when imported; hot spots: {', '.join(names())})")
  return replaced()


def audit(with_files=True):
  """What this process runs with: {module, replaced hot spots, sha256 over the module's files[, their paths]}."""
  module = loaded_module()
  files = module_files(module) if module else {}
  record = {"module": module, "replaced": replaced(), "sha256": files_sha256(files) if module else None}
  return dict(record, files=sorted(files)) if with_files else record


def check_gradients(variables, grads):
  """Raises, naming the variable and the replaced hot spots, when a gradient is None; returns `grads`."""
  for var, grad in zip(variables, grads):
    if grad is None:
      swapped = replaced()
      if not swapped:
        raise RuntimeError(f"no gradient reaches {var.name} (no kernels are replaced: a model bug)")
      # KernelError, not InputError: raised while the step is traced, it must survive autograph as itself.
      raise KernelError(f"--kernels={loaded_module()}: no gradient reaches {var.name} through the replaced hot "
                        f"spots ({', '.join(swapped)}); a replacement must be differentiable (tf.custom_gradient or "
                        f"a registered op gradient)")
  return grads
