"""The `published` stage: accept what MLCommons distributes instead of regenerating it, after checking it.

Text (bert-preprocessed-wikipedia-dataset: ./results): all 500 part-00xxx-of-00500 files and eval.txt must be
there; the files with published md5s (six parts, eval.txt, eval.md5) must match; and every eval.txt article
must match its line of eval.md5 (so the eval text is checked article by article, not just as one file).
Ready TFRecords: all 500 parts plus eval_10k must be there, those with published sizes must match, eval_10k
must hold 10,000 intact records, and every record is read back into manifest.json (the file the trainer reads).
Either way the stage manifest records bytes and sha256 of every file, so `verify` can re-check the copy later.
"""
import hashlib
import multiprocessing
import os
import sys

from data_prep.wikipedia import published
from data_prep.wikipedia.manifest import StageError, manifest_path, tool_versions
from data_prep.wikipedia.tfrecords import EVAL_10K, describe_records
from tf_gp2bm.files import md5_file, sha256_file, write_json_atomic
from tf_gp2bm.progress import Progress


def _require(folder, names, what):
  missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
  if missing:
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    raise StageError(f"{folder}: {len(missing)} {what} file(s) missing: {shown}")


def _hash(path):
  return path, os.path.getsize(path), sha256_file(path)


def _hash_all(folder, names, workers, label):
  progress = Progress(label, total=len(names), unit="files")
  files = {}
  with multiprocessing.get_context("fork").Pool(max(1, workers or os.cpu_count() or 1)) as pool:
    for path, size, digest in pool.imap(_hash, [os.path.join(folder, n) for n in names]):
      files[os.path.basename(path)] = {"bytes": size, "sha256": digest}
      progress.update()
  progress.finish()
  return files


def check_eval_articles(eval_txt, eval_md5):
  """Every article of eval.txt (blank-line separated) against its md5 line, as seperate_test_set.py wrote them."""
  with open(eval_txt, "r", encoding="utf-8", newline="\n") as f:
    articles = f.read().split("\n\n")
  if articles and articles[-1] == "":
    articles.pop()  # the text ends with the separator written after the last article
  with open(eval_md5) as f:
    expected = [line.strip() for line in f if line.strip()]
  if len(articles) != len(expected):
    raise StageError(f"{eval_txt} has {len(articles):,} articles, {eval_md5} lists {len(expected):,}")
  for index, (article, digest) in enumerate(zip(articles, expected)):
    if hashlib.md5(article.rstrip().encode("utf-8")).hexdigest() != digest:
      raise StageError(f"{eval_txt}: article {index} (starting {article[:60]!r}) does not match line "
                       f"{index + 1} of {eval_md5}")
  return len(articles)


def accept_text(folder, workers=None):
  parts = [published.part_name(i) for i in range(published.NUM_PARTS)]
  _require(folder, parts + ["eval.txt"], "published text")
  for name, (size, md5) in published.TEXT.items():
    path = os.path.join(folder, name)
    if name == "eval.md5" and not os.path.exists(path):
      continue  # optional: only used to check eval.txt article by article
    if os.path.getsize(path) != size:
      raise StageError(f"{path}: {os.path.getsize(path):,} bytes, the published file has {size:,}")
    if md5_file(path) != md5:
      raise StageError(f"{path}: md5 differs from the published {md5}")
  names = parts + ["eval.txt"]
  extra = {}
  if os.path.exists(os.path.join(folder, "eval.md5")):
    extra["eval_articles_checked"] = check_eval_articles(os.path.join(folder, "eval.txt"),
                                                         os.path.join(folder, "eval.md5"))
    names.append("eval.md5")
  files = _hash_all(folder, names, workers, "published-text")
  return _write(folder, "published-text", files, extra)


def accept_tfrecords(folder, workers=None, vocab_size=published.VOCAB_ENTRIES):
  """The 500 published parts and eval_10k, each record read back into manifest.json (token ids against the
  published vocab, layout, counts, sha256) and the stage manifest."""
  parts = [published.part_name(i) for i in range(published.NUM_PARTS)]
  _require(folder, parts + [EVAL_10K], "published TFRecord")
  for name, size in published.TFRECORD_BYTES.items():
    path = os.path.join(folder, name)
    if os.path.exists(path) and os.path.getsize(path) != size:
      raise StageError(f"{path}: {os.path.getsize(path):,} bytes, the published {name} has {size:,}")
  try:
    described = describe_records(folder, "eval", [EVAL_10K], published.OFFICIAL_SETTINGS, vocab_size, workers)
    eval_count = described["splits"]["eval"]["records"]
    if eval_count != published.NUM_EVAL_EXAMPLES:
      raise StageError(f"{folder}/{EVAL_10K} holds {eval_count:,} records, not {published.NUM_EVAL_EXAMPLES:,}")
    described = describe_records(folder, "train", parts, published.OFFICIAL_SETTINGS, vocab_size, workers)
  except OSError as e:
    raise StageError(f"the files in {folder} check out, but their manifest.json cannot be written there ({e}); "
                     "copy the folder somewhere writable and run the stage on the copy") from None
  files = {n: {"bytes": e["bytes"], "sha256": e["sha256"]} for n, e in described["files"].items()}
  files[EVAL_10K]["count"] = eval_count
  return _write(folder, "published-tfrecords", files, {})


def _write(folder, stage, files, extra):
  manifest = {"stage": stage, "tools": tool_versions(), "files": files,
              "total": {"files": len(files), "bytes": sum(f["bytes"] for f in files.values())}}
  manifest.update(extra)
  try:
    write_json_atomic(manifest_path(folder, stage), manifest)
  except OSError as e:
    raise StageError(f"the files in {folder} check out, but their manifest cannot be written there ({e}); "
                     "copy the folder somewhere writable and run the stage on the copy") from None
  print(f"[{stage}] {folder}: {len(files)} files accepted", file=sys.stderr)
  return manifest
