"""What a task (resnet, bert) provides to the generic trainer (tf_gp2bm.trainer), and the flags they share.

A task is small: a frozen config (tasks/<name>/config.py, built from absl flags and validated once), data
(tf.data builders), model builder, loss/eval math, optimizer and the MLPerf hyperparameter keys. It never reads
global flags and never checks ranks or devices: the Runtime it is given does that.
"""
import abc
import dataclasses
import math
from typing import Any, Dict, List, Optional

from absl import flags

from tf_gp2bm.errors import InputError

# --- flags every task reads the same way (one definition; each task's config.py adds its own) -------------------
flags.DEFINE_integer("global_batch_size", None, "Samples per optimizer update, summed over all replicas and "
                     "accumulated micro-batches (the MLPerf global_batch_size).")
flags.DEFINE_integer("accumulation_steps", 1, "Micro-batches each replica accumulates into one optimizer update.")
flags.DEFINE_integer("eval_batch_size", None, "Per-replica evaluation batch (default: the per-replica training "
                     "micro-batch).")
flags.DEFINE_float("base_learning_rate", None, "Peak learning rate of the optimizer's schedule (reached at the end "
                   "of warm-up).")
flags.DEFINE_float("weight_decay", None, "Weight-decay coefficient the optimizer applies to the variables it adapts "
                   "(not to biases and normalization parameters).")


def check(ok, flag, value, expected):
  """Raises InputError naming the flag unless `ok`: every numeric flag is bounded before anything is built."""
  if not ok:
    raise InputError(f"--{flag}={value}: expected {expected}")


def finite(x):
  return x is not None and math.isfinite(x)


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """The flags every task shares. Field names are flag names, so `from_flags` is a plain copy."""
  global_batch_size: Optional[int]
  base_learning_rate: Optional[float]
  weight_decay: Optional[float]
  accumulation_steps: int = 1
  eval_batch_size: Optional[int] = None
  data_dir: Optional[str] = None
  closed: bool = True

  @classmethod
  def from_flags(cls, flag_values):
    return cls(**{f.name: getattr(flag_values, f.name) for f in dataclasses.fields(cls)})

  @classmethod
  def defaults(cls, **overrides):
    """The config a command line without flags gives (each field's flag default), with `overrides` applied."""
    values = {}
    for f in dataclasses.fields(cls):
      if f.name in flags.FLAGS:
        values[f.name] = flags.FLAGS[f.name].default
      else:  # a flag another module defines (data_dir, closed) when that module is not loaded
        values[f.name] = None if f.default is dataclasses.MISSING else f.default
    values.update(overrides)
    return cls(**values)

  def validate(self, closed):
    """Raises InputError for a value no run can use (or, when `closed`, one the closed division forbids)."""
    for name in ("global_batch_size", "base_learning_rate", "weight_decay"):
      if getattr(self, name) is None:
        raise InputError(f"--{name} is required (set it in the flagfile)")
    check(self.global_batch_size >= 1, "global_batch_size", self.global_batch_size, "an integer >= 1")
    check(self.accumulation_steps >= 1, "accumulation_steps", self.accumulation_steps, "an integer >= 1")
    check(self.global_batch_size % self.accumulation_steps == 0, "global_batch_size", self.global_batch_size,
          f"a multiple of --accumulation_steps={self.accumulation_steps}")
    check(self.eval_batch_size is None or self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size,
          "an integer >= 1")
    check(finite(self.base_learning_rate) and self.base_learning_rate > 0, "base_learning_rate",
          self.base_learning_rate, "a finite number > 0")
    check(finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", self.weight_decay,
          "a finite number >= 0")

  def check_replicas(self, num_replicas):
    """Every replica gets the same whole number of micro-batches per update."""
    if self.global_batch_size % (num_replicas * self.accumulation_steps):
      raise InputError(f"--global_batch_size={self.global_batch_size} must be divisible by replicas "
                       f"({num_replicas}) x --accumulation_steps ({self.accumulation_steps})")


@dataclasses.dataclass(frozen=True)
class EvalPoint:
  """An evaluation after `step` optimizer updates; `epoch_num` is what eval_accuracy's metadata carries."""
  step: int
  epoch_num: Any  # ResNet: epochs completed; BERT: training samples seen
  samples: int


@dataclasses.dataclass
class Plan:
  """The whole run, known before run_start: where to evaluate and when to give up."""
  eval_points: List[EvalPoint]
  max_steps: int


