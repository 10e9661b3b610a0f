"""One training run's configuration, read from the command line once and frozen: the trainer-wide settings, the
seed and the task's validated Config. training_run, bench and the tests run from it; nothing reads flags after.
TensorFlow-free.
"""
import dataclasses
import os
from typing import Optional, Tuple

from tf_gp2bm import tasks
from tf_gp2bm.cli_flags import parse_profile_steps
from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks.base import TaskConfig


def draw_seed():
  """A fresh seed for a run that was given none (int32-safe: TensorFlow, NumPy and the seed checker take it)."""
  return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


@dataclasses.dataclass(frozen=True)
class RunConfig:
  task: str                     # the registered task name
  task_config: TaskConfig       # that task's Config, validated
  seed: int                     # --seed, or drawn once when not given
  output_dir: Optional[str]
  distribution: str
  precision: str
  xla: bool
  steps_per_loop: int
  kernels: Optional[str]
  deterministic: bool
  cache_clear: bool
  submission_org: str
  submission_platform: str
  submission_status: str
  weights_digest: bool
  config_name: str
  profile_steps: Optional[Tuple[int, int]] = None
  dry_run_replicas: Optional[int] = None  # a dry run, planning for this many replicas (tf_gp2bm.dry_run)

  @property
  def closed(self):
    return self.task_config.closed

  @property
  def dry_run(self):
    return self.dry_run_replicas is not None

  @classmethod
  def from_flags(cls, flag_values):
    """The run that parsed flags describe; raises InputError for a bad task config (or no --task)."""
    if not flag_values.task:
      raise InputError("--task is required")
    dry_run = "dry_run" in flag_values and flag_values.dry_run  # train's flag; bench has none
    return cls(
        task=flag_values.task, task_config=tasks.config_from_flags(flag_values.task, flag_values),
        seed=flag_values.seed if flag_values.seed is not None else draw_seed(),
        output_dir=flag_values.output_dir, distribution=flag_values.distribution, precision=flag_values.precision,
        xla=flag_values.xla, steps_per_loop=flag_values.steps_per_loop, kernels=flag_values.kernels,
        deterministic=flag_values.deterministic, cache_clear=flag_values.cache_clear,
        submission_org=flag_values.submission_org, submission_platform=flag_values.submission_platform,
        submission_status=flag_values.submission_status, weights_digest=flag_values.weights_digest,
        config_name=flag_values.config_name, profile_steps=parse_profile_steps(flag_values.profile_steps),
        dry_run_replicas=flag_values.dry_run_replicas if dry_run else None)
