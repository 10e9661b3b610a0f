"""The trainer's run is one frozen RunConfig, built once from the command line: the trainer-wide settings, the seed
(given or drawn once) and the task's validated Config; the task gets the seed when it is built."""
import dataclasses

import pytest

from conftest import ROOT
from tf_gp2bm import cli_flags, dry_run, tasks
from tf_gp2bm.errors import InputError
from tf_gp2bm.run_config import RunConfig


def _config(*argv, task="resnet"):
  fv = cli_flags.new_flag_values(task)
  cli_flags.parse(["test", f"--task={task}", f"--flagfile={ROOT}/flags/{task}/smoke.flags", *argv], fv)
  return RunConfig.from_flags(fv)


def test_the_run_config_is_frozen_and_holds_the_seed():
  config = _config("--seed=42", "--output_dir=out", "--profile_steps=3,5")
  assert config.seed == 42 and config.task == "resnet" and config.output_dir == "out"
  assert config.profile_steps == (3, 5) and config.steps_per_loop == 18 and not config.closed
  assert config.task_config.num_classes == 10 and not config.dry_run  # the smoke flagfile's
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.seed = 1
  assert len({_config().seed for _ in range(3)}) > 1  # no --seed: each run draws its own (int32-safe)
  assert all(0 <= _config().seed < 2 ** 31 for _ in range(3))


def test_a_bad_task_flag_fails_building_the_run_config():
  with pytest.raises(InputError, match="--global_batch_size=60: expected a multiple of --accumulation_steps=7"):
    _config("--global_batch_size=60", "--accumulation_steps=7")


def test_the_task_is_built_with_the_runs_seed():
  config = _config("--seed=7", task="bert")
  task = tasks.create("bert", dry_run.PlanningRuntime(1), config.task_config, config.seed)
  assert task.seed == 7 and task.config is config.task_config
