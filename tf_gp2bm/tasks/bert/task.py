"""The BERT-large pretraining task: closed-division hyperparameters, their MLPerf log keys, the eval plan, loss and
eval math.

Rules source for every constant: ../shared/mlperf_spec.md section 4 (reference retired_benchmarks/bert, ruleset
4.0.0 closed_bert.yaml). Tunable hyperparameters are flags (defaults: the kept 4.0.0 RCP row, GBS 448); the
model, loss, LAMB, poly power 1, sequence length 512 / 76 predictions and the eval cadence are fixed.
"""
import math

import tensorflow as tf
from absl import flags
from mlperf_logging.mllog import constants as C

from tf_gp2bm import kernels
from tf_gp2bm.errors import InputError
from tf_gp2bm.optimizers.lamb import LAMB, PolynomialDecayWarmup
from tf_gp2bm.tasks.base import EvalPoint, Plan, Task
from tf_gp2bm.tasks.bert import checkpoint, model as bert_model, pretraining_input as data

# --- fixed by the rules -----------------------------------------------------------------------------------------
TARGET_ACCURACY = 0.720
CLOSED_SEQ_LENGTH, CLOSED_PREDICTIONS = 512, 76
CLOSED_EVAL_EXAMPLES = 10_000
POLY_POWER, END_LR = 1.0, 0.0
CLIP_NORM = 1.0
INITIAL_CHECKPOINT_ACCURACY = 0.34085  # the reference README's load sanity check

# --- BERT flags (shared ones -- global_batch_size, accumulation_steps, base_learning_rate, weight_decay,
# eval_batch_size, closed, data_dir -- are defined by tasks/resnet/task.py and train.py) ---------------------------
flags.DEFINE_string("eval_dir", None, "BERT: the eval set (the 10,000-example eval_10k records: file or directory).")
flags.DEFINE_string("init_checkpoint", None, "BERT: phase-1 checkpoint (reference TF1 model.ckpt-28252 prefix, or "
                    "the directory written by `python -m data_prep.bert_checkpoint convert`).")
flags.DEFINE_string("bert_config", "large", "BERT: 'large', 'tiny' (smoke) or a bert_config.json path.")
flags.DEFINE_integer("max_seq_length", CLOSED_SEQ_LENGTH, "BERT: tokens per example (closed: 512).")
flags.DEFINE_integer("max_predictions_per_seq", CLOSED_PREDICTIONS, "BERT: masked positions per example (closed: 76).")
flags.DEFINE_integer("train_steps", None, "BERT: opt_learning_rate_training_steps (LR decays to 0 over these).")
flags.DEFINE_integer("warmup_steps", 0, "BERT: linear LR warm-up steps (opt_learning_rate_warmup_steps).")
flags.DEFINE_integer("start_warmup_step", 0, "BERT: start_warmup_step (may be negative).")
flags.DEFINE_float("lamb_beta_1", 0.9, "BERT: LAMB beta1.")
flags.DEFINE_float("lamb_beta_2", 0.999, "BERT: LAMB beta2.")
flags.DEFINE_float("lamb_epsilon", 1e-6, "BERT: LAMB epsilon.")
flags.DEFINE_integer("max_samples", None, "BERT: termination cap in training samples (run ends as aborted); default "
                     "train_steps x global_batch_size, where the LR reaches 0.")
flags.DEFINE_bool("eval_at_start", False, "BERT: evaluate the loaded checkpoint during init and print it (about "
                  f"{INITIAL_CHECKPOINT_ACCURACY} for the reference checkpoint; not logged as eval_accuracy).")
# --- demo only ---------------------------------------------------------------------------------------------------
flags.DEFINE_integer("eval_interval_samples", None, "BERT demo only (--noclosed): eval every N samples instead of the "
                     "rules' formula.")


def eval_interval_samples(global_batch_size):
  """The rules' interval: FLOOR(0.05 * (230.23 * GBS + 3,000,000), 25,000)."""
  return int(math.floor(0.05 * (230.23 * global_batch_size + 3_000_000) / 25_000)) * 25_000


def eval_every_steps(global_batch_size, interval=None):
  return math.ceil((interval or eval_interval_samples(global_batch_size)) / global_batch_size)


