"""BERT-large on Wikipedia 2020/01/01: the facts the driver needs (no TensorFlow here)."""
import glob
import math
import os

from tf_gp2bm.errors import InputError
from tf_gp2bm.formats import bert_pretraining
from tf_gp2bm.tasks import spec_checks
from tf_gp2bm.tasks.spec import StopPoint, TaskSpec

EVAL_EXAMPLES = 10_000


def eval_interval_samples(global_batch_size):
  """The rules' eval interval: FLOOR(0.05 * (230.23 * GBS + 3,000,000), 25,000) samples."""
  return int(math.floor(0.05 * (230.23 * global_batch_size + 3_000_000) / 25_000)) * 25_000


def eval_every_steps(global_batch_size, interval=None):
  """The interval rounded up to whole optimizer steps."""
  return math.ceil((interval or eval_interval_samples(global_batch_size)) / global_batch_size)


def stop_point(global_batch_size, samples):
  interval = eval_every_steps(global_batch_size) * global_batch_size
  evals = max(1, math.ceil(samples / interval))
  return StopPoint(progress=evals * interval, evals=evals, samples=evals * interval)


def demo_data(root):
  """Where `python -m data_prep.demo.bert --out=ROOT` puts its parts: train/, eval/, ckpt/model.ckpt-<steps>."""
  index = sorted(glob.glob(os.path.join(root, "ckpt", "*.index")))
  return {"data_dir": os.path.join(root, "train"), "eval_dir": os.path.join(root, "eval"),
          "init_checkpoint": index[-1][:-len(".index")] if index else None}


def check_packed(data_dir):
  """(check, status, detail) of a folder of packed rows: its pack manifest checked against its files (sizes,
  rows, totals), and the packing factor it states."""
  try:
    packed = bert_pretraining.read_pack_manifest(data_dir)
  except InputError as e:
    return ("BERT packed training rows", "FAIL", str(e))
  return ("BERT packed training rows", "PASS",
          f"{packed.rows:,} rows holding {packed.sequences:,} sequences in {len(packed.paths)} files: packing factor "
          f"{packed.packing_factor:.3f} ({packed.manifest})")


DEFAULT_PACKING_FACTOR = 2.0  # the real training set packs at 1.999 (NVIDIA's v4.0 packed-data README)


def packing_factor(data_dir=None):
  """(sequences per packed row, where the figure comes from): the pack manifest's in data_dir, else 2.0."""
  if data_dir and os.path.isfile(os.path.join(data_dir, bert_pretraining.PACK_MANIFEST)):
    packed = bert_pretraining.read_pack_manifest(data_dir)
    return packed.packing_factor, packed.manifest
  return DEFAULT_PACKING_FACTOR, "default: the real training set packs at 1.999"


def check_data(data):
  rows = []
  for flag, what in (("data_dir", "BERT training records"), ("eval_dir", "BERT eval set")):
    if flag == "data_dir" and os.path.isfile(os.path.join(data.get(flag) or "", bert_pretraining.PACK_MANIFEST)):
      rows.append(check_packed(data.get(flag)))
      continue
    files = spec_checks.record_files(data.get(flag))
    rows.append((what, "PASS" if files else "FAIL",
                 f"{len(files)} files in {data.get(flag)}" if files else f"--bert_{flag} {data.get(flag)!r}: "
                 "no record files"))
  ck = data.get("init_checkpoint") or ""
  present = bool(ck) and (os.path.exists(ck) or bool(glob.glob(glob.escape(ck) + "*")))
  rows.append(("BERT init checkpoint", "PASS" if present else "FAIL",
               ck if present else f"--bert_init_checkpoint {ck!r} not found"))
  return rows


SPEC = TaskSpec(
    name="bert", benchmark="bert", title="BERT-large / Wikipedia 2020/01/01",
    target_accuracy=0.720, accuracy_label="masked-LM accuracy", min_runs=10,
    progress_unit="samples", sample_unit="sequences", eval_examples=EVAL_EXAMPLES,
    data_flags=("data_dir", "eval_dir", "init_checkpoint"), demo_module="data_prep.demo.bert",
    demo_data=demo_data, stop_point=stop_point, check_data=check_data, packing_factor=packing_factor)
