"""The ResNet task: closed-division hyperparameters, their MLPerf log keys, the eval plan, loss and eval math.

Rules source for every constant: ../shared/mlperf_spec.md section 3 (reference resnet-tf2, ruleset 4.0.0
closed_resnet.yaml). Hyperparameters a closed submission may tune are flags; fixed ones are constants here.
"""
import math

import tensorflow as tf
import tf_keras
from absl import flags
from mlperf_logging.mllog import constants as C

from tf_gp2bm.errors import InputError
from tf_gp2bm.optimizers.lars import LARS, PolynomialWarmup
from tf_gp2bm.tasks.base import EvalPoint, Plan, Task
from tf_gp2bm.tasks.resnet import imagenet_input
from tf_gp2bm.tasks.resnet.model import CLOSED_DEPTH, build_resnet

# --- fixed by the rules (checked by the 4.0.0 closed ruleset) -------------------------------------------------
TARGET_ACCURACY = 0.759
EVAL_PERIOD_EPOCHS = 4                     # evaluate every 4 epochs ...
LARS_END_LR, LARS_POLY_POWER, LARS_EPSILON, LARS_EETA = 1e-4, 2, 0.0, 0.001
IMAGENET_TRAIN, IMAGENET_VAL = 1_281_167, 50_000

# --- tunable (closed), defaults = the 4.0.0 RCP row for GBS 3264 ------------------------------------------------
flags.DEFINE_integer("global_batch_size", None, "Samples per optimizer update over all GPUs and accumulation.")
flags.DEFINE_integer("accumulation_steps", 1, "Micro-batches accumulated per update (per replica).")
flags.DEFINE_float("base_learning_rate", None, "LARS base LR (ResNet) / LAMB LR (BERT).")
flags.DEFINE_float("weight_decay", None, "Weight decay (ResNet: 1e-4 * 2^N).")
flags.DEFINE_float("lars_momentum", 0.9, "LARS momentum (0.9 below batch 32k).")
flags.DEFINE_float("warmup_epochs", 2.0, "ResNet: LR warm-up in epochs.")
flags.DEFINE_integer("train_epochs", 37, "ResNet: epochs the LR schedule spans (rounded up to the eval grid).")
flags.DEFINE_integer("eval_offset_epochs", 2, "ResNet: first eval after this many epochs (1..4), then every 4.")
flags.DEFINE_float("label_smoothing", 0.1, "ResNet: 0 or 0.1 in the closed division.")
flags.DEFINE_integer("num_classes", 1000, "ResNet head classes (1000, or 1001 with a background class).")
flags.DEFINE_integer("eval_batch_size", None, "Per-replica eval batch (default: the per-replica train micro-batch).")
# --- demo only (closed runs keep the defaults) -----------------------------------------------------------------
flags.DEFINE_integer("image_size", 224, "ResNet input size (closed: 224).")
flags.DEFINE_integer("resnet_depth", CLOSED_DEPTH, "ResNet depth (closed: 50).")
flags.DEFINE_float("width_multiplier", 1.0, "ResNet width multiplier (closed: 1.0).")
flags.DEFINE_integer("train_examples", None, "Override the train set size used for epochs (demo data only).")


