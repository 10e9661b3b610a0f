"""The toy task: a two-layer MLP that tells Gaussian blobs apart, trained with plain SGD at a constant rate."""
import os

import numpy as np
import tensorflow as tf
import tf_keras
from mlperf_logging.mllog import constants as C

from tf_gp2bm.errors import InputError
from tf_gp2bm.optimizers.base import Optimizer
from tf_gp2bm.tasks.base import EvalPoint, Plan, Task
from toy_task.spec import DATA_FILE, EVAL_EXAMPLES, SPEC, TRAIN_EXAMPLES

FEATURES, CLASSES = 2, 4


class SGD(Optimizer):
  def _apply_all(self, variables, grads, slots, lr):
    for v, g in zip(variables, grads):
      v.assign_sub(lr * g)


class ToyTask(Task):
  spec = SPEC

  def __init__(self, runtime, config, seed=0):
    super().__init__(runtime, config, seed)
    self.data = None

  @property
  def eval_examples(self):
    return EVAL_EXAMPLES

  @property
  def steps_per_epoch(self):
    return TRAIN_EXAMPLES // self.global_batch_size

  def check_inputs(self):
    path = os.path.join(self.config.data_dir or "", DATA_FILE)
    if not os.path.isfile(path):
      raise InputError(f"--data_dir={self.config.data_dir}: no {DATA_FILE}; expected `python -m toy_task.demo`")
    with np.load(path) as data:
      self.data = {k: data[k] for k in data.files}

  def hyperparameters(self):
    return {C.GLOBAL_BATCH_SIZE: self.global_batch_size, C.OPT_BASE_LR: self.config.base_learning_rate,
            C.TRAIN_SAMPLES: TRAIN_EXAMPLES, C.EVAL_SAMPLES: EVAL_EXAMPLES}

  def plan(self):
    spe, gbs = self.steps_per_epoch, self.global_batch_size
    points = [EvalPoint(step=e * spe, epoch_num=e, samples=e * spe * gbs)
              for e in range(1, self.config.train_epochs + 1)]
    if self.config.train_steps:
      points = [p for p in points if p.step <= self.config.train_steps] or points[:1]
    return Plan(eval_points=points, max_steps=points[-1].step)

  @property
  def schedule_end_step(self):
    return self.config.train_epochs * self.steps_per_epoch

  def learning_rate_schedule(self):
    rate = self.config.base_learning_rate
    return lambda step: tf.constant(rate, tf.float32)

  def build_model(self):
    model = tf_keras.Sequential([tf_keras.layers.Dense(self.config.hidden_units, activation="relu"),
                                 tf_keras.layers.Dense(CLASSES)])
    model.build([None, FEATURES])
    return model

  def build_optimizer(self, model):
    return SGD(self.learning_rate_schedule()).build(model.trainable_variables)

  def _dataset(self, split, ctx, batch, training):
    x, y = self.data[f"{split}_x"], self.data[f"{split}_y"]
    weight = np.ones(len(y), np.float32)
    if not training:  # pad to whole batches on every replica; padding carries weight 0
      total = -(-len(y) // (batch * ctx.num_replicas_in_sync)) * batch * ctx.num_replicas_in_sync
      pad = total - len(y)
      x, y = np.concatenate([x, np.zeros((pad, FEATURES), x.dtype)]), np.concatenate([y, np.zeros(pad, y.dtype)])
      weight = np.concatenate([weight, np.zeros(pad, np.float32)])
    ds = tf.data.Dataset.from_tensor_slices({"x": x, "label": y, "weight": weight})
    ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
    if training:
      ds = ds.shuffle(len(y), seed=self.seed + ctx.input_pipeline_id).repeat()
    return ds.batch(batch, drop_remainder=training)

  def train_dataset(self, ctx):
    return self._dataset("train", ctx, self.per_replica_batch_size, training=True)

  def eval_dataset(self, ctx):
    return self._dataset("eval", ctx, self.eval_batch_size, training=False)

  def synthetic_batch(self, training):
    b = self.per_replica_batch_size if training else self.eval_batch_size
    return {"x": tf.random.normal([b, FEATURES]), "label": tf.random.uniform([b], 0, CLASSES, tf.int32),
            "weight": tf.ones([b])}

  def loss(self, model, batch):
    logits = tf.cast(model(batch["x"], training=True), tf.float32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["label"], logits))

  def eval_counts(self, model, batch):
    logits = model(batch["x"], training=False)
    hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), batch["label"]), tf.float32)
    return tf.reduce_sum(hit * batch["weight"]), tf.reduce_sum(batch["weight"])


TASK = ToyTask
