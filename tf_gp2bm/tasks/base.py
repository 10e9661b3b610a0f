"""What a task (resnet, bert) provides to the generic trainer (tf_gp2bm.trainer), and the configuration they share.

A task is small: a frozen config (tasks/<name>/config.py, its fields declared with `param`, validated once), data
(tf.data builders), model builder, loss/eval math, optimizer and the MLPerf hyperparameter keys. It never reads
global flags and never checks ranks or devices: the Runtime it is given does that. The trainer's command line
(tf_gp2bm.cli_flags) makes each `param` field a flag of its task, and only of its task.
"""
import abc
import dataclasses
import math
import typing
from typing import Any, Dict, List, Optional

from tf_gp2bm.errors import InputError


def param(default, help, *, choices=None, lower=None, upper=None, fixed=None):  # noqa: A002  (absl's own word)
  """A Config field that is also a command-line flag of its task: its one default and its help text.

  choices: the allowed strings (an enum flag); lower/upper: bounds the flag parser enforces; fixed: the closed
  division requires the default (True, or the rest of a sentence that starts with the flag and says why), so
  `validate(closed=True)` refuses another value.
  """
  metadata = {"help": help, "choices": tuple(choices) if choices else None, "lower": lower, "upper": upper,
              "fixed": fixed}
  return dataclasses.field(default=default, metadata=metadata)


def params(config_cls):
  """The fields of `config_cls` declared with `param`: the flags of its task, in declaration order."""
  return [f for f in dataclasses.fields(config_cls) if "help" in f.metadata]


def param_type(config_cls, field):
  """The value type of a param field: bool, int, float or str (Optional[...] unwrapped)."""
  hint = typing.get_type_hints(config_cls)[field.name]
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  kind = args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint
  if kind not in (bool, int, float, str):
    raise TypeError(f"{config_cls.__module__}.{config_cls.__name__}.{field.name}: a param must be bool, int, float "
                    f"or str (optionally Optional), not {hint}")
  return kind


def param_owner(config_cls, name):
  """The module that declares field `name` of `config_cls` (the shared ones: this module)."""
  for cls in config_cls.__mro__:
    if name in cls.__dict__.get("__annotations__", {}):
      return cls.__module__
  raise KeyError(name)


def flag_text(name, value):
  """How a command line sets `name` to `value`: --packed, --nopacked, --image_size=32."""
  if isinstance(value, bool):
    return f"--{'' if value else 'no'}{name}"
  return f"--{name}={value}"


def check(ok, flag, value, expected):
  """Raises InputError naming the flag unless `ok`: every numeric flag is bounded before anything is built."""
  if not ok:
    raise InputError(f"--{flag}={value}: expected {expected}")


