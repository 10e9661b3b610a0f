"""The BERT-large pretraining task: its MLPerf log keys, the eval plan, the LR schedule, data, loss and eval math.

Built from a validated `Config` (tasks/bert/config.py, which also holds the rules' constants).
"""
import math

import tensorflow as tf
from mlperf_logging.mllog import constants as C

from tf_gp2bm import kernels
from tf_gp2bm.errors import InputError
from tf_gp2bm.formats import bert_pretraining
from tf_gp2bm.optimizers.lamb import LAMB, PolynomialDecayWarmup
from tf_gp2bm.runtime.single_device import SingleDevice
from tf_gp2bm.tasks.base import EvalPoint, Plan, Task
from tf_gp2bm.tasks.bert import checkpoint, model as bert_model, packing, pretraining_input as data
from tf_gp2bm.tasks.bert.config import (CLIP_NORM, END_LR, INITIAL_CHECKPOINT_ACCURACY, PACKING_FACTOR_TOLERANCE,
                                        POLY_POWER)
from tf_gp2bm.tasks.bert.spec import (EVAL_EXAMPLES as CLOSED_EVAL_EXAMPLES, SPEC, eval_every_steps,
                                      eval_interval_samples)


def packing_factor(packed_dir):
  """Sequences per row of packed records, from the pack stage's manifest (its files checked as at init)."""
  return bert_pretraining.read_pack_manifest(packed_dir).packing_factor


