"""The `split` stage: segmented article files -> 500 training text parts + eval.txt/eval.md5, as the reference.

Reference steps (cleanup_scripts/seperate_test_set.py, then do_gather.py with its default single worker):
  * files in sorted path order; file k of F holds back int((k+1)*10000/F) - int(k*10000/F) articles, chosen
    with random.Random(12345 + 13*k): int(rng.random() * A) over its A = len(text.split("\\n\\n")) pieces,
    redrawing repeats; each kept piece is written followed by "\\n\\n", held-back pieces go to eval.txt in file
    and piece order, with md5(piece.rstrip()) per line in eval.md5;
  * the training text of consecutive files is packed into parts: a new part starts when the running total of
    the *WikiExtractor* file sizes (the raw wiki_nn, not the segmented text) would pass 26.92 MiB; each file's
    text is read back with universal newlines, and one of its two final newlines is dropped.
Here the part boundaries are planned first from the raw sizes, so every part is an independent, resumable job.
"""
import hashlib
import io
import json
import multiprocessing
import os
import random
import sys

from tf_gp2bm.files import atomic_output, check_out_apart, readable_files, sha256_file
from data_prep.wikipedia.manifest import StageError, is_done, mark_done, remove_stale_temps, write_manifest
from tf_gp2bm.progress import Progress

BLOCK_MB = 26.92
SEED = 12345
EVAL_PIECES = ".eval-pieces"


def tests_for_file(file_id, num_files, num_test_articles):
  return int((file_id + 1) * num_test_articles * 1.0 / num_files) - int(file_id * num_test_articles * 1.0 / num_files)


def separate(text, file_id, num_files, num_test_articles=10_000, seed=SEED):
  """seperate_test_set.py on one file's text: (training text, held-back articles in article order)."""
  articles = text.split("\n\n")
  wanted = tests_for_file(file_id, num_files, num_test_articles)
  if wanted > len(articles):
    raise StageError(f"file #{file_id} has {len(articles)} articles but {wanted} are to be held back")
  rng = random.Random(seed + file_id * 13)
  held = set()
  while len(held) < wanted:
    held.add(int(rng.random() * len(articles)))  # a repeat changes nothing, exactly as the reference retries
  train = "".join(a + "\n\n" for i, a in enumerate(articles) if i not in held)
  return train, [a for i, a in enumerate(articles) if i in held]


def plan_parts(raw_sizes, block_mb=BLOCK_MB, num_outputs=500):
  """do_gather.py's grouping: [(part name, [file indices])] from the raw WikiExtractor file sizes."""
  limit = block_mb * 1024 * 1024
  groups, total = [], 0
  for index, size in enumerate(raw_sizes):
    if groups and limit < total + size:
      groups.append([])
      total = 0
    if not groups:
      groups.append([])
    total += size
    groups[-1].append(index)
  return [(f"part-{k:05d}-of-{num_outputs:05d}", g) for k, g in enumerate(groups)]


def _gather_text(train_text):
  """What do_gather.py writes for one file: read back with universal newlines ('utf-8-sig' also drops a
  leading BOM), minus one of two final newlines."""
  content = io.StringIO(train_text.lstrip("\ufeff"), newline=None).read()
  if len(content) >= 2 and content[-1] == content[-2] == "\n":
    content = content[:-1]
  return content


def _one_part(job):
  out_dir, name, files, num_files, num_test_articles, settings = job
  held_all = []
  path = os.path.join(out_dir, name)
  with atomic_output(path) as tmp:
    with open(tmp, "w", encoding="utf-8", newline="\n") as out:
      for file_id, segmented in files:
        with open(segmented, "r", encoding="utf-8", newline="\n") as f:
          train, held = separate(f.read(), file_id, num_files, num_test_articles)
        out.write(_gather_text(train))
        held_all.extend(held)
  pieces = os.path.join(out_dir, EVAL_PIECES, name)
  os.makedirs(os.path.dirname(pieces), exist_ok=True)
  with atomic_output(pieces) as tmp:
    with open(tmp, "w", encoding="utf-8", newline="\n") as out:
      # one JSON string per line: articles may begin or end with newlines, so no separator is safe
      out.writelines(json.dumps(a) + "\n" for a in held_all)
  inputs = [s for _, s in files]
  mark_done(out_dir, name, inputs, settings, _file_stats(path, count=None))
  mark_done(out_dir, f"{EVAL_PIECES}/{name}", inputs, settings, _file_stats(pieces, count=len(held_all)))
  return name, len(held_all)


def _file_stats(path, count):
  stats = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
  if count is not None:
    stats["count"] = count
  return stats


def run_split(segmented, raw_sizes, out_dir, workers=None, num_test_articles=10_000, block_mb=BLOCK_MB,
              num_outputs=500):
  """segmented: the sentence-per-line files in the reference's (sorted path) order; raw_sizes: the byte sizes
  of the WikiExtractor files they came from."""
  if len(segmented) != len(raw_sizes):
    raise StageError("split needs one raw WikiExtractor size per segmented file")
  settings = {"num_test_articles": num_test_articles, "seed": SEED, "block_mb": block_mb,
              "num_files": len(segmented)}
  plan = plan_parts(raw_sizes, block_mb, num_outputs)
  readable_files(segmented, "--input")
  check_out_apart(out_dir, [("--input", path) for path in segmented])
  os.makedirs(out_dir, exist_ok=True)
  remove_stale_temps(out_dir)
  jobs = []
  for name, indices in plan:
    files = [(i, segmented[i]) for i in indices]
    if not (is_done(out_dir, name, [s for _, s in files], settings)
            and is_done(out_dir, f"{EVAL_PIECES}/{name}", [s for _, s in files], settings)):
      jobs.append((out_dir, name, files, len(segmented), num_test_articles, settings))
  print(f"[split] {len(segmented)} files -> {len(plan)} parts; {len(plan) - len(jobs)} already done",
        file=sys.stderr)
  progress = Progress("split", total=len(jobs), unit="parts")
  if jobs:
    with multiprocessing.get_context("fork").Pool(max(1, min(workers or os.cpu_count() or 1, len(jobs)))) as pool:
      for _ in pool.imap_unordered(_one_part, jobs):
        progress.update()
    progress.finish()
  _write_eval(out_dir, [name for name, _ in plan], settings)
  return write_manifest(out_dir, "split", settings, [n for n, _ in plan] + ["eval.txt", "eval.md5"])


def _write_eval(out_dir, part_names, settings):
  """eval.txt = held-back articles of all parts in order; eval.md5 = md5 of each article without trailing
  whitespace, one per line."""
  pieces = [os.path.join(out_dir, EVAL_PIECES, n) for n in part_names]
  articles = 0
  text_path, md5_path = os.path.join(out_dir, "eval.txt"), os.path.join(out_dir, "eval.md5")
  with atomic_output(text_path) as tmp_text, atomic_output(md5_path) as tmp_md5:
    with open(tmp_text, "w", encoding="utf-8", newline="\n") as text, \
         open(tmp_md5, "w", encoding="utf-8", newline="\n") as md5s:
      for piece in pieces:
        with open(piece, "r", encoding="utf-8", newline="\n") as f:
          held = [json.loads(line) for line in f]
        for article in held:
          text.write(article + "\n\n")
          md5s.write(hashlib.md5(article.rstrip().encode("utf-8")).hexdigest() + "\n")
          articles += 1
  mark_done(out_dir, "eval.txt", pieces, settings, dict(_file_stats(text_path, None), count=articles))
  mark_done(out_dir, "eval.md5", pieces, settings, dict(_file_stats(md5_path, None), count=articles))
