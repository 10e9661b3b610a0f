"""The generic MLPerf training loop: read it top to bottom in `Trainer.run`.

init (build, compile, warm up on synthetic data, restore the initial state)  -> init_stop
run_start -> [block of training steps -> eval] ... until the target or the cap -> run_stop

Speed decisions made here: the whole step (forward, backward, all-reduce where the back-end allows,
loss scaling, optimizer) is one XLA region; `steps_per_loop` steps run per host call with no host sync between
them; training loss is accumulated on the device and read once per loop (that read feeds the progress line,
TensorBoard and the NaN/Inf guard).
"""
import dataclasses
import math
import time

import tensorflow as tf
from mlperf_logging.mllog import constants as C

from tf_gp2bm import kernels
from tf_gp2bm.errors import NonFiniteLoss
from tf_gp2bm.progress import format_seconds
from tf_gp2bm.summaries import RunSummaries


class Trainer:

  def __init__(self, task, runtime, precision, mllogger, xla=True, steps_per_loop=100, log=print, summaries=None):
    self.task, self.runtime, self.precision, self.ml = task, runtime, precision, mllogger
    self.xla, self.steps_per_loop, self.log = xla, steps_per_loop, log
    self.summaries = summaries or RunSummaries()
    # The all-reduce can sit inside the XLA region only where the back-end is a no-op or XLA-capable.
    self.fused_step = runtime.num_replicas == 1
    self.step = 0  # optimizer updates done since run_start
    self.samples = 0  # samples trained since run_start (counted from the data when the task's steps vary)
    self.accuracies = []

  @property
  def samples_trained(self):
    """Samples actually trained since run_start (also when the run aborts midway)."""
    return self.samples

  # ------------------------------------------------------------------------------------------------ building
  def build(self):
    with self.runtime.scope():
      self.model = self.task.build_model()
      self.optimizer = self.task.build_optimizer(self.model)
      self.precision.build()
      sync = dict(synchronization=tf.VariableSynchronization.ON_READ, aggregation=tf.VariableAggregation.SUM)
      self.loss_sum = tf.Variable(0.0, trainable=False, name="loss_sum", **sync)
      self.skipped = tf.Variable(0.0, trainable=False, name="skipped_steps", **sync)
      self.sample_sum = tf.Variable(0.0, trainable=False, name="sample_sum", **sync)  # counts_samples tasks
    self.task.initialize(self.model)
    self.state = self.model.variables + self.optimizer.variables + self.precision.variables
    self.runtime.broadcast_variables(self.state)
    self._compile_functions()

  def _micro_gradients(self, batch):
    tvars = self.model.trainable_variables
    with tf.GradientTape() as tape:
      loss = self.task.loss(self.model, batch)
      scaled = self.precision.scale_loss(loss)
    grads = self.precision.unscale(kernels.check_gradients(tvars, tape.gradient(scaled, tvars)))
    grads = [tf.cast(g, tf.float32) for g in grads]
    return loss, self.task.process_micro_gradients(grads)

  def _local_gradients(self, batch):
    """Mean gradient over this replica's micro-batches (gradient accumulation in one XLA while loop)."""
    k = self.task.accumulation_steps
    if k == 1:
      return self._micro_gradients(batch)
    micro = tf.nest.map_structure(lambda t: tf.reshape(t, [k, -1] + t.shape[1:].as_list()), batch)
    zeros = [tf.zeros(v.shape, tf.float32) for v in self.model.trainable_variables]

    def body(i, loss_sum, grad_sum):
      loss, grads = self._micro_gradients(tf.nest.map_structure(lambda t: t[i], micro))
      return i + 1, loss_sum + loss, [a + g for a, g in zip(grad_sum, grads)]

    _, loss_sum, grad_sum = tf.while_loop(lambda i, *_: i < k, body, (tf.constant(0), tf.constant(0.0), zeros))
    return loss_sum / k, [g / k for g in grad_sum]

  def _apply(self, loss, grads):
    ok = self.precision.update(grads)
    tf.cond(ok, lambda: self.optimizer.apply(grads) or tf.constant(True), lambda: tf.constant(False))
    self.loss_sum.assign_add(loss)
    self.skipped.assign_add(1.0 - tf.cast(ok, tf.float32))

  def _compile_functions(self):
    jit = self.xla
    if self.fused_step:
      @tf.function(jit_compile=jit)
      def replica_step(batch):
        loss, grads = self._local_gradients(batch)
        self._apply(loss, self.runtime.all_mean(grads))
    else:
      grads_fn = tf.function(self._local_gradients, jit_compile=jit)
      apply_fn = tf.function(self._apply, jit_compile=jit)

      def replica_step(batch):
        loss, grads = grads_fn(batch)
        apply_fn(loss, self.runtime.all_mean(grads))
    self.replica_step = replica_step
    if self.task.counts_samples:
      def counted_step(batch):
        self.sample_sum.assign_add(tf.cast(self.task.batch_samples(batch), tf.float32))
        replica_step(batch)
    else:
      counted_step = replica_step

    @tf.function
    def train_loop(iterator, steps):
      for _ in tf.range(steps):
        self.runtime.run(counted_step, (next(iterator),))

    # Under MirroredStrategy an XLA eval step inside the dataset loop is placed on the first device only (TF's
    # "variable on a different device" XLA limitation), so mirrored evaluates without XLA.
    @tf.function(jit_compile=jit and self.runtime.jit_eval)
    def eval_step(batch):
      return self.task.eval_counts(self.model, batch)

    @tf.function
    def eval_loop(dataset):
      correct, count = tf.constant(0.0, tf.float64), tf.constant(0.0, tf.float64)
      for batch in dataset:
        c, n = self.runtime.run(eval_step, (batch,))
        correct += tf.cast(self.runtime.reduce_sum(c), tf.float64)
        count += tf.cast(self.runtime.reduce_sum(n), tf.float64)
      return correct, count

    self.train_loop, self.eval_loop = train_loop, eval_loop

  # ------------------------------------------------------------------------------------------------ warm-up
  def warm_up(self):
    """Compiles train and eval steps on synthetic batches, then puts every variable back.

    The rules forbid touching the dataset before run_start, and the run must start from its initial weights,
    so warm-up uses synthetic data and restores the exact initial state (weights, BN statistics, slots, scale).
    """
    t0 = time.time()
    saved = [v.numpy() for v in self.state]
    synthetic = lambda training: (lambda ctx: tf.data.Dataset.from_tensors(  # noqa: E731
        self.task.synthetic_batch(training)).repeat())
    train_it = iter(self.runtime.distribute_dataset(synthetic(True)))
    self.train_loop(train_it, tf.constant(min(2, self.steps_per_loop)))
    self.eval_loop(self.runtime.distribute_dataset(lambda ctx: synthetic(False)(ctx).take(2)))
    for v, value in zip(self.state, saved):
      v.assign(value)
    self.loss_sum.assign(0.0)
    self.skipped.assign(0.0)
    self.sample_sum.assign(0.0)
    self.log(f"compiled and warmed up in {time.time() - t0:.1f}s (synthetic data; state restored)")

  # ------------------------------------------------------------------------------------------------ the run
  def run(self):
    """Trains from run_start to run_stop. Returns True when the target was reached."""
    plan = self.task.plan()
    self.ml.start(C.RUN_START)
    train_it = iter(self.runtime.distribute_dataset(self.task.train_dataset))
    prev, self.t_run = None, time.time()
    success = False
    for point in plan.eval_points:
      block = self.task.block_metadata(prev, point)
      self.ml.start(C.BLOCK_START, metadata=block)
      self._train_until(train_it, point, plan)
      self.ml.end(C.BLOCK_STOP, metadata=block)
      if self.task.counts_samples:  # the eval happens, and is logged, where the counted samples reached the point
        point = dataclasses.replace(point, step=self.step, samples=self.samples, epoch_num=(
            self.samples if self.task.progress_unit == "samples" else point.epoch_num))
      accuracy = self.evaluate(point)
      self.summaries.scalars(self.step, {"eval/accuracy": accuracy})
      self.log(f"eval at {point.epoch_num} ({point.samples:,} samples): accuracy {accuracy:.5f} "
               f"(target {self.task.target_accuracy}), {format_seconds(time.time() - self.t_run)} since run_start")
      prev = point
      if accuracy >= self.task.target_accuracy:
        success = True
        break
    for key, value in self.task.run_end_events(self.samples_trained).items():
      self.ml.event(key, value)
    self.ml.end(C.RUN_STOP, metadata={"status": C.SUCCESS if success else C.ABORTED})
    return success

  def _steps_left(self, point, plan):
    """Steps this loop may run without passing `point`: exact for a fixed batch; for counted samples, as many as
    cannot reach the point's samples even at the fullest batches (at least one), capped by the plan."""
    if not self.task.counts_samples:
      return point.step - self.step
    if self.samples >= point.samples:
      return 0
    return min(max(1, (point.samples - self.samples) // self.task.max_step_samples), plan.max_steps - self.step)

  def _train_until(self, train_it, point, plan):
    t0, s0 = time.time(), self.samples
    while self._steps_left(point, plan) > 0:
      n = min(self.steps_per_loop, self._steps_left(point, plan), self.summaries.steps_to_boundary(self.step))
      self.summaries.before_loop(self.step)
      self.train_loop(train_it, tf.constant(n))
      stats = self._read_loop_stats()  # the one host sync per loop
      self.step += n
      self.samples += stats["samples"] if self.task.counts_samples else n * self.task.global_batch_size
      self.summaries.after_loop(self.step)
      if not math.isfinite(stats["loss_sum"]) or (not self.precision.loss_scaling and stats["skipped"] > 0):
        raise NonFiniteLoss(f"non-finite loss or gradients at step {self.step} (loss sum {stats['loss_sum']}, "
                            f"{int(stats['skipped'])} step(s) with non-finite gradients)")
      local_replicas = self.runtime.num_replicas // self.runtime.size  # loss_sum adds this process's replicas
      loss = stats["loss_sum"] / (n * local_replicas)
      rate = (self.samples - s0) / max(time.time() - t0, 1e-9)
      values = {"train/loss": loss, "train/learning_rate": stats["lr"], "train/samples_per_second": rate}
      if self.precision.loss_scaling:
        values["train/loss_scale"] = stats["loss_scale"]
      self.summaries.scalars(self.step, values)
      self.log(self._progress_line(point, plan, loss, stats, rate))

  def _read_loop_stats(self):
    """Reads the loop's accumulators (and resets them), the learning rate and the loss scale to the host."""
    stats = {"loss_sum": float(self.loss_sum.read_value()), "skipped": float(self.skipped.read_value()),
             "lr": float(self.optimizer.current_learning_rate())}
    if self.precision.loss_scaling:
      stats["loss_scale"] = float(self.precision.scale.read_value())
    if self.task.counts_samples:  # this process's replicas, then summed over processes: the same on every rank
      stats["samples"] = int(round(self.runtime.all_sum_host([float(self.sample_sum.read_value())])[0]))
      self.sample_sum.assign(0.0)
    self.loss_sum.assign(0.0)
    self.skipped.assign(0.0)
    return stats

  def _progress_line(self, point, plan, loss, stats, rate):
    """One line per loop: where the run is, what it learns, how fast, and when the next eval and the cap come."""
    next_eval = max(0, point.samples - self.samples) / max(rate, 1e-9)
    pace = (time.time() - self.t_run) / self.step  # seconds per step since run_start, evals included
    to_cap = pace * (plan.max_steps - self.step)
    skipped = f"  ({int(stats['skipped'])} fp16 step(s) skipped)" if stats["skipped"] else ""
    return (f"step {self.step}/{plan.max_steps}  loss {loss:.4f}  lr {stats['lr']:.5g}  {rate:,.1f} samples/s  "
            f"next eval in {format_seconds(next_eval)}  step cap in {format_seconds(to_cap)}{skipped}")

  def evaluate(self, point):
    meta = {"epoch_num": point.epoch_num}
    self.ml.start(C.EVAL_START, metadata=meta)
    # Each rank's batch-norm statistics saw only its own data: evaluate (and end) with their mean, so every
    # rank holds the same model.
    self.runtime.average_variables(self.model.non_trainable_variables)
    dataset = self.runtime.distribute_dataset(self.task.eval_dataset)
    correct, count = self.eval_loop(dataset)
    correct, count = self.runtime.all_sum_host([correct, count])
    expected = self.task.eval_examples
    if round(count) != expected:
      raise RuntimeError(f"evaluation saw {count} examples over all ranks, expected exactly {expected}")
    accuracy = correct / count
    self.ml.event(C.EVAL_ACCURACY, accuracy, metadata=meta)
    self.ml.end(C.EVAL_STOP, metadata=meta)
    self.accuracies.append((point.epoch_num, accuracy))
    return accuracy

