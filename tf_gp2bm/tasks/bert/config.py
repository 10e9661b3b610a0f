"""BERT-large pretraining configuration: its flags, the frozen Config built from them, the bounds and closed rules.

Rules source: the reference retired_benchmarks/bert and the 4.0.0 closed_bert ruleset. Tunable hyperparameters are
flags (defaults: the 4.0.0 RCP row for global batch 448); the model, loss, LAMB, poly power 1, sequence length
512 / 76 predictions and the eval cadence are fixed. TensorFlow-free at import (--help and flag errors answer before
TensorFlow loads); the model sizes are read when the config is validated.
"""
import dataclasses
from typing import Optional

from absl import flags

from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks.base import TaskConfig, check, finite
from tf_gp2bm.tasks.bert.spec import eval_interval_samples  # the rules' cadence, defined once there

# --- fixed by the rules -----------------------------------------------------------------------------------------
CLOSED_SEQ_LENGTH, CLOSED_PREDICTIONS = 512, 76
POLY_POWER, END_LR = 1.0, 0.0
CLIP_NORM = 1.0
INITIAL_CHECKPOINT_ACCURACY = 0.34085  # the reference README's load sanity check
MAX_PACKING_FACTOR = 3  # sequences per packed row at most (the pack stage's limit)
PACKING_FACTOR_TOLERANCE = 0.02  # the packed set's own factor vs --packing_factor

flags.DEFINE_string("eval_dir", None, "The masked-LM eval set (the 10,000-example eval_10k records: file or "
                    "directory).")
flags.DEFINE_string("init_checkpoint", None, "Phase-1 checkpoint: the reference TF1 model.ckpt-28252 prefix, or the "
                    "directory written by `python -m data_prep.bert_checkpoint convert`.")
flags.DEFINE_string("bert_config", "large", "Model size: 'large', 'tiny' (smoke) or a bert_config.json path.")
flags.DEFINE_integer("max_seq_length", CLOSED_SEQ_LENGTH, "Tokens per example (closed: 512).")
flags.DEFINE_integer("max_predictions_per_seq", CLOSED_PREDICTIONS, "Masked positions per example (closed: 76).")
flags.DEFINE_integer("train_steps", None, "Optimizer updates over which the learning rate decays to 0 "
                     "(opt_learning_rate_training_steps); the run stops at the first eval at or past them.")
flags.DEFINE_integer("warmup_steps", 0, "Updates of linear learning-rate warm-up (opt_learning_rate_warmup_steps).")
flags.DEFINE_integer("start_warmup_step", 0, "Update at which the warm-up starts (may be negative).")
flags.DEFINE_float("lamb_beta_1", 0.9, "LAMB first-moment decay.")
flags.DEFINE_float("lamb_beta_2", 0.999, "LAMB second-moment decay.")
flags.DEFINE_float("lamb_epsilon", 1e-6, "LAMB epsilon.")
flags.DEFINE_integer("max_samples", None, "Stop earlier than the learning-rate schedule's end: after the first eval "
                     "at or past this many training samples (the run ends as aborted).")
flags.DEFINE_bool("eval_at_start", False, "Evaluate the loaded checkpoint during init and print it (about "
                  f"{INITIAL_CHECKPOINT_ACCURACY} for the reference checkpoint; not logged). Reads the eval set "
                  "before run_start, so open/diagnostic runs only.")
flags.DEFINE_bool("packed", False, "Train on packed rows (`python -m data_prep.wikipedia pack`: up to 3 sequences "
                  "per 512-token row). A step is then a fixed number of rows, --global_batch_size / "
                  "--packing_factor, and samples count the sequences the rows hold.")
flags.DEFINE_float("packing_factor", 2.0, "With --packed: the sequences per row the global batch assumes (NVIDIA's "
                   "PACKING_FACTOR); --global_batch_size is the average sequences per step that is logged, and the "
                   "packed set's own factor (manifest-pack.json) must be within 2 % of it.")
# --- demo only ---------------------------------------------------------------------------------------------------
flags.DEFINE_integer("eval_interval_samples", None, "Demo only (--noclosed): evaluate every N training samples "
                     "instead of the rules' interval.")


