"""Wikipedia -> MLPerf BERT pretraining data: `python -m data_prep.wikipedia STAGE ...`.

Stages (each resumable through per-output done markers, each writing <out>/manifest-<stage>.json):
  extract    enwiki-20200101 dump (size/md5/bz2 checked) -> WikiExtractor files XX/wiki_nn
  clean      reference cleanup_file.py + clean.sh, per file
  segment    one sentence per line with NLTK Punkt (model provided by the user, see --nltk_data)
  split      500 training parts + eval.txt/eval.md5, exactly as seperate_test_set.py + do_gather.py
  published  accept the MLCommons text parts (or ready TFRecords) after checking them, instead of the above
  tfrecords  text parts (one sentence per line, blank line between articles) -> one TFRecord file per part
  eval       eval.txt -> eval_intermediate -> eval_10k (the reference's evenly spaced pick)
  all        the stages in order into --work: from --dump, or from --published_text; training records in
             WORK/tfrecords, the eval set in WORK/eval_10k
  verify     re-check every manifest in --out (bytes, sha256), read every record again (layout, counts, token ids
             against --vocab) and write manifest.json, which the trainer reads instead of the records
  bench      time `tfrecords` against the plain reference-style implementation on the same input
  pack       training records -> rows of max_seq_length holding several sequences (--packed training)
Module docs: tfrecords/instances (generation), manifest (markers, manifests), split.

Typical use (the published text is the preferred input: WikiExtractor output depends on the day it runs):
  python -m data_prep.wikipedia all --published_text=results --vocab=vocab.txt --work=/data/bert
  python -m data_prep.wikipedia verify --out=/data/bert/tfrecords
or stage by stage: tfrecords --input=results --vocab=vocab.txt --out=DIR, then eval --input=results ...
"""
import argparse
import glob
import os
import sys

from data_prep import output_lock
from data_prep.wikipedia import published
from data_prep.wikipedia.accept import accept_text, accept_tfrecords
from data_prep.wikipedia.bench import run_bench
from data_prep.wikipedia.eval_set import run_eval
from data_prep.wikipedia.extract import run_extract
from data_prep.wikipedia.manifest import StageError, verify
from data_prep.wikipedia.pack import add_parser as add_pack_parser
from data_prep.wikipedia.records import verify_records
from data_prep.wikipedia.split import run_split
from data_prep.wikipedia.textstages import relative_files, run_text_stage
from data_prep.wikipedia.tfrecords import check_complete_parts, expand_inputs, run_tfrecords
from data_prep.wikipedia.wordpiece import load_vocab
from tf_gp2bm.errors import EXIT_BAD_INPUT, InputError


def _settings(args):
  return {
      "max_seq_length": args.max_seq_length, "max_predictions_per_seq": args.max_predictions_per_seq,
      "masked_lm_prob": args.masked_lm_prob, "short_seq_prob": args.short_seq_prob,
      "dupe_factor": args.dupe_factor, "random_seed": args.random_seed, "do_lower_case": args.do_lower_case,
  }


def _add_generation_flags(p, out=True):
  defaults = published.OFFICIAL_SETTINGS
  p.add_argument("--vocab", required=True, help="vocab.txt (the official one has 30,522 entries)")
  if out:
    p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--max_seq_length", type=int, default=defaults["max_seq_length"])
  p.add_argument("--max_predictions_per_seq", type=int, default=defaults["max_predictions_per_seq"])
  p.add_argument("--masked_lm_prob", type=float, default=defaults["masked_lm_prob"])
  p.add_argument("--short_seq_prob", type=float, default=defaults["short_seq_prob"])
  p.add_argument("--dupe_factor", type=int, default=defaults["dupe_factor"])
  p.add_argument("--random_seed", type=int, default=defaults["random_seed"])
  p.add_argument("--do_lower_case", type=lambda s: s.lower() in ("1", "true", "yes"), default=True)
  p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")


def cmd_tfrecords(args):
  inputs = expand_inputs(args.input)
  if not args.allow_missing_parts:
    check_complete_parts(inputs)
  manifest = run_tfrecords(inputs, args.vocab, args.out, _settings(args), args.workers, split="train")
  print(f"[tfrecords] {manifest['total']['files']} files, {manifest['total']['count']:,} examples, "
        f"{manifest['total']['bytes']:,} bytes in {args.out}")


def cmd_eval(args):
  run_eval(args.input, args.vocab, args.out, _settings(args), num_examples=args.num_examples)


