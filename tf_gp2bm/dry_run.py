"""`python -m tf_gp2bm.train --task=T --flagfile=F --dry_run [--dry_run_replicas=N]`: review a configuration in
seconds, with no data and no devices.

A mode of the run (RunConfig.dry_run_replicas): the trainer runs its real init path on a PlanningRuntime up to the
hyperparameters (so the MLLOG lines are the ones a real run writes, into a scratch folder train.py removes), skips
every input check, prints the plan (each eval point with the learning rate in force there, the schedule's end and
the step cap) and exits 0. `parse_config` gives the same validated config in-process (tests, tools).
"""
from absl import flags
from mlperf_logging.mllog import constants as C

from tf_gp2bm import cli_flags, errors, tasks
from tf_gp2bm.errors import InputError

flags.DEFINE_bool("dry_run", False, "Print the init-phase MLPerf log lines and the plan (eval points, the learning "
                  "rate at each, the step cap) without reading data or using devices, then exit 0.")
flags.DEFINE_integer("dry_run_replicas", 1, "Replicas the dry run plans for (the GPUs the flagfile is written "
                     "for, e.g. 8 for flags/*/8xgpu.flags); they size the per-replica batch it logs.",
                     lower_bound=1)


class PlanningRuntime:
  """What a task reads from a runtime (replica count, rank) for N replicas, without starting any."""

  def __init__(self, num_replicas):
    self.num_replicas = self.size = num_replicas
    self.rank, self.local_rank, self.is_chief = 0, 0, True
    self.strategy = None

  def describe(self):
    return f"dry run: planning for {self.num_replicas} replica(s); no data is read and no device is used"


def plan_lines(task):
  """The plan as a person reads it: one line per eval point, then the schedule's end and the step cap."""
  plan = task.plan()
  schedule = task.learning_rate_schedule()
  gbs = task.global_batch_size
  unit = task.progress_unit
  lines = [f"plan: {len(plan.eval_points)} eval(s), global batch {gbs:,} = {task.micro_batch_size} x "
           f"{task.accumulation_steps} accumulation x {task.runtime.num_replicas} replica(s)"]
  for i, point in enumerate(plan.eval_points, 1):
    lr = float(schedule(point.step))
    where = f"{point.samples:,} samples"
    if unit != "samples":
      where = f"{unit} {point.epoch_num:,}, {where}"
    lines.append(f"  eval {i:3d} at step {point.step:7,d} ({where}): learning rate {lr:.6g}")
  lines.extend(task.plan_notes())
  end = task.schedule_end_step
  lines.append(f"learning-rate schedule ends at step {end:,} ({end * gbs:,} samples)")
  lines.append(f"step cap: {plan.max_steps:,} steps ({plan.max_steps * gbs:,} samples); the run stops at the first "
               f"eval that reaches {task.target_accuracy}")
  return lines


def parse_config(task_name, argv):
  """The validated config that `--task=TASK_NAME` with `argv` (e.g. ["--flagfile=F"]) gives, parsed as the trainer
  parses it but on a private copy of its flags, so the process's own flags stay untouched."""
  private = cli_flags.new_flag_values(task_name)
  try:
    cli_flags.parse(["parse_config", f"--task={task_name}", *map(str, argv)], private)
  except flags.Error as e:
    raise InputError(str(e)) from None
  return tasks.config_from_flags(task_name, private)


def finish(task, mllogger, cache_clear, log):
  """Ends the init phase as a real run does (the hyperparameters, cache_clear, init_stop), then prints the plan.
  Returns exit code 0."""
  for key, value in task.hyperparameters().items():
    mllogger.event(key, value)
  mllogger.event(C.CACHE_CLEAR, cache_clear)
  mllogger.end(C.INIT_STOP)
  for line in plan_lines(task):
    log(line)
  return errors.EXIT_SUCCESS
