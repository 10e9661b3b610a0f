"""The reference phase-1 BERT checkpoint, offline: `python -m data_prep.bert_checkpoint convert|verify`.

  convert  TF1 checkpoint -> a checkpoint of our model (slots dropped), read back and compared
  verify   TF1 checkpoint files + bert_config.json against their published sizes and md5 -> a manifest beside them

Bad input exits 2 with a message naming the file.
"""
import argparse
import sys

from tf_gp2bm.errors import EXIT_BAD_INPUT, InputError


def _convert(args):
  from data_prep.bert_checkpoint import convert  # TensorFlow: kept out of --help
  convert.convert(args.tf1_checkpoint, args.bert_config, args.out)


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m data_prep.bert_checkpoint", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("convert", help="TF1 checkpoint -> a checkpoint of our model")
  p.add_argument("--tf1_checkpoint", required=True, help="reference checkpoint prefix, e.g. model.ckpt-28252")
  p.add_argument("--bert_config", default="large", help="bert_config.json, or 'large' / 'tiny'")
  p.add_argument("--out", required=True)
  p.set_defaults(func=_convert)
  return parser


def main(argv=None):
  args = build_parser().parse_args(argv)
  try:
    args.func(args)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT
  return 0