def cmd_verify(args):
  if not os.path.isdir(args.out):
    raise StageError(f"--out={args.out}: no such directory")
  if glob.glob(os.path.join(glob.escape(args.out), "manifest-*.json")):
    problems = verify(args.out)
    for line in problems:
      print(f"[verify] {line}", file=sys.stderr)
    if problems:
      raise StageError(f"{len(problems)} file(s) in {args.out} do not match their manifest")
    print(f"[verify] {args.out}: every file matches its stage manifest")
  manifest = verify_records(args.out, args.vocab, args.workers, args.max_seq_length, args.max_predictions_per_seq)
  counts = ", ".join(f"{v['records']:,} {split} records in {v['files']} files"
                     for split, v in sorted(manifest["splits"].items()))
  print(f"[verify] {args.out}: {counts}; token ids < {manifest['vocab_size']:,}; wrote "
        f"{os.path.join(args.out, 'manifest.json')}")


def cmd_extract(args):
  run_extract(args.dump, args.out, args.workers, check_md5=not args.skip_md5)


def cmd_text(args):
  run_text_stage(args.stage, args.input, args.out, args.workers, getattr(args, "nltk_data", None))


def cmd_split(args):
  rels = relative_files(args.input)
  missing = [r for r in rels if not os.path.isfile(os.path.join(args.raw, r))]
  if missing:
    raise StageError(f"split: {len(missing)} segmented files have no WikiExtractor original under {args.raw} "
                     f"(first: {missing[0]}); do_gather.py sizes parts by the original files")
  run_split([os.path.join(args.input, r) for r in rels], [os.path.getsize(os.path.join(args.raw, r)) for r in rels],
            args.out, args.workers, num_test_articles=args.num_test_articles)


def cmd_published(args):
  if not (args.text or args.tfrecords):
    raise StageError("published: give --text=DIR (part-*-of-00500 + eval.txt) and/or --tfrecords=DIR")
  if args.text:
    accept_text(args.text, args.workers)
  if args.tfrecords:
    accept_tfrecords(args.tfrecords, args.workers, vocab_size(args.vocab) if args.vocab else published.VOCAB_ENTRIES)


def cmd_all(args):
  with output_lock.holding(args.work, "python -m data_prep.wikipedia all", error=StageError, flag="--work"):
    _all(args)


def _all(args):
  work = args.work
  if args.published_text:
    accept_text(args.published_text, args.workers)
    text = args.published_text
  elif args.dump:
    extracted = os.path.join(work, "extracted")
    run_extract(args.dump, extracted, args.workers, check_md5=not args.skip_md5)
    run_text_stage("clean", extracted, os.path.join(work, "cleaned"), args.workers)
    run_text_stage("segment", os.path.join(work, "cleaned"), os.path.join(work, "segmented"), args.workers,
                   args.nltk_data)
    rels = relative_files(os.path.join(work, "segmented"))
    text = os.path.join(work, "results")
    run_split([os.path.join(work, "segmented", r) for r in rels],
              [os.path.getsize(os.path.join(extracted, r)) for r in rels], text, args.workers)
  else:
    raise StageError("all: give --published_text=DIR (preferred) or --dump=enwiki-...xml.bz2")
  parts = expand_inputs(text)
  check_complete_parts(parts)
  settings = _settings(args)
  run_tfrecords(parts, args.vocab, os.path.join(work, "tfrecords"), settings, args.workers, split="train")
  run_eval(text, args.vocab, os.path.join(work, "eval_10k"), settings)
  print(f"[all] done: --data_dir={work}/tfrecords --eval_dir={work}/eval_10k (each with its manifest.json; "
        f"`verify --out=DIR` re-checks either later)")


