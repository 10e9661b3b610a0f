"""Shared test helpers: the repo root, the venv's python, demo data made once per session, runners for the CLI
(one process or Horovod ranks), the compliance checker, and an in-process trainer for the proofs of the step."""
import contextlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Real inputs kept in the repository (tests/data/README.md: source and licence): WikiExtractor files and BERT's vocab.
TEST_DATA = ROOT / "tests" / "data"
WIKI_SAMPLE = sorted((TEST_DATA / "wikipedia_sample").glob("wiki_??"))
BERT_VOCAB = TEST_DATA / "bert_uncased_vocab.txt"
PYTHON = sys.executable
HOROVODRUN = os.path.join(os.path.dirname(PYTHON), "horovodrun")  # scripts/setup.sh builds Horovod into the venv


def skip_unless(condition, reason):
  """Skips a test whose prerequisite is missing -- except under CI=true, where a missing prerequisite would hide
  coverage silently, so the test fails instead."""
  if not condition:
    if os.environ.get("CI") == "true":
      pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def require_horovod():
  skip_unless(os.path.exists(HOROVODRUN), "horovod is not installed (scripts/setup.sh builds it)")


def run_module(module, *args, cwd=None, timeout=900, env=None, ranks=None):
  """Runs `python -m module args` in a fresh process (as users do) and returns the CompletedProcess; with `ranks`,
  as that many Horovod processes under horovodrun (gloo)."""
  full_env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
                  PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
  full_env.update(env or {})
  launcher = [HOROVODRUN, "--gloo", "-np", str(ranks)] if ranks else []
  return subprocess.run([*launcher, PYTHON, "-m", module, *map(str, args)], cwd=cwd or ROOT, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


def run_train(*args, **kw):
  return run_module("tf_gp2bm.train", *args, **kw)


def check_compliance(log_path, tmp_path):
  """The official checker with the pinned ruleset; it writes compliance_checker.log to its cwd."""
  out = run_module("mlperf_logging.compliance_checker", "--usage", "training", "--ruleset", "4.0.0",
                   log_path, cwd=tmp_path)
  return out.returncode == 0 and "SUCCESS" in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.fixture(scope="session")
def demo_imagenet(tmp_path_factory):
  out = tmp_path_factory.mktemp("demo_imagenet")
  from data_prep.demo import imagenet as demo_imagenet
  demo_imagenet.generate(str(out))
  return out


@pytest.fixture(scope="session")
def demo_bert(tmp_path_factory):
  """data_prep.demo.bert's records, manifests and TF1 checkpoint; .flags are the trainer flags that point at them."""
  out = tmp_path_factory.mktemp("demo_bert")
  from data_prep.demo import bert as gen
  _, flags = gen.generate(str(out))
  return types.SimpleNamespace(root=out, flags=flags, train=out / "train", eval=out / "eval",
                               ckpt=[f.split("=", 1)[1] for f in flags if f.startswith("--init_checkpoint=")][0])


# --- in-process trainer (the proofs of the training step) --------------------------------------------------------
# TensorFlow is imported inside these helpers so that the TF-free tests (driver, scoring) start without it.

def build_trainer(task_name, *flag_args, distribution="none", seed=1, build=True, mlperf_log_path=None):
  """A tf_gp2bm Trainer for the task's smoke flagfile plus `flag_args`: the real runtime, task, precision and
  optimizer, as train.py assembles them. Inputs are checked only when the flags name a --data_dir; nothing reads
  a dataset until a test feeds a batch or runs the trainer. The MLPerf log is written only to `mlperf_log_path`."""
  import tf_keras
  from absl import flags
  from tf_gp2bm import cli_flags, mlperf_log, tasks
  from tf_gp2bm.run_config import RunConfig
  from tf_gp2bm.runtime.factory import create_runtime
  from tf_gp2bm.runtime.precision import Precision
  from tf_gp2bm.trainer import Trainer
  fv = flags.FLAGS
  fv.unparse_flags()
  cli_flags.parse(["tests", f"--task={task_name}", f"--flagfile={ROOT}/flags/{task_name}/smoke.flags",
                   f"--seed={seed}", *flag_args])
  config = RunConfig.from_flags(fv)
  runtime = create_runtime(distribution)
  precision = Precision(config.precision)
  tf_keras.utils.set_random_seed(seed)
  task = tasks.create(task_name, runtime, config.task_config, config.seed)
  if config.task_config.data_dir:
    task.check_inputs()
  ml = mlperf_log.MLPerfLogger(mlperf_log_path and str(mlperf_log_path), enabled=mlperf_log_path is not None)
  trainer = Trainer(task, runtime, precision, ml, xla=config.xla, steps_per_loop=config.steps_per_loop,
                    log=lambda *_: None)
  if build:
    trainer.build()
  return trainer


def fixed_batch(trainer, seed=0):
  """A global batch (numpy) with the shapes and value ranges of the task's real one; the same for the same seed."""
  import tensorflow as tf
  tf.random.set_seed(seed)
  batch = trainer.task.synthetic_batch(training=True)
  return {k: v.numpy() for k, v in batch.items()}


def train_on(trainer, global_batch, steps=1):
  """Runs `steps` compiled training steps on one fixed global batch: replica r of n gets rows [r*b, (r+1)*b)."""
  import numpy as np
  import tensorflow as tf
  runtime = trainer.runtime

  def dataset_fn(ctx):
    per_pipeline = ctx.num_replicas_in_sync // ctx.num_input_pipelines
    first = ctx.input_pipeline_id * per_pipeline
    parts = {k: np.stack(np.split(v, runtime.num_replicas)[first:first + per_pipeline])
             for k, v in global_batch.items()}
    return tf.data.Dataset.from_tensor_slices(parts).repeat()

  trainer.train_loop(iter(runtime.distribute_dataset(dataset_fn)), tf.constant(steps))


def snapshot(variables):
  return [v.numpy().copy() for v in variables]


@pytest.fixture
def trainer_factory():
  """build_trainer, then puts back the global state it sets (flags, Keras dtype policy) for the next test."""
  yield build_trainer
  import tf_keras
  from absl import flags
  tf_keras.mixed_precision.set_global_policy("float32")
  flags.FLAGS.unparse_flags()


@pytest.fixture(scope="session")
def resnet_smoke_run(demo_imagenet, tmp_path_factory):
  """One ResNet smoke run (flags/resnet/smoke.flags on the demo data, seed 1234) for every test that needs a
  finished real run: its folder, the CompletedProcess and the MLPerf log's events."""
  out = tmp_path_factory.mktemp("resnet_smoke") / "run"
  r = run_train("--task=resnet", f"--flagfile={ROOT}/flags/resnet/smoke.flags", f"--data_dir={demo_imagenet}",
                f"--output_dir={out}", "--seed=1234")
  events = [json.loads(line.split(":::MLLOG ", 1)[1]) for line in open(out / "mlperf.log") if ":::MLLOG " in line] \
      if (out / "mlperf.log").exists() else []
  return types.SimpleNamespace(out=out, result=r, events=events)


@contextlib.contextmanager
def mounted_tmpfs(path, size="4m", read_only=False):
  """A small tmpfs at `path` (made here, unmounted after): a file system that fills up, or a read-only one.
  Needs root (or CAP_SYS_ADMIN); skipped otherwise, failing under CI=true."""
  os.makedirs(path, exist_ok=True)
  options = f"size={size}" + (",ro" if read_only else "")
  r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
  skip_unless(r.returncode == 0, f"cannot mount a tmpfs ({r.stderr.strip()}): needs root")
  try:
    yield Path(path)
  finally:
    subprocess.run(["umount", "-l", str(path)], check=True)


def remount(path, read_only):
  subprocess.run(["mount", "-o", f"remount,{'ro' if read_only else 'rw'}", str(path)], check=True)


@pytest.fixture(scope="module")
def slurm():
  """The real one-node Slurm of tests/slurm_cluster.py, up for the module's tests."""
  from slurm_cluster import SlurmCluster, SlurmUnavailable
  cluster = SlurmCluster()
  already_up = cluster.ready()
  try:
    cluster.up()
  except SlurmUnavailable as e:
    pytest.fail(f"the test Slurm cluster did not start: {e}")
  yield cluster
  if not already_up:  # daemons this test started end with it; a cluster started by hand stays
    cluster.down()
