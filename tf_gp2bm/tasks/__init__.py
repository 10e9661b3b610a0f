"""The task registry: --task NAME -> the module that defines it (config flags, data, model, steps)."""
import importlib

from tf_gp2bm.errors import InputError

# Modules are imported when the registry is first read, which also defines each task's absl flags, so a
# flagfile may name flags of any task.
_TASK_MODULES = {
    "resnet": "tf_gp2bm.tasks.resnet.task",
    "bert": "tf_gp2bm.tasks.bert.task",
}


def define_all_flags():
  for module in _TASK_MODULES.values():
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
