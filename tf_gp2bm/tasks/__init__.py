"""Tasks: `--task NAME` -> the task package registered under that name (tasks/registry.py), and `create`
(validated config -> task). Each task's flags are generated from its TensorFlow-free Config (tf_gp2bm.cli_flags)."""
from tf_gp2bm.tasks.registry import config_class, names, register, task_class  # noqa: F401  (the public API)

def config_from_flags(name, flag_values):
  """The task's validated config; raises InputError naming the first bad flag."""
  config = config_class(name).from_flags(flag_values)
  config.validate(closed=config.closed)
  return config


def create(name, runtime, config, seed):
  """The task `name` for a validated `config` (RunConfig.task_config) and the run's seed."""
  return task_class(name)(runtime, config, seed)