class BertTask(Task):
  spec = SPEC

  def __init__(self, runtime, config, seed=0):
    super().__init__(runtime, config, seed)
    self.model_config = config.model_config
    self.train_files = self.eval_files = None
    self.packed_set = None  # --packed: the pack manifest's PackedSet
    self.eval_records, self.eval_weight = None, None

  # --- sizes and plan ---------------------------------------------------------------------------------------
  @property
  def eval_examples(self):
    """What the trainer's exactly-once check compares the summed eval count with. BERT's accuracy is weighted by
    masked_lm_weights, so the count is the eval set's total masked_lm_weights (each example seen exactly once
    gives exactly this sum). The example count (10,000 closed) is self.eval_records, checked in check_inputs."""
    return int(round(self.eval_weight))

  @property
  def eval_steps(self):
    return eval_every_steps(self.global_batch_size, self.config.eval_interval_samples)

  @property
  def eval_interval(self):
    """Samples between evals: the rules' interval (or the demo's), unrounded."""
    return self.config.eval_interval_samples or eval_interval_samples(self.global_batch_size)

  # --- packed rows: a step is a fixed number of rows; samples are the sequences they hold ---------------------
  @property
  def counts_samples(self):
    return self.config.packed

  @property
  def rows_per_replica(self):
    """--packed: rows one replica reads per update (all its micro-batches)."""
    return self.config.packed_rows // self.runtime.num_replicas

  @property
  def max_step_samples(self):
    if not self.config.packed:
      return self.global_batch_size
    return self.config.packed_rows * packing.MAX_SEQUENCES

  def batch_samples(self, batch):
    """The sequences one replica's packed rows hold (their next-sentence weights are 1 per sequence)."""
    return tf.reduce_sum(batch["next_sentence_weights"])

  def plan_notes(self):
    if not self.config.packed:
      return []
    c, n = self.config, self.runtime.num_replicas
    return [f"packed: {c.packed_rows:,} rows per update = {self.rows_per_replica} per replica x {n} replica(s) "
            f"({self.rows_per_replica // self.accumulation_steps} per micro-batch); at {c.packing_factor:g} "
            f"sequences per row they hold {self.global_batch_size:,} sequences on average, logged as "
            "global_batch_size",
            f"packed: evals at the first update whose counted sequences reach each multiple of "
            f"{self.eval_interval:,} (the steps above are the expected ones); train_samples and eval epoch_num "
            "are the sequences counted"]

  @property
  def max_samples(self):
    """Where the run gives up: the learning-rate schedule's end, or the earlier --max_samples."""
    return self.config.max_samples or self.config.schedule_end_samples

  def plan(self):
    """Evals every eval_steps updates up to the first one at or past max_samples (never further than one eval
    interval beyond the schedule's end, where the learning rate is 0).

    Packed (as NVIDIA's packed BERT): the eval points are multiples of the unrounded interval in sequences; the
    trainer evaluates at the first update whose counted sequences reach one, so the steps given are the expected
    ones (at global_batch_size sequences per update). The step cap allows rows that hold the least the packed set
    may hold on average (--packing_factor less its tolerance)."""
    gbs = self.global_batch_size
    if self.config.packed:
      interval = self.eval_interval
      count = max(1, math.ceil(self.max_samples / interval))
      points = [EvalPoint(step=math.ceil(k * interval / gbs), epoch_num=k * interval, samples=k * interval)
                for k in range(1, count + 1)]
      least = gbs * (1 - PACKING_FACTOR_TOLERANCE)
      return Plan(eval_points=points, max_steps=math.ceil(points[-1].samples / least))
    every = self.eval_steps
    count = max(1, math.ceil(self.max_samples / (every * gbs)))
    points = [EvalPoint(step=k * every, epoch_num=k * every * gbs, samples=k * every * gbs)
              for k in range(1, count + 1)]
    return Plan(eval_points=points, max_steps=points[-1].step)

  @property
  def schedule_end_step(self):
    return self.config.train_steps

  def learning_rate_schedule(self):
    f = self.config
    return PolynomialDecayWarmup(f.base_learning_rate, f.train_steps, warmup_steps=f.warmup_steps,
                                 start_warmup_step=f.start_warmup_step, end_lr=END_LR, power=POLY_POWER)

  def hyperparameters(self):
    f = self.config
    return {
        C.GLOBAL_BATCH_SIZE: self.global_batch_size,
        C.GRADIENT_ACCUMULATION_STEPS: self.accumulation_steps,
        C.EVAL_SAMPLES: self.eval_records or CLOSED_EVAL_EXAMPLES,
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
    """Metadata only: the record manifests (data_prep wrote them after reading every record), the checkpoint's
    index and, closed, its verification manifest. The rules start the clock before any record is read."""
    c, model = self.config, self.model_config
    vocab = checkpoint.checkpoint_vocab_size(c.init_checkpoint)
    if vocab != model.vocab_size:
      raise InputError(f"--init_checkpoint={c.init_checkpoint}: word embeddings for {vocab} tokens, but the model "
                       f"(--bert_config={c.bert_config}) has vocab_size {model.vocab_size}")
    if c.packed:
      self.packed_set = self._packed_set()
      self.train_files = list(self.packed_set.paths)
    else:
      self.train_files = self._records(c.data_dir, "data_dir", "train", "the training records").paths
    if len(self.train_files) < self.runtime.size:
      raise InputError(f"--data_dir={c.data_dir}: {len(self.train_files)} training files cannot be split over "
                       f"{self.runtime.size} ranks")
    evals = self._records(c.eval_dir, "eval_dir", "eval", "the eval set (eval_10k records) the MLM accuracy is "
                          "measured on")
    self.eval_files = evals.paths
    self.eval_records, self.eval_weight = evals.records, evals.masked_lm_weight_sum
    if self.eval_weight <= 0:
      raise InputError(f"--eval_dir={c.eval_dir}: the eval set has no masked positions (all masked_lm_weights 0)")
    if c.closed:
      self._check_closed_inputs()

  def _check_closed_inputs(self):
    """What the closed division adds, all reported at once: the full eval set, and a phase-1 checkpoint whose files
    were hashed against the published ones once, offline."""
    c, problems = self.config, []
    if self.eval_records != CLOSED_EVAL_EXAMPLES:
      problems.append(f"--eval_dir={c.eval_dir}: {self.eval_records:,} eval examples, the closed division "
                      f"evaluates on exactly {CLOSED_EVAL_EXAMPLES:,} (eval_10k)")
    try:
      checkpoint.require_verified(c.init_checkpoint)
    except InputError as e:
      problems.append(str(e))
    if problems:
      raise InputError("; and ".join(problems))

  def _packed_set(self):
    """The pack manifest of --data_dir, checked as the unpacked manifest is (every file's size), and matched with
    the model's lengths and --packing_factor."""
    c = self.config
    if not c.data_dir:
      raise InputError("--data_dir is required: the packed training rows")
    packed = bert_pretraining.read_pack_manifest(c.data_dir)
    if (packed.max_seq_length, packed.max_predictions_per_seq) != (c.max_seq_length, c.max_predictions_per_seq):
      raise InputError(f"{packed.manifest}: rows packed from records of {packed.max_seq_length} tokens / "
                       f"{packed.max_predictions_per_seq} predictions, but --max_seq_length={c.max_seq_length} "
                       f"--max_predictions_per_seq={c.max_predictions_per_seq}")
    if packed.max_sequences > packing.MAX_SEQUENCES:
      raise InputError(f"{packed.manifest}: up to {packed.max_sequences} sequences per row; the model reads "
                       f"{packing.MAX_SEQUENCES} at most")
    if abs(packed.packing_factor / c.packing_factor - 1) > PACKING_FACTOR_TOLERANCE:
      raise InputError(f"{packed.manifest}: the rows hold {packed.packing_factor:.3f} sequences each on average, "
                       f"--packing_factor={c.packing_factor:g} assumes {c.packing_factor:g}: the logged global batch "
                       f"({self.global_batch_size}) and its hyperparameters would not be what the steps train; set "
                       f"--packing_factor and --global_batch_size for this set")
    self.note(f"packed rows: {packed.rows:,} rows holding {packed.sequences:,} sequences (packing factor "
              f"{packed.packing_factor:.3f}, from {packed.manifest}); {self.rows_per_replica} rows per replica "
              f"per update")
    return packed

  def _records(self, path, flag, split, what):
    if not path:
      raise InputError(f"--{flag} is required: {what}")
    manifest = bert_pretraining.read_manifest(path)
    manifest.check_model(self.config.max_seq_length, self.config.max_predictions_per_seq,
                         self.model_config.vocab_size)
    return manifest.split(split, flag)

  def train_dataset(self, ctx):
    f = self.config
    if f.packed:  # one stream of rows for all replicas: the same seed on every one
      return packing.train_dataset(self.train_files, ctx, self.rows_per_replica, f.max_seq_length,
                                   f.max_predictions_per_seq, seed=self.seed)
    return data.train_dataset(self.train_files, ctx, self.per_replica_batch_size, f.max_seq_length,
                              f.max_predictions_per_seq, seed=self.seed + ctx.input_pipeline_id)

  def eval_dataset(self, ctx):
    f = self.config
    return data.eval_dataset(self.eval_files, self.eval_records, ctx, self.eval_batch_size, f.max_seq_length,
                             f.max_predictions_per_seq)

  def synthetic_batch(self, training):
    f = self.config
    if training and f.packed:  # the real packed batch's shapes
      return packing.synthetic_batch(self.rows_per_replica, f.max_seq_length, f.max_predictions_per_seq,
                                     self.model_config.vocab_size, f.packing_factor)
    b = self.per_replica_batch_size if training else self.eval_batch_size
    seq, preds, vocab = f.max_seq_length, f.max_predictions_per_seq, self.model_config.vocab_size
    ints = lambda shape, hi: tf.random.uniform(shape, 0, hi, dtype=tf.int32)  # noqa: E731
    return {"input_word_ids": ints([b, seq], vocab), "input_mask": tf.ones([b, seq], tf.int32),
            "input_type_ids": ints([b, seq], 2), "masked_lm_positions": ints([b, preds], seq),
            "masked_lm_ids": ints([b, preds], vocab), "masked_lm_weights": tf.ones([b, preds]),
            "next_sentence_labels": ints([b], 2)}

  @classmethod
  def pipeline_benchmark(cls, config, options, out):
    """Our input pipeline (batch, then one vectorized parse) vs the reference's record-at-a-time parse
    (map_and_batch of parse_single_example), on one device."""
    config.validate(closed=config.closed)
    runtime = SingleDevice()
    task = cls(runtime, config)
    task.check_inputs()
    f, b, batches = config, task.per_replica_batch_size, options.batches
    ctx = tf.distribute.InputContext(runtime.size, runtime.rank)
    ours = data.train_dataset(task.train_files, ctx, b, f.max_seq_length, f.max_predictions_per_seq, seed=0)
    ref = data.reference_style_train_dataset(task.train_files, ctx, b, f.max_seq_length, f.max_predictions_per_seq)
    rates = [data.samples_per_second(ds, batches, b) for ds in (ref, ours)]
    for line in (f"input pipeline, {batches} batches of {b} x {f.max_seq_length} tokens:",
                 f"  reference-style parse : {rates[0]:10.1f} samples/s",
                 f"  tf_gp2bm parse        : {rates[1]:10.1f} samples/s  ({rates[1] / rates[0]:.2f}x)"):
      out(line)

  def step_benchmark_batches(self, options):
    """Packed rows of --packed_data_dir's sequences per row, so the bench compares effective sequences/s."""
    if not options.packed_data_dir:
      return []
    factor = packing_factor(options.packed_data_dir)
    c = self.config
    batch = packing.synthetic_batch(self.per_replica_batch_size, c.max_seq_length, c.max_predictions_per_seq,
                                    self.model_config.vocab_size, factor)
    return [("packed", batch, factor)]

  def diagnose_data_error(self, error):
    message = getattr(error, "message", str(error))
    parse_error = isinstance(error, tf.errors.InvalidArgumentError) and (
        "serialized Example" in message or "Key: " in message or "corrupted record" in message)
    if isinstance(error, tf.errors.DataLossError) or parse_error:
      message = message.splitlines()[0]
      return (f"unreadable BERT records under --data_dir={self.config.data_dir} or --eval_dir={self.config.eval_dir} "
              f"({message}); expected records from data_prep.bert_records with max_seq_length="
              f"{self.config.max_seq_length}, max_predictions_per_seq={self.config.max_predictions_per_seq}")
    return None

  # --- model and optimizer ----------------------------------------------------------------------------------
  def build_model(self):
    return bert_model.build_bert(self.model_config, seq_length=self.config.max_seq_length,
                                 predictions=self.config.max_predictions_per_seq)

  def build_optimizer(self, model):
    f = self.config
    opt = LAMB(self.learning_rate_schedule(), beta_1=f.lamb_beta_1, beta_2=f.lamb_beta_2, epsilon=f.lamb_epsilon,
               weight_decay=f.weight_decay)
    return opt.build(model.trainable_variables)

  def initialize(self, model):
    if self.train_files is None and not self.config.init_checkpoint:
      # Only tf_gp2bm.bench gets here (train.py always runs check_inputs, which requires the checkpoint).
      self.note("no --init_checkpoint and no inputs checked: random initial weights (step benchmark only)")
      return
    message = checkpoint.load_initial_checkpoint(model, self.config.init_checkpoint)
    self.note(message)
    if self.config.eval_at_start:
      accuracy = self.evaluate_now(model)
      self.note(f"MLM accuracy of the initial checkpoint: {accuracy:.5f} (reference checkpoint: about "
                  f"{INITIAL_CHECKPOINT_ACCURACY}; not logged as eval_accuracy)")

  def evaluate_now(self, model):
    """One full evaluation outside the trainer (init-time load check): this process's share, summed over ranks."""
    ctx = tf.distribute.InputContext(num_input_pipelines=self.runtime.size, input_pipeline_id=self.runtime.rank)
    f = self.config
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
    vocab = self.model_config.vocab_size
    logits = tf.reshape(out["mlm_logits"], [-1, vocab])
    labels = tf.reshape(batch["masked_lm_ids"], [-1])
    weights = tf.reshape(batch["masked_lm_weights"], [-1])
    return out, kernels.get("mlm_softmax_cross_entropy")(logits, labels, weights)

  def loss(self, model, batch):
    out, (mlm_loss, _, _) = self._mlm(model, batch, training=True)
    return mlm_loss + packing.next_sentence_loss(out["nsp_logits"], batch["next_sentence_labels"],
                                                 batch.get("next_sentence_weights"))

  def process_micro_gradients(self, grads):
    clipped, _ = tf.clip_by_global_norm(grads, CLIP_NORM)  # the reference clips before the all-reduce
    return clipped

  def eval_counts(self, model, batch):
    _, (_, correct, count) = self._mlm(model, batch, training=False)
    return correct, count


TASK = BertTask
