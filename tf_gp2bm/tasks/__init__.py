"""The task registry: --task NAME -> the module that defines it, and `create` (flags -> validated config -> task).

Each task's flags live in its TensorFlow-free config module; `define_all_flags` imports every one of them, so a
flagfile may name flags of any task and --help answers before TensorFlow loads.
"""
import importlib

from tf_gp2bm.errors import InputError

_TASK_MODULES = {
    "resnet": "tf_gp2bm.tasks.resnet.task",
    "bert": "tf_gp2bm.tasks.bert.task",
}


def define_all_flags():
  for module in _TASK_MODULES.values():
    module = module.rsplit(".", 1)[0] + ".config"
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      if not module.startswith(e.name or "?"):  # that task is not installed in this tree
        raise


def get_task_class(name):
  if name not in _TASK_MODULES:
    raise InputError(f"--task={name!r}: expected one of {', '.join(sorted(_TASK_MODULES))}")
  return importlib.import_module(_TASK_MODULES[name]).TASK


def names():
  return sorted(_TASK_MODULES)


def config_from_flags(name, flag_values):
  """The task's validated config; raises InputError naming the first bad flag."""
  config = get_task_class(name).Config.from_flags(flag_values)
  config.validate(closed=config.closed)
  return config


def create(name, runtime, flag_values):
  """from_flags + validate + construct: the one way train.py and bench.py build a task."""
  return get_task_class(name)(runtime, config_from_flags(name, flag_values))
