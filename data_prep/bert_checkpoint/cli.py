"""The reference phase-1 BERT checkpoint, offline: `python -m data_prep.bert_checkpoint convert|verify`.

  convert  TF1 checkpoint -> a checkpoint of our model (slots dropped), read back and compared
  verify   TF1 checkpoint files + bert_config.json against their published sizes and md5 -> a manifest beside them

Bad input exits 2 with a message naming the file.
"""
import argparse
import sys

from data_prep.bert_checkpoint import verify
from tf_gp2bm.errors import EXIT_BAD_INPUT, InputError


def _convert(args):
  from data_prep.bert_checkpoint import convert  # loads TensorFlow: kept out of --help and verify
  convert.convert(args.tf1_checkpoint, args.bert_config, args.out)


def _verify(args):
  if args.expected:
    verify.verify(args.checkpoint_dir, verify.load_table(args.expected), table_source=args.expected)
  else:
    verify.verify(args.checkpoint_dir)


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m data_prep.bert_checkpoint", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("convert", help="TF1 checkpoint -> a checkpoint of our model")
  p.add_argument("--tf1_checkpoint", required=True, help="reference checkpoint prefix, e.g. model.ckpt-28252")
  p.add_argument("--bert_config", default="large", help="bert_config.json, or 'large' / 'tiny'")
  p.add_argument("--out", required=True)
  p.set_defaults(func=_convert)
  p = sub.add_parser("verify", help="checkpoint files + bert_config.json vs the published sizes and md5 -> "
                     "checkpoint_manifest.json (what closed runs require)")
  p.add_argument("--checkpoint_dir", required=True, help="folder with model.ckpt-28252.* and bert_config.json")
  p.add_argument("--expected", default=None, help="JSON {file: {bytes, md5}} to check against instead of the "
                 "published table (for other checkpoints; closed runs accept only the published one)")
  p.set_defaults(func=_verify)
  return parser


def main(argv=None):
  args = build_parser().parse_args(argv)
  try:
    args.func(args)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT
  return 0
