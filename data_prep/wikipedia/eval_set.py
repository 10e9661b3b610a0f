"""The `eval` stage: eval.txt -> eval_intermediate (the reference generator) -> eval_10k (evenly spaced pick).

When eval.txt is the published one and the settings are the reference's, both outputs must have the published
byte sizes (the only published figures for them), otherwise the stage fails: a different eval set silently
changes the MLM accuracy every submission is judged by.
"""
import os
import sys

from data_prep import output_lock
from data_prep.wikipedia import published
from data_prep.wikipedia.manifest import StageError, is_done, mark_done, write_manifest
from data_prep.wikipedia.tfrecords import (EVAL_10K, EVAL_INTERMEDIATE, EVAL_TEXT, check_published_size,
                                           check_vocab, describe_records, pick_eval, run_tfrecords)
from tf_gp2bm.files import check_out_apart, md5_file


def resolve_eval_text(path):
  candidate = os.path.join(path, EVAL_TEXT) if os.path.isdir(path) else path
  if not os.path.isfile(candidate):
    raise StageError(f"eval text {candidate} does not exist")
  return candidate


def run_eval(input_path, vocab_file, out_dir, settings, num_examples=published.NUM_EVAL_EXAMPLES):
  eval_text = resolve_eval_text(input_path)
  check_out_apart(out_dir, [("--input", eval_text), ("--vocab", vocab_file)])  # before the lock makes out_dir
  with output_lock.holding(out_dir, "python -m data_prep.wikipedia eval", error=StageError):
    is_published = md5_file(eval_text) == published.TEXT[EVAL_TEXT][1]
    check_sizes = is_published and settings == published.OFFICIAL_SETTINGS
    print(f"[eval] {eval_text}: {'the published eval.txt' if is_published else 'not the published eval.txt'}"
          f"{'; outputs will be checked against the published sizes' if check_sizes else ''}", file=sys.stderr)
    manifest = run_tfrecords([eval_text], vocab_file, out_dir, settings, workers=1, label="eval-intermediate")
    intermediate = os.path.join(out_dir, EVAL_INTERMEDIATE)
    picked = os.path.join(out_dir, EVAL_10K)
    pick_settings = {"num_examples_to_pick": num_examples}
    if not is_done(out_dir, EVAL_10K, [intermediate], pick_settings):
      stats, total = pick_eval(intermediate, picked, num_examples)
      mark_done(out_dir, EVAL_10K, [intermediate], pick_settings, dict(stats, picked_from=total))
    print(f"[eval] {picked}: {num_examples:,} examples picked from {manifest['total']['count']:,}", file=sys.stderr)
    checks = []
    if check_sizes:
      checks = [check_published_size(intermediate, EVAL_INTERMEDIATE), check_published_size(picked, EVAL_10K)]
      for line in checks:
        print(f"[eval] {line}", file=sys.stderr)
    stage = write_manifest(out_dir, "eval", dict(manifest["settings"], **pick_settings),
                           [EVAL_INTERMEDIATE, EVAL_10K],
                           extra={"published_input": is_published, "published_size_checks": checks})
    describe_records(out_dir, "eval", [EVAL_10K], settings, check_vocab(vocab_file, settings))
    return stage
