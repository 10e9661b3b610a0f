"""The `tfrecords` and `eval` stages: text parts -> BERT pretraining TFRecords, one worker per part.

Each part is an independent run of the reference generator (its own random.Random(12345)), exactly as the
reference README runs create_pretraining_data.py once per part, so parts can go to any worker in any order.
"""
import glob
import multiprocessing
import os
import re
import sys
import tempfile
import time

from data_prep import bert_manifest, output_lock
from data_prep.bert_records import read_records, serialize_instance, write_records
from data_prep.wikipedia import published
from data_prep.wikipedia.instances import create_pretraining_examples
from data_prep.wikipedia.manifest import (StageError, code_version, is_done, mark_done, remove_stale_temps,
                                          write_manifest)
from data_prep.wikipedia.wordpiece import load_vocab
from tf_gp2bm.files import check_out_apart, check_readable, md5_file, readable_files
from tf_gp2bm.progress import Progress

EVAL_TEXT, EVAL_INTERMEDIATE, EVAL_10K = "eval.txt", "eval_intermediate", "eval_10k"
TOOL = {"name": "data_prep.wikipedia", "code": code_version()}


def expand_inputs(spec):
  """FILE, GLOB, FOLDER (its part-* files) or a comma-separated list of them -> sorted unique paths; any
  pattern matching no file is an error naming that pattern."""
  paths = []
  for pattern in [p for p in spec.split(",") if p]:
    pattern = os.path.expanduser(pattern)
    if os.path.isdir(pattern):
      pattern = os.path.join(glob.escape(pattern), "part-*")
    matched = readable_files([p for p in sorted(glob.glob(pattern)) if ".tmp." not in p], "--input")
    if not matched:
      raise StageError(f"input {pattern!r} matches no file")
    paths.extend(matched)
  return list(dict.fromkeys(paths))


_PART = re.compile(r"^part-(\d{5})-of-(\d{5})$")


def check_complete_parts(paths):
  """If the inputs are part-XXXXX-of-NNNNN files, all N must be there: a missing part is an error naming it."""
  numbered = [_PART.match(os.path.basename(p)) for p in paths]
  if not paths or not all(numbered):
    return
  totals = {int(m.group(2)) for m in numbered}
  if len(totals) != 1:
    raise StageError(f"inputs mix part counts {sorted(totals)}")
  total = totals.pop()
  have = {int(m.group(1)) for m in numbered}
  missing = [f"part-{i:05d}-of-{total:05d}" for i in range(total) if i not in have]
  if missing:
    folder = os.path.dirname(paths[0]) or "."
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    raise StageError(f"{len(missing)} of {total} parts missing in {folder}: {shown} "
                     "(--allow_missing_parts to process only those present)")


def output_name(input_path):
  name = os.path.basename(input_path)
  return EVAL_INTERMEDIATE if name == EVAL_TEXT else name


def check_vocab(vocab_file, settings):
  if not os.path.isfile(vocab_file):
    raise StageError(f"vocab file {vocab_file} does not exist")
  vocab = load_vocab(vocab_file)
  missing = [t for t in ("[CLS]", "[SEP]", "[MASK]", "[UNK]") if t not in vocab]
  if missing:
    raise StageError(f"vocab file {vocab_file} lacks {', '.join(missing)}")
  if settings == published.OFFICIAL_SETTINGS and len(vocab) != published.VOCAB_ENTRIES:
    raise StageError(f"vocab file {vocab_file} has {len(vocab):,} entries; the MLPerf settings need the "
                     f"{published.VOCAB_ENTRIES:,}-entry uncased vocab (md5 {published.VOCAB_MD5})")
  return len(vocab)


def _one_part(job):
  """Worker: one text part -> one TFRecord file and its done marker."""
  input_path, out_dir, name, vocab_file, settings = job
  start = time.monotonic()
  instances = create_pretraining_examples(
      [input_path], vocab_file, max_seq_length=settings["max_seq_length"],
      max_predictions_per_seq=settings["max_predictions_per_seq"], masked_lm_prob=settings["masked_lm_prob"],
      short_seq_prob=settings["short_seq_prob"], dupe_factor=settings["dupe_factor"],
      random_seed=settings["random_seed"], do_lower_case=settings["do_lower_case"])
  if not instances:
    raise StageError(f"{input_path}: no pretraining examples (a part of blank lines or too few sentences); "
                     "remove it from the inputs or regenerate it")
  records = (serialize_instance(x, settings["max_seq_length"], settings["max_predictions_per_seq"])
             for x in instances)
  stats = write_records(os.path.join(out_dir, name), records)
  mark_done(out_dir, name, [input_path], dict(settings, vocab_md5=md5_file(vocab_file)), stats)
  return name, stats["count"], time.monotonic() - start