def finite(x):
  return x is not None and math.isfinite(x)


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """What every task reads the same way. Field names are flag names, so `from_flags` is a plain copy."""
  global_batch_size: Optional[int] = param(None, "Samples per optimizer update, summed over all replicas and "
                                           "accumulated micro-batches (the MLPerf global_batch_size).")
  base_learning_rate: Optional[float] = param(None, "Peak learning rate of the optimizer's schedule (reached at the "
                                              "end of warm-up).")
  weight_decay: Optional[float] = param(None, "Weight-decay coefficient the optimizer applies to the variables it "
                                        "adapts (not to biases and normalization parameters).")
  accumulation_steps: int = param(1, "Micro-batches each replica accumulates into one optimizer update.")
  eval_batch_size: Optional[int] = param(None, "Per-replica evaluation batch (none: the per-replica training "
                                         "micro-batch).")
  data_dir: Optional[str] = param(None, "Training data: the TFRecords and manifest.json that data_prep wrote.")
  closed: bool = True  # the trainer's --closed (one flag for the whole run, not a task's)

  @classmethod
  def from_flags(cls, flag_values):
    return cls(**{f.name: getattr(flag_values, f.name) for f in dataclasses.fields(cls)})

  @classmethod
  def defaults(cls, **overrides):
    """The config a command line without flags gives (each field's default), with `overrides` applied."""
    return cls(**overrides)

  def validate(self, closed):
    """Raises InputError for a value no run can use (or, when `closed`, one the closed division forbids)."""
    self.check_values()
    if closed:
      self.check_closed()

  def check_values(self):
    """Every bound a run needs (subclasses extend it)."""
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

  def check_closed(self):
    """The closed division's rules; here: every param declared `fixed` keeps its default (subclasses add theirs
    first, with their own messages)."""
    for f in params(type(self)):
      value, why = getattr(self, f.name), f.metadata["fixed"]
      if why and value != f.default:
        if isinstance(why, str):
          because = f" {why}"
        elif f.default is None:
          because = ": the closed division leaves it unset"
        else:
          because = f": the closed division requires {flag_text(f.name, f.default)}"
        raise InputError(f"{flag_text(f.name, value)}{because} (use --noclosed only for the demo)")

  def check_replicas(self, num_replicas):
    """Every replica gets the same whole number of micro-batches per update."""
    if self.global_batch_size % (num_replicas * self.accumulation_steps):
      raise InputError(f"--global_batch_size={self.global_batch_size} must be divisible by replicas "
                       f"({num_replicas}) x --accumulation_steps ({self.accumulation_steps})")


@dataclasses.dataclass(frozen=True)
class PipelineBenchOptions:
  """What `python -m tf_gp2bm.bench --pipeline_only` (and --packed_data_dir) hand a task's benchmark hooks."""
  batches: int = 40                         # batches per input-pipeline measurement
  batch_size: int = 64                      # images per batch, where the task does not take its own
  repeats: int = 3                          # alternating reference/ours measurements
  cores: Optional[str] = None               # CPU cores both pipelines are pinned to (taskset style)
  reference_dir: Optional[str] = None       # a checkout of mlcommons/training
  reference_data_dir: Optional[str] = None  # records the reference reads (default: the task's data_dir)
  stages: bool = False                      # also time each stage of one sample
  packed_data_dir: Optional[str] = None     # packed records, for tasks that pack


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

  spec = None             # the task's TaskSpec (tasks/<name>/spec.py): the three below are copied from it
  benchmark: str          # mllog submission_benchmark: 'resnet' | 'bert'
  target_accuracy: float  # the closed-division quality target
  progress_unit: str      # what EvalPoint.epoch_num counts: 'epochs' | 'samples'

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if cls.spec is not None:  # one source: the spec the driver and scoring read too
      cls.benchmark, cls.target_accuracy, cls.progress_unit = (
          cls.spec.benchmark, cls.spec.target_accuracy, cls.spec.progress_unit)

  def __init__(self, runtime, config, seed=0):
    config.check_replicas(runtime.num_replicas)
    self.runtime = runtime
    self.config = config
    self.seed = seed  # the run's seed (RunConfig.seed): each input pipeline's shuffle stream starts from it

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

  # --- optional behaviour: each hook has a default here, and a task overrides what it has ------------------------
  def diagnose_data_error(self, error) -> Optional[str]:
    """A line naming the file or record behind `error`, raised while reading this task's data (the run then ends
    as bad input, exit 2), or None when it is a real crash."""
    return None

  @classmethod
  def pipeline_benchmark(cls, config, options: PipelineBenchOptions, out) -> None:
    """`python -m tf_gp2bm.bench --pipeline_only`: times this task's input pipeline against its reference's and
    prints lines with `out`. `config` is the task's Config, not yet validated (a pipeline needs no schedule)."""
    raise InputError(f"--pipeline_only: --task={cls.benchmark} has no input-pipeline benchmark")

  def step_benchmark_batches(self, options: PipelineBenchOptions) -> List[Any]:
    """Extra batches the bench times the train step on besides the synthetic one: (label, batch, samples per
    row), e.g. BERT's ("packed", rows, 1.1). Default: none."""
    return []

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
