"""Wikipedia -> MLPerf BERT pretraining data: `python -m data_prep.wikipedia STAGE ...`.

Stages (each resumable through per-output done markers, each writing <out>/manifest-<stage>.json):
  tfrecords  text parts (one sentence per line, blank line between articles) -> one TFRecord file per part
  eval       eval.txt -> eval_intermediate -> eval_10k (the reference's evenly spaced pick)
  verify     re-check every manifest in --out (bytes, sha256)
  bench      time `tfrecords` against the plain reference-style implementation on the same input
See docs in each module: wiki_tfrecords (generation), wiki_manifest (markers/manifests).
"""
import argparse
import os
import sys

from data_prep import wiki_published as published
from data_prep.wiki_manifest import StageError


def _settings(args):
  return {
      "max_seq_length": args.max_seq_length, "max_predictions_per_seq": args.max_predictions_per_seq,
      "masked_lm_prob": args.masked_lm_prob, "short_seq_prob": args.short_seq_prob,
      "dupe_factor": args.dupe_factor, "random_seed": args.random_seed, "do_lower_case": args.do_lower_case,
  }


def _add_generation_flags(p):
  defaults = published.OFFICIAL_SETTINGS
  p.add_argument("--vocab", required=True, help="vocab.txt (the official one has 30,522 entries)")
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
  from data_prep.wiki_tfrecords import expand_inputs, run_tfrecords
  manifest = run_tfrecords(expand_inputs(args.input), args.vocab, args.out, _settings(args), args.workers)
  print(f"[tfrecords] {manifest['total']['files']} files, {manifest['total']['count']:,} examples, "
        f"{manifest['total']['bytes']:,} bytes in {args.out}")


def cmd_eval(args):
  from data_prep.wiki_eval import run_eval
  run_eval(args.input, args.vocab, args.out, _settings(args), num_examples=args.num_examples)


def cmd_verify(args):
  from data_prep.wiki_manifest import verify
  problems = verify(args.out)
  for line in problems:
    print(f"[verify] {line}", file=sys.stderr)
  if problems:
    raise StageError(f"{len(problems)} file(s) in {args.out} do not match their manifest")
  print(f"[verify] {args.out}: every file matches its manifest")


def cmd_bench(args):
  from data_prep.wiki_bench import run_bench
  run_bench(args)


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m data_prep.wikipedia", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="stage", required=True)

  p = sub.add_parser("tfrecords", help="text parts -> TFRecords (one worker per part)")
  p.add_argument("--input", required=True, help="FILE, GLOB or comma-separated list of text parts")
  _add_generation_flags(p)
  p.set_defaults(func=cmd_tfrecords)

  p = sub.add_parser("eval", help="eval.txt -> eval_intermediate -> eval_10k")
  p.add_argument("--input", required=True, help="eval.txt, or the folder holding it")
  p.add_argument("--num_examples", type=int, default=published.NUM_EVAL_EXAMPLES)
  _add_generation_flags(p)
  p.set_defaults(func=cmd_eval)

  p = sub.add_parser("verify", help="re-check the manifests of an output folder")
  p.add_argument("--out", required=True)
  p.set_defaults(func=cmd_verify)

  p = sub.add_parser("bench", help="time tfrecords against the reference-style implementation")
  p.add_argument("--input", default=None, help="WikiExtractor files (default: ../shared/data/wiki_sample/*)")
  p.add_argument("--vocab", default=None, help="default: ../shared/data/bert_uncased_vocab.txt")
  p.add_argument("--dupe_factor", type=int, default=published.OFFICIAL_SETTINGS["dupe_factor"])
  p.add_argument("--workers", type=int, default=None)
  p.add_argument("--work_dir", default=None, help="scratch folder (default: a temporary one)")
  p.set_defaults(func=cmd_bench)
  return parser


def main(argv=None):
  args = build_parser().parse_args(argv)
  try:
    args.func(args)
  except StageError as e:
    print(f"[{args.stage}] error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
