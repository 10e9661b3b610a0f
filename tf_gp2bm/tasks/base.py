"""What a task (resnet, bert) provides to the generic trainer (tf_gp2bm.trainer).

A task is small: config (its absl flags), data (tf.data builders), model builder, loss/eval math, optimizer and
the MLPerf hyperparameter keys. It never checks ranks or devices: the Runtime it is given does that.
"""
import abc
import dataclasses
from typing import Any, Dict, List


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

  def __init__(self, runtime, flags):
    self.runtime = runtime
    self.flags = flags

  # --- configuration -----------------------------------------------------------------------------------------
  # The shared flags --global_batch_size, --accumulation_steps and --eval_batch_size size every task.
  @property
  def global_batch_size(self) -> int:
    """Samples per optimizer update over all replicas and accumulation steps."""
    return self.flags.global_batch_size

  @property
  def accumulation_steps(self) -> int:
    return self.flags.accumulation_steps

  @property
  def eval_batch_size(self) -> int:
    """Per-replica eval batch (default: the train micro-batch)."""
    return self.flags.eval_batch_size or self.micro_batch_size

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

  def run_end_events(self, samples_trained) -> Dict[str, Any]:
    """mllog events logged just before run_stop (BERT logs the samples actually trained)."""
    return {}

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
