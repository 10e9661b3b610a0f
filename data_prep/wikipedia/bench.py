"""`bench`: the tfrecords stage against the plain reference-style implementation, same input, same command.

Input: WikiExtractor files (default: the repository's sample, tests/data) through the reference clean-up into text parts. The
reference side is tests/reference_pretraining_data.py (the test oracle: a plain re-statement of the reference
create_pretraining_data.py) writing tf.train.Example through tf.io.TFRecordWriter, one part after another as
the reference README runs it, with TensorFlow imported before the clock starts. Our side is the `tfrecords`
stage, first with one worker, then with one worker per core. Both outputs are parsed and compared example by
example; a difference fails the bench. Wall and CPU times are printed: other jobs on the machine inflate wall
times, CPU times are the steadier figure.
"""
import importlib.util
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from data_prep.bert_records import read_records
from data_prep.wikipedia import published
from data_prep.wikipedia.manifest import StageError
from data_prep.wikipedia.text import clean_file
from data_prep.wikipedia.tfrecords import expand_inputs, run_tfrecords

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "tests" / "data"  # tests/data/README.md: the sample's source and licence


def _load_reference():
  path = REPO / "tests" / "reference_pretraining_data.py"
  if not path.exists():
    raise StageError(f"{path} (the reference-style implementation the bench compares with) is missing")
  spec = importlib.util.spec_from_file_location("reference_pretraining_data", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _cpu_seconds():
  own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _reference_run(reference, parts, vocab, out_dir, settings):
  import tensorflow as tf
  os.makedirs(out_dir, exist_ok=True)
  count = 0
  for part in parts:
    tokenizer = reference.ReferenceTokenizer(vocab, settings["do_lower_case"])
    instances = reference.create_instances(
        [part], tokenizer, settings["max_seq_length"], settings["dupe_factor"], settings["short_seq_prob"],
        settings["masked_lm_prob"], settings["max_predictions_per_seq"], settings["random_seed"])
    with tf.io.TFRecordWriter(os.path.join(out_dir, os.path.basename(part))) as writer:
      for instance in instances:
        features = reference.to_features(instance, tokenizer, settings["max_seq_length"],
                                         settings["max_predictions_per_seq"])
        feature = {k: (tf.train.Feature(float_list=tf.train.FloatList(value=v)) if k == "masked_lm_weights"
                       else tf.train.Feature(int64_list=tf.train.Int64List(value=v)))
                   for k, v in features.items()}
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        count += 1
  return count


def _timed(fn):
  wall, cpu = time.monotonic(), _cpu_seconds()
  result = fn()
  return result, time.monotonic() - wall, _cpu_seconds() - cpu


def _features(path):
  import tensorflow as tf
  for record in read_records(path):
    feature = tf.train.Example.FromString(record).features.feature
    yield {k: list(v.int64_list.value) or list(v.float_list.value) for k, v in feature.items()}


def _compare(parts, dir_a, dir_b):
  """Number of examples, after checking every example of every part is the same in both folders."""
  total = 0
  for part in parts:
    name = os.path.basename(part)
    a, b = list(_features(os.path.join(dir_a, name))), list(_features(os.path.join(dir_b, name)))
    if len(a) != len(b):
      raise StageError(f"bench: {name}: {len(a):,} examples from the reference, {len(b):,} from the stage")
    for index, (x, y) in enumerate(zip(a, b)):
      if x != y:
        diff = sorted(k for k in x if x.get(k) != y.get(k))
        raise StageError(f"bench: {name}: example {index} differs in {diff}")
    total += len(a)
  return total


def run_bench(args):
  import tensorflow  # noqa: F401  imported before any clock starts (the reference side needs it)
  reference = _load_reference()
  sample = sorted(str(p) for p in (SAMPLE_DATA / "wikipedia_sample").glob("wiki_??"))
  inputs = expand_inputs(args.input) if args.input else sample
  vocab = args.vocab or str(SAMPLE_DATA / "bert_uncased_vocab.txt")
  if not inputs or not os.path.isfile(vocab):
    raise StageError(f"bench needs WikiExtractor files and a vocab (looked in {SAMPLE_DATA})")
  settings = dict(published.OFFICIAL_SETTINGS, dupe_factor=args.dupe_factor)
  workers = args.workers or os.cpu_count() or 1
  with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
    parts = []
    for src in inputs:  # the reference clean-up; each file becomes one "part"
      parts.append(os.path.join(work, "text", os.path.basename(src)))
      os.makedirs(os.path.dirname(parts[-1]), exist_ok=True)
      clean_file(src, parts[-1])
    size = sum(os.path.getsize(p) for p in parts)
    print(f"[bench] {len(parts)} parts, {size:,} bytes of cleaned text, settings {settings}", file=sys.stderr)
    ref_count, ref_wall, ref_cpu = _timed(lambda: _reference_run(reference, parts, vocab,
                                                                 os.path.join(work, "reference"), settings))
    print(f"[bench] reference-style: {ref_count:,} examples in {ref_wall:.1f}s", file=sys.stderr)
    runs = []
    for n in sorted({1, workers}):
      out = os.path.join(work, f"stage-{n}")
      manifest, wall, cpu = _timed(lambda: run_tfrecords(parts, vocab, out, settings, workers=n,
                                                         label=f"bench-stage-{n}"))
      runs.append((n, manifest["total"]["count"], wall, cpu, out))
    checked = [_compare(parts, os.path.join(work, "reference"), out) for *_, out in runs]
  print(f"identical output: {checked[0]:,} examples, every feature of every example, in order "
        f"(reference vs stage with {', '.join(str(r[0]) for r in runs)} worker(s))")
  print(f"{'implementation':<28}{'examples':>10}{'wall s':>9}{'ex/s wall':>11}{'CPU s':>8}{'ex/CPU s':>10}"
        f"{'speed-up (wall)':>17}{'(CPU)':>8}")
  rows = [("reference-style, 1 process", ref_count, ref_wall, ref_cpu)]
  rows += [(f"tfrecords stage, {n} worker{'s' if n > 1 else ''}", c, w, u) for n, c, w, u, _ in runs]
  for name, count, wall, cpu in rows:
    print(f"{name:<28}{count:>10,}{wall:>9.1f}{count / wall:>11,.0f}{cpu:>8.1f}{count / cpu:>10,.0f}"
          f"{ref_wall / wall:>16.1f}x{ref_cpu / cpu:>7.1f}x")
  share = ref_cpu / ref_wall
  if share < 0.8:  # a single-process run should get ~100% of a core on an idle machine
    print(f"note: the machine was busy; the reference run got {share:.0%} of a core, so compare CPU figures")