class BertTask(Task):
  benchmark = C.BERT
  target_accuracy = TARGET_ACCURACY

  def __init__(self, runtime, flags_):
    super().__init__(runtime, flags_)
    f = flags_
    for name in ("global_batch_size", "base_learning_rate", "weight_decay", "train_steps"):
      if getattr(f, name) is None:
        raise InputError(f"--{name} is required for --task=bert (set it in the flagfile)")
    self.config = bert_model.load_config(f.bert_config)
    replicas = runtime.num_replicas
    if f.global_batch_size % (replicas * f.accumulation_steps):
      raise InputError(f"--global_batch_size={f.global_batch_size} must be divisible by replicas ({replicas}) x "
                       f"--accumulation_steps ({f.accumulation_steps})")
    if f.train_steps <= 0 or f.warmup_steps < 0:
      raise InputError(f"--train_steps={f.train_steps} must be > 0 and --warmup_steps={f.warmup_steps} >= 0")
    if f.max_seq_length > self.config.max_position_embeddings:
      raise InputError(f"--max_seq_length={f.max_seq_length} exceeds the model's "
                       f"{self.config.max_position_embeddings} positions (--bert_config={f.bert_config})")
    if not 0 < f.max_predictions_per_seq <= f.max_seq_length:
      raise InputError(f"--max_predictions_per_seq={f.max_predictions_per_seq} must be in 1..--max_seq_length")
    if f.max_samples is not None and f.max_samples <= 0:
      raise InputError(f"--max_samples={f.max_samples} must be > 0")
    if f.closed:
      self._check_closed(f)
    self.train_files = self.eval_files = None
    self.eval_records, self.eval_weight = None, None

  def _check_closed(self, f):
    if self.config != bert_model.LARGE:
      raise InputError(f"--bert_config={f.bert_config}: the closed division trains BERT-large (24x1024, 16 heads, "
                       "vocab 30522, type vocab 2); use --noclosed only for the demo")
    for name, value in (("max_seq_length", CLOSED_SEQ_LENGTH), ("max_predictions_per_seq", CLOSED_PREDICTIONS)):
      if getattr(f, name) != value:
        raise InputError(f"--{name}={getattr(f, name)}: the closed division requires {value}")
    if f.eval_interval_samples is not None:
      raise InputError("--eval_interval_samples is for the demo only; the closed division evaluates every "
                       f"{eval_interval_samples(f.global_batch_size):,} samples at this batch size")

  # --- sizes and plan ---------------------------------------------------------------------------------------
  @property
  def eval_examples(self):
    """What the trainer's exactly-once check compares the summed eval count with. BERT's accuracy is weighted by
    masked_lm_weights, so the count is the eval set's total masked_lm_weights (each example seen exactly once
    gives exactly this sum). The example count (10,000 closed) is self.eval_records, checked in check_inputs."""
    return int(round(self.eval_weight))

  @property
  def eval_steps(self):
    return eval_every_steps(self.global_batch_size, self.flags.eval_interval_samples)

  @property
  def max_samples(self):
    return self.flags.max_samples or self.flags.train_steps * self.global_batch_size

  def plan(self):
    every, gbs = self.eval_steps, self.global_batch_size
    count = max(1, math.ceil(self.max_samples / (every * gbs)))
    points = [EvalPoint(step=k * every, epoch_num=k * every * gbs, samples=k * every * gbs)
              for k in range(1, count + 1)]
    return Plan(eval_points=points, max_steps=points[-1].step)

  def learning_rate_schedule(self):
    f = self.flags
    return PolynomialDecayWarmup(f.base_learning_rate, f.train_steps, warmup_steps=f.warmup_steps,
                                 start_warmup_step=f.start_warmup_step, end_lr=END_LR, power=POLY_POWER)

  def hyperparameters(self):
    f = self.flags
    return {
        C.GLOBAL_BATCH_SIZE: self.global_batch_size,
        C.GRADIENT_ACCUMULATION_STEPS: self.accumulation_steps,
        C.EVAL_SAMPLES: self.eval_records,
        C.MAX_SEQUENCE_LENGTH: f.max_seq_length,
        "max_predictions_per_seq": f.max_predictions_per_seq,
        C.OPT_NAME: C.LAMB,
        C.OPT_BASE_LR: f.base_learning_rate,
        C.OPT_LAMB_EPSILON: f.lamb_epsilon,
        "opt_epsilon": f.lamb_epsilon,  # the name rcps_bert.json and NVIDIA's log use
        C.OPT_LR_TRAINING_STEPS: f.train_steps,
        C.OPT_LR_WARMUP_STEPS: f.warmup_steps,
        C.NUM_WARMUP_STEPS: f.warmup_steps,
        C.START_WARMUP_STEP: f.start_warmup_step,
        C.OPT_LAMB_BETA_1: f.lamb_beta_1,
        C.OPT_LAMB_BETA_2: f.lamb_beta_2,
        C.OPT_LAMB_WEIGHT_DECAY: f.weight_decay,
        C.OPT_LAMB_LR_DECAY_POLY_POWER: POLY_POWER,
    }

  def run_end_events(self, samples_trained):
    return {C.TRAIN_SAMPLES: samples_trained}

  # --- inputs -----------------------------------------------------------------------------------------------
  def check_inputs(self):
    f = self.flags
    seq, preds = f.max_seq_length, f.max_predictions_per_seq
    vocab = checkpoint.checkpoint_vocab_size(f.init_checkpoint)
    if vocab != self.config.vocab_size:
      raise InputError(f"--init_checkpoint={f.init_checkpoint}: word embeddings for {vocab} tokens, but the model "
                       f"(--bert_config={f.bert_config}) has vocab_size {self.config.vocab_size}")
    self.train_files = data.list_files(f.data_dir, "data_dir")
    if len(self.train_files) < self.runtime.size:
      raise InputError(f"--data_dir={f.data_dir}: {len(self.train_files)} training files cannot be split over "
                       f"{self.runtime.size} ranks")
    for path in self.train_files[self.runtime.rank::self.runtime.size][:4]:
      record = data.first_record(path)
      if record is not None:
        data.check_record_layout(path, record, seq, preds, "data_dir")
        top = data.max_token_id(record)
        if top >= self.config.vocab_size:
          raise InputError(f"--data_dir: {path}: token id {top} is outside the model vocab of "
                           f"{self.config.vocab_size} (records made with another vocab.txt?)")
    if f.eval_dir is None:
      raise InputError("--eval_dir is required: the eval set (eval_10k records) the MLM accuracy is measured on")
    self.eval_files = data.list_files(f.eval_dir, "eval_dir")
    self.eval_records, self.eval_weight = data.scan_eval_set(self.eval_files, seq, preds, self.config.vocab_size)
    if f.closed and self.eval_records != CLOSED_EVAL_EXAMPLES:
      raise InputError(f"--eval_dir={f.eval_dir}: {self.eval_records:,} eval examples, the closed division "
                       f"evaluates on exactly {CLOSED_EVAL_EXAMPLES:,} (eval_10k)")
    if self.eval_weight <= 0:
      raise InputError(f"--eval_dir={f.eval_dir}: the eval set has no masked positions (all masked_lm_weights 0)")

  def train_dataset(self, ctx):
    f = self.flags
    return data.train_dataset(self.train_files, ctx, self.per_replica_batch_size, f.max_seq_length,
                              f.max_predictions_per_seq, seed=self.seed + ctx.input_pipeline_id)

  def eval_dataset(self, ctx):
    f = self.flags
    return data.eval_dataset(self.eval_files, self.eval_records, ctx, self.eval_batch_size, f.max_seq_length,
                             f.max_predictions_per_seq)

  def synthetic_batch(self, training):
    f = self.flags
    b = self.per_replica_batch_size if training else self.eval_batch_size
    seq, preds, vocab = f.max_seq_length, f.max_predictions_per_seq, self.config.vocab_size
    ints = lambda shape, hi: tf.random.uniform(shape, 0, hi, dtype=tf.int32)  # noqa: E731
    return {"input_word_ids": ints([b, seq], vocab), "input_mask": tf.ones([b, seq], tf.int32),
            "input_type_ids": ints([b, seq], 2), "masked_lm_positions": ints([b, preds], seq),
            "masked_lm_ids": ints([b, preds], vocab), "masked_lm_weights": tf.ones([b, preds]),
            "next_sentence_labels": ints([b], 2)}

  def pipeline_benchmark(self, batches):
    """Lines for `python -m tf_gp2bm.bench --pipeline_only`: our input pipeline (batch, then one vectorized
    parse) vs the reference's record-at-a-time parse (map_and_batch of parse_single_example)."""
    f, b = self.flags, self.per_replica_batch_size
    ctx = tf.distribute.InputContext(self.runtime.size, self.runtime.rank)
    ours = data.train_dataset(self.train_files, ctx, b, f.max_seq_length, f.max_predictions_per_seq, seed=0)
    ref = data.reference_style_train_dataset(self.train_files, ctx, b, f.max_seq_length, f.max_predictions_per_seq)
    rates = [data.samples_per_second(ds, batches, b) for ds in (ref, ours)]
    return [f"input pipeline, {batches} batches of {b} x {f.max_seq_length} tokens:",
            f"  reference-style parse : {rates[0]:10.1f} samples/s",
            f"  tf_gp2bm parse        : {rates[1]:10.1f} samples/s  ({rates[1] / rates[0]:.2f}x)"]

  def diagnose_data_error(self, error):
    message = getattr(error, "message", str(error))
    parse_error = isinstance(error, tf.errors.InvalidArgumentError) and (
        "serialized Example" in message or "Key: " in message or "corrupted record" in message)
    if isinstance(error, tf.errors.DataLossError) or parse_error:
      message = message.splitlines()[0]
      return (f"unreadable BERT records under --data_dir={self.flags.data_dir} or --eval_dir={self.flags.eval_dir} "
              f"({message}); expected records from data_prep.bert_records with max_seq_length="
              f"{self.flags.max_seq_length}, max_predictions_per_seq={self.flags.max_predictions_per_seq}")
    return None

  # --- model and optimizer ----------------------------------------------------------------------------------
  def build_model(self):
    return bert_model.build_bert(self.config, seq_length=self.flags.max_seq_length,
                                 predictions=self.flags.max_predictions_per_seq)

  def build_optimizer(self, model):
    f = self.flags
    opt = LAMB(self.learning_rate_schedule(), beta_1=f.lamb_beta_1, beta_2=f.lamb_beta_2, epsilon=f.lamb_epsilon,
               weight_decay=f.weight_decay)
    return opt.build(model.trainable_variables)

  def initialize(self, model):
    if self.train_files is None and not self.flags.init_checkpoint:
      # Only tf_gp2bm.bench gets here (train.py always runs check_inputs, which requires the checkpoint).
      self._print("no --init_checkpoint and no inputs checked: random initial weights (step benchmark only)")
      return
    message = checkpoint.load_initial_checkpoint(model, self.flags.init_checkpoint)
    self._print(message)
    if self.flags.eval_at_start:
      accuracy = self.evaluate_now(model)
      self._print(f"MLM accuracy of the initial checkpoint: {accuracy:.5f} (reference checkpoint: about "
                  f"{INITIAL_CHECKPOINT_ACCURACY}; not logged as eval_accuracy)")

  def _print(self, message):
    if self.runtime.is_chief:
      print(f"[tf_gp2bm] {message}", flush=True)

  def evaluate_now(self, model):
    """One full evaluation outside the trainer (init-time load check): this process's share, summed over ranks."""
    ctx = tf.distribute.InputContext(num_input_pipelines=self.runtime.size, input_pipeline_id=self.runtime.rank)
    f = self.flags
    ds = data.eval_dataset(self.eval_files, self.eval_records, ctx, self.eval_batch_size, f.max_seq_length,
                           f.max_predictions_per_seq)
    step = tf.function(lambda batch: self.eval_counts(model, batch))
    correct = count = 0.0
    for batch in ds:
      c, n = step(batch)
      correct, count = correct + float(c), count + float(n)
    correct, count = self.runtime.all_sum_host([correct, count])
    return correct / max(count, 1e-9)

  # --- math (inside the compiled step) ----------------------------------------------------------------------
  def _mlm(self, model, batch, training):
    out = model(batch, training=training)
    vocab = self.config.vocab_size
    logits = tf.reshape(out["mlm_logits"], [-1, vocab])
    labels = tf.reshape(batch["masked_lm_ids"], [-1])
    weights = tf.reshape(batch["masked_lm_weights"], [-1])
    return out, kernels.get("mlm_softmax_cross_entropy")(logits, labels, weights)

  def loss(self, model, batch):
    out, (mlm_loss, _, _) = self._mlm(model, batch, training=True)
    log_probs = tf.nn.log_softmax(tf.cast(out["nsp_logits"], tf.float32), axis=-1)
    labels = tf.one_hot(tf.reshape(batch["next_sentence_labels"], [-1]), 2, dtype=tf.float32)
    nsp_loss = tf.reduce_mean(-tf.reduce_sum(labels * log_probs, axis=-1))
    return mlm_loss + nsp_loss

  def process_micro_gradients(self, grads):
    clipped, _ = tf.clip_by_global_norm(grads, CLIP_NORM)  # the reference clips before the all-reduce
    return clipped

  def eval_counts(self, model, batch):
    _, (_, correct, count) = self._mlm(model, batch, training=False)
    return correct, count


TASK = BertTask
