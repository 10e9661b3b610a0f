"""The task registry: a task registers once, by name, as a package that holds `config.py` (its `Config`), `spec.py`
(its `SPEC`, what the driver knows) and `task.py` (its `TASK`, the Task subclass).

The two built-in tasks are registered here. Another package registers itself with `register(name, package)` in the
process that runs it, or for every process (the driver starts the trainer as a child) through the Python entry point
group `tf_gp2bm.tasks` (entry name = task name, value = package). TensorFlow-free: the config and spec modules are
too; only `task_class` imports the model.
"""
import importlib
from importlib import metadata

from tf_gp2bm.errors import InputError

ENTRY_POINT_GROUP = "tf_gp2bm.tasks"
_PACKAGES = {"resnet": "tf_gp2bm.tasks.resnet", "bert": "tf_gp2bm.tasks.bert"}
_entry_points_read = False


def register(name, package):
  """Makes `--task=name` the task of `package` (a module path). Registering the same package again is a no-op."""
  if not name.isidentifier():
    raise ValueError(f"task name {name!r}: expected a Python identifier (it names flags and folders)")
  known = _PACKAGES.get(name)
  if known is not None and known != package:
    raise ValueError(f"task {name!r} is already registered by {known}; {package} cannot take its name")
  _PACKAGES[name] = package


def _read_entry_points():
  global _entry_points_read
  if not _entry_points_read:
    _entry_points_read = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
      register(entry.name, entry.value)


def packages():
  """Task name -> package, in registration order (the built-in tasks first)."""
  _read_entry_points()
  return dict(_PACKAGES)


def names():
  return list(packages())


def package(name):
  known = packages()
  if name not in known:
    raise InputError(f"--task={name}: expected one of {', '.join(sorted(known))}")
  return known[name]


def _attribute(name, module, attribute):
  return getattr(importlib.import_module(f"{package(name)}.{module}"), attribute)


def config_class(name):
  """The task's frozen Config class (TensorFlow-free)."""
  return _attribute(name, "config", "Config")


def spec(name):
  """The task's TaskSpec (TensorFlow-free)."""
  found = _attribute(name, "spec", "SPEC")
  if found.name != name:
    raise ValueError(f"{package(name)}.spec.SPEC is named {found.name!r}, but the task is registered as {name!r}")
  return found


def task_class(name):
  """The task's Task subclass (imports TensorFlow and the model)."""
  return _attribute(name, "task", "TASK")