class ResNetTask(Task):
  benchmark = C.RESNET
  target_accuracy = TARGET_ACCURACY

  def __init__(self, runtime, flags_):
    super().__init__(runtime, flags_)
    f = flags_
    for name in ("global_batch_size", "base_learning_rate", "weight_decay"):
      if getattr(f, name) is None:
        raise InputError(f"--{name} is required for --task=resnet (set it in the flagfile)")
    if f.closed:
      self._check_closed(f)
    self.records = None
    replicas = runtime.num_replicas
    if f.global_batch_size % (replicas * f.accumulation_steps):
      raise InputError(f"--global_batch_size={f.global_batch_size} must be divisible by replicas ({replicas}) x "
                       f"--accumulation_steps ({f.accumulation_steps})")
    if not 1 <= f.eval_offset_epochs <= EVAL_PERIOD_EPOCHS:
      raise InputError(f"--eval_offset_epochs={f.eval_offset_epochs}: the rules allow 1, 2, 3 or 4")
    self.dtype = tf_keras.mixed_precision.global_policy().compute_dtype

  @staticmethod
  def _check_closed(f):
    fixed = {"image_size": 224, "resnet_depth": CLOSED_DEPTH, "width_multiplier": 1.0}
    for name, value in fixed.items():
      if getattr(f, name) != value:
        raise InputError(f"--{name}={getattr(f, name)}: the closed division requires {value} (use --noclosed only "
                         "for the demo)")
    if f.label_smoothing not in (0.0, 0.1):
      raise InputError(f"--label_smoothing={f.label_smoothing}: the closed division allows 0 or 0.1")
    if f.num_classes not in (1000, 1001):
      raise InputError(f"--num_classes={f.num_classes}: the closed division uses 1000 or 1001")
    n = math.log2(f.weight_decay / 1e-4)
    if abs(n - round(n)) > 1e-5:
      raise InputError(f"--weight_decay={f.weight_decay}: the closed division allows 1e-4 * 2^N")
    if f.train_examples is not None:
      raise InputError("--train_examples is for demo data only; closed runs use the full 1,281,167 images")

  # --- sizes and plan ---------------------------------------------------------------------------------------
  @property
  def train_examples(self):
    return self.flags.train_examples or IMAGENET_TRAIN

  @property
  def eval_examples(self):
    return self.records.num_examples("validation")

  @property
  def steps_per_epoch(self):
    return self.train_examples // self.global_batch_size  # the reference drops the train remainder

  @property
  def planned_epochs(self):
    """train_epochs rounded up onto the eval grid, as the reference's get_num_train_iterations."""
    off = self.flags.eval_offset_epochs
    return off + math.ceil(max(self.flags.train_epochs - off, 0) / EVAL_PERIOD_EPOCHS) * EVAL_PERIOD_EPOCHS

  def plan(self):
    off, spe, gbs = self.flags.eval_offset_epochs, self.steps_per_epoch, self.global_batch_size
    epochs = list(range(off, self.planned_epochs + 1, EVAL_PERIOD_EPOCHS))
    points = [EvalPoint(step=e * spe, epoch_num=e, samples=e * spe * gbs) for e in epochs]
    return Plan(eval_points=points, max_steps=points[-1].step)

  def block_metadata(self, prev, point):
    first = (prev.epoch_num if prev else 0) + 1
    return {"first_epoch_num": first, "epoch_count": point.epoch_num - first + 1}

  def learning_rate_schedule(self):
    warmup_steps = int(round(self.flags.warmup_epochs * self.steps_per_epoch))
    return PolynomialWarmup(self.flags.base_learning_rate, warmup_steps,
                            train_steps=self.planned_epochs * self.steps_per_epoch,
                            end_lr=LARS_END_LR, power=LARS_POLY_POWER)

  def hyperparameters(self):
    f, schedule = self.flags, self.learning_rate_schedule()
    return {
        C.GLOBAL_BATCH_SIZE: self.global_batch_size,
        C.GRADIENT_ACCUMULATION_STEPS: self.accumulation_steps,
        C.MODEL_BN_SPAN: self.micro_batch_size,
        C.TRAIN_SAMPLES: self.train_examples,
        C.EVAL_SAMPLES: self.eval_examples,
        C.OPT_NAME: C.LARS,
        C.LARS_OPT_BASE_LEARNING_RATE: f.base_learning_rate,
        C.LARS_OPT_LEARNING_RATE_WARMUP_EPOCHS: f.warmup_epochs,
        C.LARS_OPT_LR_DECAY_STEPS: schedule.decay_steps,
        C.LARS_OPT_END_LR: LARS_END_LR,
        C.LARS_OPT_LR_DECAY_POLY_POWER: LARS_POLY_POWER,
        C.LARS_OPT_WEIGHT_DECAY: f.weight_decay,
        C.LARS_OPT_MOMENTUM: f.lars_momentum,
        C.LARS_EPSILON: LARS_EPSILON,
    }

  # --- inputs -----------------------------------------------------------------------------------------------
  def check_inputs(self):
    self.records = imagenet_input.ImageNetRecords(self.flags.data_dir)
    self.records.label_mapping(self.flags.num_classes)
    self.records.shards("train")
    if self.flags.closed and self.eval_examples != IMAGENET_VAL:
      raise InputError(f"--data_dir={self.flags.data_dir}: {self.eval_examples} validation images, the closed "
                       f"division evaluates on all {IMAGENET_VAL:,}")
    if self.flags.train_examples is None and self.records.num_examples("train") != IMAGENET_TRAIN:
      raise InputError(f"--data_dir={self.flags.data_dir}: {self.records.num_examples('train')} train images, "
                       f"expected {IMAGENET_TRAIN:,} (demo data sets --train_examples)")
    if self.steps_per_epoch < 1:
      raise InputError(f"--global_batch_size={self.global_batch_size} exceeds the {self.train_examples} train images")

  def train_dataset(self, ctx):
    return imagenet_input.train_dataset(self.records, ctx, self.per_replica_batch_size, self.flags.image_size,
                                        self.flags.num_classes, seed=self.seed + ctx.input_pipeline_id)

  def eval_dataset(self, ctx):
    return imagenet_input.eval_dataset(self.records, ctx, self.eval_batch_size, self.flags.image_size,
                                       self.flags.num_classes)

  def synthetic_batch(self, training):
    b = self.per_replica_batch_size if training else self.eval_batch_size
    size = self.flags.image_size
    batch = {"image": tf.cast(tf.random.uniform([b, size, size, 3], 0, 256, dtype=tf.int32), tf.uint8),
             "label": tf.random.uniform([b], 0, self.flags.num_classes, dtype=tf.int32)}
    if not training:
      batch["weight"] = tf.ones([b])
    return batch

  def pipeline_benchmark(self, batches):
    """Lines for `python -m tf_gp2bm.bench --pipeline_only`: our preprocessing vs the reference's, per core."""
    from tf_gp2bm.tasks.resnet import pipeline_bench
    b = self.micro_batch_size
    ours, ref = pipeline_bench.compare(self.records, batches, b, self.flags.image_size, self.flags.num_classes)
    return [f"input pipeline, 1 CPU core, {batches} batches of {b} at {self.flags.image_size}px:",
            f"  reference preprocessing : {ref:8.1f} images/s",
            f"  tf_gp2bm preprocessing  : {ours:8.1f} images/s  ({ours / ref:.2f}x)"]

  def diagnose_data_error(self, error):
    if isinstance(error, tf.errors.DataLossError):
      files = [f for f, _ in self.records.shards("train")]
      files = files[self.runtime.rank::self.runtime.size] + [f for f, _ in self.records.shards("validation")]
      bad, message = imagenet_input.find_corrupt_file(files)
      if bad:
        return f"{bad}: corrupt TFRecord ({message}); re-run `python -m data_prep.imagenet verify`"
    return None

  # --- model and math ---------------------------------------------------------------------------------------
  def build_model(self):
    return build_resnet(self.flags.num_classes, self.flags.image_size, self.flags.resnet_depth,
                        self.flags.width_multiplier)

  def build_optimizer(self, model):
    opt = LARS(self.learning_rate_schedule(), momentum=self.flags.lars_momentum,
               weight_decay=self.flags.weight_decay, eeta=LARS_EETA, epsilon=LARS_EPSILON)
    return opt.build(model.trainable_variables)

  def loss(self, model, batch):
    probs = model(imagenet_input.normalize(batch["image"], self.dtype), training=True)
    one_hot = tf.one_hot(batch["label"], self.flags.num_classes)
    # Categorical cross-entropy on probabilities with label smoothing, as the reference.
    return tf.reduce_mean(tf_keras.losses.categorical_crossentropy(
        one_hot, probs, label_smoothing=self.flags.label_smoothing))

  def eval_counts(self, model, batch):
    probs = model(imagenet_input.normalize(batch["image"], self.dtype), training=False)
    hit = tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), batch["label"]), tf.float32)
    return tf.reduce_sum(hit * batch["weight"]), tf.reduce_sum(batch["weight"])


TASK = ResNetTask