class Task(abc.ABC):
  """Interface between a benchmark and the trainer. See tasks/resnet and tasks/bert for the two implementations."""

  benchmark: str          # mllog submission_benchmark: 'resnet' | 'bert'
  target_accuracy: float  # the closed-division quality target
  progress_unit: str      # what EvalPoint.epoch_num counts: 'epochs' | 'samples'
  Config = TaskConfig     # each task's frozen config class

  def __init__(self, runtime, config):
    config.check_replicas(runtime.num_replicas)
    self.runtime = runtime
    self.config = config
    self.seed = 0  # the trainer sets the run's seed before building datasets

  # --- configuration -----------------------------------------------------------------------------------------
  @property
  def global_batch_size(self) -> int:
    """Samples per optimizer update over all replicas and accumulation steps."""
    return self.config.global_batch_size

  @property
  def accumulation_steps(self) -> int:
    return self.config.accumulation_steps

  @property
  def eval_batch_size(self) -> int:
    """Per-replica eval batch (default: the train micro-batch)."""
    return self.config.eval_batch_size or self.micro_batch_size

  @property
  def per_replica_batch_size(self) -> int:
    """Samples one replica reads per update (micro-batch x accumulation steps)."""
    return self.global_batch_size // self.runtime.num_replicas

  @property
  def micro_batch_size(self) -> int:
    return self.per_replica_batch_size // self.accumulation_steps

  @property
  @abc.abstractmethod
  def eval_examples(self) -> int:
    """Examples in one full evaluation (every eval sees each exactly once over all ranks)."""

  @abc.abstractmethod
  def check_inputs(self) -> None:
    """Validates data, checkpoint and flags before anything is built; raises InputError."""

  @abc.abstractmethod
  def hyperparameters(self) -> Dict[str, Any]:
    """mllog key -> value for every hyperparameter the closed ruleset requires (logged before init_stop)."""

  @abc.abstractmethod
  def plan(self) -> Plan:
    """Eval points and the step cap."""

  @abc.abstractmethod
  def learning_rate_schedule(self):
    """Callable: 0-based update number -> learning rate (the reference's schedule)."""

  @property
  @abc.abstractmethod
  def schedule_end_step(self) -> int:
    """The update at which the learning-rate schedule ends (decays to its end value)."""

  def note(self, message) -> None:
    """A line for the run's console, once per run (the chief's): what the task decided or loaded at init."""
    if self.runtime.is_chief:
      print(f"[tf_gp2bm] {message}", flush=True)

  def warn(self, message) -> None:
    """A line for the run's console from every rank it holds on (one host may differ from the chief's)."""
    print(f"[tf_gp2bm] rank {self.runtime.rank}: {message}", flush=True)

  def run_end_events(self, samples_trained) -> Dict[str, Any]:
    """mllog events logged just before run_stop (BERT logs the samples actually trained)."""
    return {}

  def plan_notes(self) -> List[str]:
    """Extra lines for the dry run's plan (BERT packed: the rows per step and the sequences they hold)."""
    return []

  # --- samples per step: fixed unless the task counts them (packed BERT rows hold 1 to 3 sequences each) ---------
  @property
  def counts_samples(self) -> bool:
    """True when a step's samples vary with its data: the trainer then counts them (batch_samples), evaluates at
    the first step whose running count reaches an eval point's samples, and logs the counts."""
    return False

  def batch_samples(self, batch):
    """Samples in one replica's batch (a scalar tensor), when counts_samples."""
    raise NotImplementedError

  @property
  def max_step_samples(self) -> int:
    """The most samples one update can hold over all replicas (global_batch_size when fixed)."""
    return self.global_batch_size

  def block_metadata(self, prev: EvalPoint, point: EvalPoint) -> Dict[str, Any]:
    """Metadata of block_start/block_stop for the training between two eval points."""
    return {"samples_count": point.samples - (prev.samples if prev else 0)}

  # --- model and optimizer -----------------------------------------------------------------------------------
  @abc.abstractmethod
  def build_model(self):
    """Returns a built tf_keras.Model (variables created)."""

  @abc.abstractmethod
  def build_optimizer(self, model):
    """Returns a tf_gp2bm.optimizers.Optimizer over model.trainable_variables (slots created)."""

  def initialize(self, model) -> None:
    """Loads starting weights (BERT's phase-1 checkpoint). Runs inside init, before the clock starts."""

  # --- data --------------------------------------------------------------------------------------------------
  @abc.abstractmethod
  def train_dataset(self, input_context):
    """Endless per-replica dataset of batches of per_replica_batch_size (this replica's file shard)."""

  @abc.abstractmethod
  def eval_dataset(self, input_context):
    """Finite per-replica dataset; padded examples carry weight 0; the same batch count on every replica."""

  @abc.abstractmethod
  def synthetic_batch(self, training: bool):
    """A batch with the shapes/dtypes of the real one, for compiling and warming up before run_start."""

  # --- math (run inside the compiled step) -------------------------------------------------------------------
  @abc.abstractmethod
  def loss(self, model, batch):
    """Mean training loss over the local micro-batch (float32 scalar)."""

  def process_micro_gradients(self, grads):
    """Hook on one micro-batch's local gradients before accumulation and all-reduce (BERT clips here)."""
    return grads

  @abc.abstractmethod
  def eval_counts(self, model, batch):
    """(weighted correct, weighted count) over the batch, float32 scalars."""