def run_tfrecords(inputs, vocab_file, out_dir, settings, workers=None, label="tfrecords", split=None):
  """Generates one TFRecord file per input text file into out_dir; resumes from done markers. With `split`
  ("train"), also reads the outputs back into manifest.json (see data_prep.bert_manifest)."""
  for path in inputs:
    if not os.path.lexists(path):
      raise StageError(f"input {path} does not exist")
    check_readable(path, "--input")
    if os.path.getsize(path) == 0:
      raise StageError(f"input {path} is empty (0 bytes): an empty part would become a record file of no "
                       "examples; remove it from the inputs or regenerate it")
  names = [output_name(p) for p in inputs]
  clashes = sorted({n for n in names if names.count(n) > 1})
  if clashes:
    raise StageError(f"inputs from different folders would write the same output {clashes[0]!r}")
  check_out_apart(out_dir, [("--input", p) for p in inputs] + [("--vocab", vocab_file)])
  vocab_size = check_vocab(vocab_file, settings)
  check_writable(out_dir)
  with output_lock.holding(out_dir, f"python -m data_prep.wikipedia {label.split('-')[0]}", error=StageError):
    remove_stale_temps(out_dir)
    marker_settings = dict(settings, vocab_md5=md5_file(vocab_file))
    todo = [(p, out_dir, n, vocab_file, settings) for p, n in zip(inputs, names)
            if not is_done(out_dir, n, [p], marker_settings)]
    if len(todo) < len(inputs):
      print(f"[{label}] {len(inputs) - len(todo)} of {len(inputs)} outputs already done (markers in "
            f"{out_dir}/.done), {len(todo)} to make", file=sys.stderr)
    progress = Progress(label, total=len(todo), unit="parts", every_s=0)
    examples = 0
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    if todo:
      # fork: workers inherit the imported modules. A worker does many parts in turn and keeps its tokenizer's
      # word memo (bounded) between them; a part's instances are freed when it is written.
      with multiprocessing.get_context("fork").Pool(workers) as pool:
        for name, count, seconds in pool.imap_unordered(_one_part, todo):
          examples += count
          print(f"[{label}] {name}: {count:,} examples in {seconds:.1f}s; total {examples:,} examples, "
                f"{examples / max(1e-9, time.monotonic() - progress.start):,.1f} examples/s", file=sys.stderr)
          progress.update()
      progress.finish()
    manifest = write_manifest(out_dir, label, marker_settings, names)
    if split:
      describe_records(out_dir, split, names, settings, vocab_size, workers)
    return manifest


def describe_records(out_dir, split, names, settings, vocab_size, workers=None):
  """manifest.json: every record read back (counts, token ids against the vocab, layout, sizes, sha256)."""
  progress = Progress(f"{split} manifest", total=len(names), unit="files")
  manifest = bert_manifest.write_manifest(out_dir, split, names, settings["max_seq_length"],
                                          settings["max_predictions_per_seq"], vocab_size, tool=TOOL,
                                          workers=workers, progress=progress)
  progress.finish()
  return manifest


def check_writable(out_dir):
  """Creates out_dir and proves a file can be written there, before any slow work."""
  try:
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
      pass
  except OSError as e:
    raise StageError(f"--out={out_dir}: cannot write there ({e.strerror or e})") from None


def pick_eval(intermediate, out_path, num_examples=published.NUM_EVAL_EXAMPLES):
  """pick_eval_samples.py: records[int(i * (N / num_examples))] for i < num_examples, in that order.

  Two passes over the file instead of holding all N records in memory."""
  total = sum(1 for _ in read_records(intermediate))
  if total < num_examples:
    raise StageError(f"{intermediate} has {total:,} records, fewer than the {num_examples:,} to pick")
  ratio = total / num_examples  # the reference's float pick_ratio, multiplied as it does
  wanted = [int(i * ratio) for i in range(num_examples)]
  picked_at = set(wanted)
  kept = {}
  for index, record in enumerate(read_records(intermediate)):
    if index in picked_at:
      kept[index] = record
  return write_records(out_path, (kept[i] for i in wanted)), total


def check_published_size(path, name):
  """Compares a TFRecord's size with the published one; returns a line for the log, raises if it differs."""
  expected = published.TFRECORD_BYTES.get(name)
  if expected is None:
    return None
  size = os.path.getsize(path)
  if size != expected:
    raise StageError(f"{path}: {size:,} bytes, the published {name} has {expected:,}")
  return f"{path}: {size:,} bytes, the same as the published {name}"
