"""The ResNet task: its MLPerf log keys, the eval plan, the LR schedule, data, loss and eval math.

Built from a validated `Config` (tasks/resnet/config.py, which also holds the rules' constants).
"""
import os

import tensorflow as tf
import tf_keras
from mlperf_logging.mllog import constants as C

from tf_gp2bm import data_service
from tf_gp2bm.errors import InputError
from tf_gp2bm.formats import imagenet as imagenet_format
from tf_gp2bm.kernels import determinism
from tf_gp2bm.optimizers.lars import LARS, PolynomialWarmup
from tf_gp2bm.tasks.base import EvalPoint, Plan, Task
from tf_gp2bm.tasks.resnet import imagenet_input, jpeg_op, pipeline_bench
from tf_gp2bm.tasks.resnet.config import (EVAL_PERIOD_EPOCHS, LARS_EETA, LARS_END_LR, LARS_EPSILON,
                                          LARS_POLY_POWER)
from tf_gp2bm.tasks.resnet.model import build_resnet
from tf_gp2bm.tasks.resnet.spec import IMAGENET_TRAIN, IMAGENET_VAL, SPEC, eval_grid_epoch


class ResNetTask(Task):
  spec = SPEC

  def __init__(self, runtime, config, seed=0):
    super().__init__(runtime, config, seed)
    self.records = None
    try:  # decided (and built) at construction, so --dry_run shows it too
      self.image_op, why = jpeg_op.resolve(config.image_op)
    except jpeg_op.OpUnavailable as e:
      raise InputError(f"--image_op=fused: {e}") from None
    fell_back = config.image_op == "auto" and self.image_op == "tf"  # every rank says so: hosts may differ
    (self.warn if fell_back else self.note)(f"train images: {why}")
    self.dtype = tf_keras.mixed_precision.global_policy().compute_dtype
    if config.data_service:
      if determinism.enabled():
        raise InputError(f"--data_service={config.data_service} with --deterministic: the service hands out "
                         "images in the order its workers finish them and shuffles unseeded, which no seed "
                         "reproduces; use local input for deterministic runs")
      self.note(f"train images: from the tf.data service at {config.data_service} (eval: local)")

  # --- sizes and plan ---------------------------------------------------------------------------------------
  @property
  def train_examples(self):
    return self.config.train_examples or IMAGENET_TRAIN

  @property
  def eval_examples(self):
    return self.records.num_examples("validation") if self.records else IMAGENET_VAL

  @property
  def steps_per_epoch(self):
    return self.train_examples // self.global_batch_size  # the reference drops the train remainder

  @property
  def planned_epochs(self):
    """train_epochs rounded up onto the eval grid, as the reference's get_num_train_iterations."""
    return eval_grid_epoch(self.config.train_epochs, self.config.eval_offset_epochs)

  def plan(self):
    off, spe, gbs = self.config.eval_offset_epochs, self.steps_per_epoch, self.global_batch_size
    epochs = list(range(off, self.planned_epochs + 1, EVAL_PERIOD_EPOCHS))
    points = [EvalPoint(step=e * spe, epoch_num=e, samples=e * spe * gbs) for e in epochs]
    return Plan(eval_points=points, max_steps=points[-1].step)

  def block_metadata(self, prev, point):
    first = (prev.epoch_num if prev else 0) + 1
    return {"first_epoch_num": first, "epoch_count": point.epoch_num - first + 1}

  @property
  def schedule_end_step(self):
    return self.config.train_epochs * self.steps_per_epoch

  def learning_rate_schedule(self):
    """The reference's schedule spans the unrounded --train_epochs (the eval grid only moves the stop point);
    its warm-up is warmup_epochs x steps_per_epoch, unrounded too."""
    spe = self.steps_per_epoch
    return PolynomialWarmup(self.config.base_learning_rate, self.config.warmup_epochs * spe,
                            train_steps=self.schedule_end_step, end_lr=LARS_END_LR, power=LARS_POLY_POWER)

  def hyperparameters(self):
    f, schedule = self.config, self.learning_rate_schedule()
    return {
        C.GLOBAL_BATCH_SIZE: self.global_batch_size,
        C.GRADIENT_ACCUMULATION_STEPS: self.accumulation_steps,
        C.MODEL_BN_SPAN: self.micro_batch_size,
        C.TRAIN_SAMPLES: self.train_examples,
        C.EVAL_SAMPLES: self.eval_examples,
        C.OPT_NAME: C.LARS,
        C.LARS_OPT_BASE_LEARNING_RATE: f.base_learning_rate,
        C.LARS_OPT_LEARNING_RATE_WARMUP_EPOCHS: f.warmup_epochs,
        C.LARS_OPT_LR_DECAY_STEPS: int(schedule.decay_steps),  # the reference logs int()
        C.LARS_OPT_END_LR: LARS_END_LR,
        C.LARS_OPT_LR_DECAY_POLY_POWER: LARS_POLY_POWER,
        C.LARS_OPT_WEIGHT_DECAY: f.weight_decay,
        C.LARS_OPT_MOMENTUM: f.lars_momentum,
        C.LARS_EPSILON: LARS_EPSILON,
    }

  # --- inputs -----------------------------------------------------------------------------------------------
  def check_inputs(self):
    """Metadata only (the manifest and file sizes): the rules start the clock before any record is read."""
    c = self.config
    self.records = imagenet_input.ImageNetRecords(c.data_dir)
    self.records.label_mapping(c.num_classes)
    imagenet_format.read_manifest(c.data_dir)  # every shard present with the size its manifest recorded
    if c.data_service:  # a connection only: the workers read no record before a trainer asks for data
      unreachable = data_service.reachable(c.data_service)
      if unreachable:
        raise InputError(f"--data_service={c.data_service}: {unreachable}")
    if c.closed and self.eval_examples != IMAGENET_VAL:
      raise InputError(f"--data_dir={c.data_dir}: {self.eval_examples} validation images, the closed "
                       f"division evaluates on all {IMAGENET_VAL:,}")
    if c.train_examples is None and self.records.num_examples("train") != IMAGENET_TRAIN:
      raise InputError(f"--data_dir={c.data_dir}: {self.records.num_examples('train')} train images, "
                       f"expected {IMAGENET_TRAIN:,} (demo data sets --train_examples)")
    if self.steps_per_epoch < 1:
      raise InputError(f"--global_batch_size={self.global_batch_size} exceeds the {self.train_examples} train images")

  def train_dataset(self, ctx):
    return imagenet_input.train_dataset(self.records, ctx, self.per_replica_batch_size, self.config.image_size,
                                        self.config.num_classes, seed=self.seed,
                                        image_op=self.image_op, data_service=self.config.data_service)

  def eval_dataset(self, ctx):
    return imagenet_input.eval_dataset(self.records, ctx, self.eval_batch_size, self.config.image_size,
                                       self.config.num_classes)

  def synthetic_batch(self, training):
    b = self.per_replica_batch_size if training else self.eval_batch_size
    size = self.config.image_size
    batch = {"image": tf.cast(tf.random.uniform([b, size, size, 3], 0, 256, dtype=tf.int32), tf.uint8),
             "label": tf.random.uniform([b], 0, self.config.num_classes, dtype=tf.int32)}
    if not training:
      batch["weight"] = tf.ones([b])
    return batch

  def diagnose_data_error(self, error):
    message = getattr(error, "message", str(error))
    if isinstance(error, tf.errors.InvalidArgumentError) and imagenet_input.LABEL_ERROR in message:
      detail = message.split(imagenet_input.LABEL_ERROR, 1)[1].strip().splitlines()[0]
      return f"{imagenet_input.LABEL_ERROR} {detail} (expected the label convention written in the manifest)"
    if self.records is None:  # failed before the data was set up: no file to name
      return None
    train = [f for f, _ in self.records.shards("train")][self.runtime.rank::self.runtime.size]
    validation = [f for f, _ in self.records.shards("validation")]
    if isinstance(error, tf.errors.DataLossError):
      bad, message = imagenet_input.find_corrupt_file(train + validation)
      if bad:
        return f"{bad}: corrupt TFRecord ({message}); re-run `python -m data_prep.imagenet verify`"
    if isinstance(error, tf.errors.InvalidArgumentError) and "jpeg" in message.lower():
      found = (imagenet_input.find_undecodable_image(train, self._whole_train_image)
               or imagenet_input.find_undecodable_image(validation, lambda e: tf.io.decode_jpeg(e, channels=3)))
      if found:
        path, index, name, why = found
        return (f"{path}: record {index} (image {name}) cannot be decoded ({why}); expected JPEG images that "
                "decode: repair or re-make the record set (the data tools refuse such a record)")
    return None

  def _whole_train_image(self, encoded):
    """The train image op in force on the whole image: it rejects what the run's op rejected."""
    shape = tf.image.extract_jpeg_shape(encoded)
    window = tf.stack([0, 0, shape[0], shape[1]])
    return imagenet_input.IMAGE_MAKERS[self.image_op](encoded, window, tf.constant(False), self.config.image_size)

  @classmethod
  def pipeline_benchmark(cls, config, options, out):
    """Our train-image pipeline vs the real reference input_fn, each in its own process pinned to the same cores."""
    if not config.data_dir:
      raise InputError("--pipeline_only needs --data_dir: records written by `python -m data_prep.imagenet convert`")
    cores = pipeline_bench.parse_cores(options.cores or str(max(os.sched_getaffinity(0))))
    pipeline_bench.find_reference(options.reference_dir)
    for records in (config.data_dir, options.reference_data_dir):
      if records:
        imagenet_input.ImageNetRecords(records).shards("train")
    pipeline_bench.compare(config.data_dir, options.reference_dir, cores, options.batch_size, options.batches,
                           options.repeats, out=out, reference_data_dir=options.reference_data_dir,
                           stages=options.stages)

  # --- model and math ---------------------------------------------------------------------------------------
  def build_model(self):
    return build_resnet(self.config.num_classes, self.config.image_size, self.config.resnet_depth,
                        self.config.width_multiplier)

  def build_optimizer(self, model):
    opt = LARS(self.learning_rate_schedule(), momentum=self.config.lars_momentum,
               weight_decay=self.config.weight_decay, eeta=LARS_EETA, epsilon=LARS_EPSILON)
    return opt.build(model.trainable_variables)

  def loss(self, model, batch):
    probs = model(imagenet_input.normalize(batch["image"], self.dtype), training=True)
    one_hot = tf.one_hot(batch["label"], self.config.num_classes)
    # Categorical cross-entropy on probabilities with label smoothing, as the reference.
    return tf.reduce_mean(tf_keras.losses.categorical_crossentropy(
        one_hot, probs, label_smoothing=self.config.label_smoothing))

  def eval_counts(self, model, batch):
    probs = model(imagenet_input.normalize(batch["image"], self.dtype), training=False)
    hit = tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), batch["label"]), tf.float32)
    return tf.reduce_sum(hit * batch["weight"]), tf.reduce_sum(batch["weight"])


TASK = ResNetTask