@dataclasses.dataclass(frozen=True)
class Config(TaskConfig):
  train_steps: Optional[int] = None
  eval_dir: Optional[str] = None
  init_checkpoint: Optional[str] = None
  bert_config: str = "large"
  max_seq_length: int = CLOSED_SEQ_LENGTH
  max_predictions_per_seq: int = CLOSED_PREDICTIONS
  warmup_steps: int = 0
  start_warmup_step: int = 0
  lamb_beta_1: float = 0.9
  lamb_beta_2: float = 0.999
  lamb_epsilon: float = 1e-6
  max_samples: Optional[int] = None
  eval_at_start: bool = False
  packed: bool = False
  packing_factor: float = 2.0
  eval_interval_samples: Optional[int] = None

  @property
  def model_config(self):
    """The BertConfig that --bert_config names (reads the json file when it is a path)."""
    from tf_gp2bm.tasks.bert import model as bert_model  # loads TensorFlow: kept out of flag parsing
    return bert_model.load_config(self.bert_config)

  @property
  def packed_rows(self):
    """--packed: rows per update over all replicas and micro-batches (global_batch_size / packing_factor)."""
    return round(self.global_batch_size / self.packing_factor)

  def check_replicas(self, num_replicas):
    super().check_replicas(num_replicas)
    if self.packed and self.packed_rows % (num_replicas * self.accumulation_steps):
      raise InputError(f"--global_batch_size={self.global_batch_size} / --packing_factor={self.packing_factor:g} = "
                       f"{self.packed_rows} packed rows per update, not divisible by replicas ({num_replicas}) x "
                       f"--accumulation_steps ({self.accumulation_steps})")

  @property
  def schedule_end_samples(self):
    """Training samples at which the learning rate reaches 0."""
    return self.train_steps * self.global_batch_size

  def validate(self, closed):
    super().validate(closed)
    if self.train_steps is None:
      raise InputError("--train_steps is required for --task=bert (set it in the flagfile)")
    check(self.train_steps >= 1, "train_steps", self.train_steps, "an integer >= 1")
    check(0 <= self.warmup_steps <= self.train_steps, "warmup_steps", self.warmup_steps,
          f"an integer in [0, --train_steps={self.train_steps}]")
    check(abs(self.start_warmup_step) <= self.train_steps, "start_warmup_step", self.start_warmup_step,
          f"an integer in [-{self.train_steps}, {self.train_steps}] (--train_steps)")
    for name in ("lamb_beta_1", "lamb_beta_2"):
      value = getattr(self, name)
      check(finite(value) and 0 <= value < 1, name, value, "a number in [0, 1)")
    check(finite(self.lamb_epsilon) and 0 < self.lamb_epsilon < 1, "lamb_epsilon", self.lamb_epsilon,
          "a number in (0, 1)")
    model = self.model_config
    check(2 <= self.max_seq_length <= model.max_position_embeddings, "max_seq_length", self.max_seq_length,
          f"an integer in [2, {model.max_position_embeddings}] (the positions of --bert_config={self.bert_config})")
    check(1 <= self.max_predictions_per_seq <= self.max_seq_length, "max_predictions_per_seq",
          self.max_predictions_per_seq, f"an integer in [1, --max_seq_length={self.max_seq_length}]")
    check(self.max_samples is None or 1 <= self.max_samples <= self.schedule_end_samples, "max_samples",
          self.max_samples, f"an integer in [1, {self.schedule_end_samples:,}]: the learning rate reaches 0 after "
          f"--train_steps={self.train_steps} x --global_batch_size={self.global_batch_size} samples, and evals "
          "past that only burn time")
    check(finite(self.packing_factor) and 1 <= self.packing_factor <= MAX_PACKING_FACTOR, "packing_factor",
          self.packing_factor, f"a number in [1, {MAX_PACKING_FACTOR}] (sequences per packed row)")
    if self.packed:
      rows = self.global_batch_size / self.packing_factor
      check(abs(rows - round(rows)) < 1e-6 and rows >= 1, "global_batch_size", self.global_batch_size,
            f"a whole number of packed rows at --packing_factor={self.packing_factor:g} (rows per update = "
            "global_batch_size / packing_factor)")
    check(self.eval_interval_samples is None or self.eval_interval_samples >= 1, "eval_interval_samples",
          self.eval_interval_samples, "an integer >= 1")
    if closed:
      self._validate_closed(model)

  def _validate_closed(self, model):
    from tf_gp2bm.tasks.bert import model as bert_model  # loads TensorFlow: kept out of flag parsing
    if model != bert_model.LARGE:
      raise InputError(f"--bert_config={self.bert_config}: the closed division trains BERT-large (24x1024, 16 heads, "
                       "vocab 30522, type vocab 2); use --noclosed only for the demo")
    for name, value in (("max_seq_length", CLOSED_SEQ_LENGTH), ("max_predictions_per_seq", CLOSED_PREDICTIONS)):
      if getattr(self, name) != value:
        raise InputError(f"--{name}={getattr(self, name)}: the closed division requires {value}")
    if self.eval_interval_samples is not None:
      raise InputError("--eval_interval_samples is for the demo only; the closed division evaluates every "
                       f"{eval_interval_samples(self.global_batch_size):,} samples at this batch size")
    if self.eval_at_start:
      raise InputError("--eval_at_start reads the eval set before run_start, which the closed division forbids "
                       "(the clock starts before any data is touched); use it with --noclosed")
