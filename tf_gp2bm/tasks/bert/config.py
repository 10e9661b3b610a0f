"""BERT-large pretraining configuration: the frozen Config (each field a flag of --task=bert), its bounds and closed
rules.

Rules source: the reference retired_benchmarks/bert and the 4.0.0 closed_bert ruleset. Tunable hyperparameters are
flags (defaults: the 4.0.0 RCP row for global batch 448); the model, loss, LAMB, poly power 1, sequence length
512 / 76 predictions and the eval cadence are fixed. TensorFlow-free (--help, flag errors and validation answer
before TensorFlow loads): the model sizes come from tasks/bert/sizes.py.
"""
import dataclasses
from typing import Optional

from tf_gp2bm.errors import InputError
from tf_gp2bm.tasks.base import TaskConfig, check, finite, param
from tf_gp2bm.tasks.bert import sizes
from tf_gp2bm.tasks.bert.spec import eval_interval_samples  # the rules' cadence, defined once there

# --- fixed by the rules -----------------------------------------------------------------------------------------
CLOSED_SEQ_LENGTH, CLOSED_PREDICTIONS = 512, 76
POLY_POWER, END_LR = 1.0, 0.0
CLIP_NORM = 1.0
INITIAL_CHECKPOINT_ACCURACY = 0.34085  # the reference README's load sanity check
MAX_PACKING_FACTOR = 3  # sequences per packed row at most (the pack stage's limit)
PACKING_FACTOR_TOLERANCE = 0.02  # the packed set's own factor vs --packing_factor

@dataclasses.dataclass(frozen=True)
class Config(TaskConfig):
  train_steps: Optional[int] = param(None, "Optimizer updates over which the learning rate decays to 0 "
                                     "(opt_learning_rate_training_steps); the run stops at the first eval at or past "
                                     "them.")
  eval_dir: Optional[str] = param(None, "The masked-LM eval set (the 10,000-example eval_10k records: file or "
                                  "directory).")
  init_checkpoint: Optional[str] = param(None, "Phase-1 checkpoint: the reference TF1 model.ckpt-28252 prefix, or "
                                         "the directory written by `python -m data_prep.bert_checkpoint convert`.")
  bert_config: str = param("large", "Model size: 'large', 'tiny' (smoke) or a bert_config.json path.")
  max_seq_length: int = param(CLOSED_SEQ_LENGTH, f"Tokens per example (closed: {CLOSED_SEQ_LENGTH}).", fixed=True)
  max_predictions_per_seq: int = param(CLOSED_PREDICTIONS, f"Masked positions per example (closed: "
                                       f"{CLOSED_PREDICTIONS}).", fixed=True)
  warmup_steps: int = param(0, "Updates of linear learning-rate warm-up (opt_learning_rate_warmup_steps).")
  start_warmup_step: int = param(0, "Update at which the warm-up starts (may be negative).")
  lamb_beta_1: float = param(0.9, "LAMB first-moment decay.")
  lamb_beta_2: float = param(0.999, "LAMB second-moment decay.")
  lamb_epsilon: float = param(1e-6, "LAMB epsilon.")
  max_samples: Optional[int] = param(None, "Stop earlier than the learning-rate schedule's end: after the first eval "
                                     "at or past this many training samples (the run ends as aborted).")
  eval_at_start: bool = param(
      False, f"Evaluate the loaded checkpoint during init and print it (about {INITIAL_CHECKPOINT_ACCURACY} for the "
      "reference checkpoint; not logged). Reads the eval set before run_start, so open/diagnostic runs only.",
      fixed="reads the eval set before run_start, which the closed division forbids (the clock starts before any "
      "data is touched); use it with --noclosed")
  packed: bool = param(False, "Train on packed rows (`python -m data_prep.wikipedia pack`: up to 3 sequences per "
                       "512-token row). A step is then a fixed number of rows, --global_batch_size / "
                       "--packing_factor, and samples count the sequences the rows hold.")
  packing_factor: float = param(2.0, "With --packed: the sequences per row the global batch assumes (NVIDIA's "
                                "PACKING_FACTOR); --global_batch_size is the average sequences per step that is "
                                "logged, and the packed set's own factor (manifest-pack.json) must be within 2 % of "
                                "it.")
  # --- demo only ---------------------------------------------------------------------------------------------------
  eval_interval_samples: Optional[int] = param(None, "Demo only (--noclosed): evaluate every N training samples "
                                               "instead of the rules' interval.")

  @property
  def model_config(self):
    """The BertConfig that --bert_config names (reads the json file when it is a path)."""
    return sizes.load_config(self.bert_config)

  @property
  def packed_rows(self):
    """--packed: rows per update over all replicas and micro-batches (global_batch_size / packing_factor)."""
    return round(self.global_batch_size / self.packing_factor)

  def check_replicas(self, num_replicas):
    """Packed, the rows split evenly (the sequences they hold are an average, not split)."""
    if not self.packed:
      return super().check_replicas(num_replicas)
    if self.packed_rows % (num_replicas * self.accumulation_steps):
      raise InputError(f"--global_batch_size={self.global_batch_size} / --packing_factor={self.packing_factor:g} = "
                       f"{self.packed_rows} packed rows per update, not divisible by replicas ({num_replicas}) x "
                       f"--accumulation_steps ({self.accumulation_steps})")

  @property
  def schedule_end_samples(self):
    """Training samples at which the learning rate reaches 0."""
    return self.train_steps * self.global_batch_size

  def check_values(self):
    super().check_values()
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

  def check_closed(self):
    if self.model_config != sizes.LARGE:
      raise InputError(f"--bert_config={self.bert_config}: the closed division trains BERT-large (24x1024, 16 heads, "
                       "vocab 30522, type vocab 2); use --noclosed only for the demo")
    if self.eval_interval_samples is not None:
      raise InputError("--eval_interval_samples is for the demo only; the closed division evaluates every "
                       f"{eval_interval_samples(self.global_batch_size):,} samples at this batch size")
    super().check_closed()