def cmd_bench(args):
  run_bench(args)


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m data_prep.wikipedia", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="stage", required=True)

  p = sub.add_parser("tfrecords", help="text parts -> TFRecords (one worker per part)")
  p.add_argument("--input", required=True, help="FILE, GLOB, FOLDER or comma-separated list of text parts")
  p.add_argument("--allow_missing_parts", action="store_true",
                 help="process a subset of part-XXXXX-of-NNNNN files (default: all N must be present)")
  _add_generation_flags(p)
  p.set_defaults(func=cmd_tfrecords)

  p = sub.add_parser("eval", help="eval.txt -> eval_intermediate -> eval_10k")
  p.add_argument("--input", required=True, help="eval.txt, or the folder holding it")
  p.add_argument("--num_examples", type=int, default=published.NUM_EVAL_EXAMPLES)
  _add_generation_flags(p)
  p.set_defaults(func=cmd_eval)

  p = sub.add_parser("extract", help="dump -> WikiExtractor files")
  p.add_argument("--dump", required=True, help=published.DUMP_NAME)
  p.add_argument("--out", required=True)
  p.add_argument("--workers", type=int, default=None)
  p.add_argument("--skip_md5", action="store_true", help="trust the dump's size instead of its md5")
  p.set_defaults(func=cmd_extract)

  for stage, text in (("clean", "WikiExtractor files -> cleaned text"),
                      ("segment", "cleaned text -> one sentence per line")):
    p = sub.add_parser(stage, help=text)
    p.add_argument("--input", required=True, help="folder of files (XX/wiki_nn layout)")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=None)
    if stage == "segment":
      p.add_argument("--nltk_data", default=None, help="folder holding tokenizers/punkt_tab (see PUNKT_HELP)")
    p.set_defaults(func=cmd_text)

  p = sub.add_parser("split", help="segmented files -> 500 parts + eval.txt/eval.md5")
  p.add_argument("--input", required=True, help="segmented files (XX/wiki_nn layout)")
  p.add_argument("--raw", required=True, help="the WikiExtractor files they came from (their sizes set the parts)")
  p.add_argument("--out", required=True)
  p.add_argument("--num_test_articles", type=int, default=published.NUM_EVAL_ARTICLES)
  p.add_argument("--workers", type=int, default=None)
  p.set_defaults(func=cmd_split)

  p = sub.add_parser("published", help="check and accept the MLCommons text parts or TFRecords")
  p.add_argument("--text", default=None, help="folder with part-00xxx-of-00500, eval.txt (and eval.md5)")
  p.add_argument("--tfrecords", default=None, help="folder with the 500 TFRecord parts and eval_10k")
  p.add_argument("--vocab", default=None, help="vocab.txt the token ids are checked against (default: the "
                 f"published size, {published.VOCAB_ENTRIES:,})")
  p.add_argument("--workers", type=int, default=None)
  p.set_defaults(func=cmd_published)

  p = sub.add_parser("all", help="every stage in order")
  p.add_argument("--work", required=True, help="folder for all intermediate and final outputs")
  p.add_argument("--published_text", default=None, help="start from the MLCommons text parts (preferred)")
  p.add_argument("--dump", default=None, help="or from the Wikipedia dump")
  p.add_argument("--skip_md5", action="store_true")
  p.add_argument("--nltk_data", default=None)
  _add_generation_flags(p, out=False)
  p.set_defaults(func=cmd_all)

  p = sub.add_parser("verify", help="re-check the stage manifests of a folder, read its records again and write "
                     "manifest.json (the file the trainer reads)")
  p.add_argument("--out", required=True)
  p.add_argument("--vocab", default=None, help="vocab.txt the token ids are checked against (default: the size "
                 "manifest.json was checked against; required for records without one)")
  p.add_argument("--max_seq_length", type=int, default=None, help="for records without a manifest (default 512)")
  p.add_argument("--max_predictions_per_seq", type=int, default=None, help="idem (default 76)")
  p.add_argument("--workers", type=int, default=None)
  p.set_defaults(func=cmd_verify)

  p = sub.add_parser("bench", help="time tfrecords against the reference-style implementation")
  p.add_argument("--input", default=None, help="WikiExtractor files (default: the "
                 "repository's sample, tests/data/wikipedia_sample/*)")
  p.add_argument("--vocab", default=None, help="default: tests/data/bert_uncased_vocab.txt")
  p.add_argument("--dupe_factor", type=int, default=published.OFFICIAL_SETTINGS["dupe_factor"])
  p.add_argument("--workers", type=int, default=None)
  p.add_argument("--work_dir", default=None, help="scratch folder (default: a temporary one)")
  p.set_defaults(func=cmd_bench)

  add_pack_parser(sub)
  return parser


def vocab_size(vocab_file):
  if not os.path.isfile(vocab_file):
    raise StageError(f"--vocab={vocab_file}: no such file")
  return len(load_vocab(vocab_file))


def main(argv=None):
  args = build_parser().parse_args(argv)
  try:
    args.func(args)
  except (StageError, InputError) as e:
    print(f"[{args.stage}] error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT
  return 0
