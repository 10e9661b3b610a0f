"""ImageNet (ILSVRC-2012) to the TFRecords `--task=resnet` reads, with a manifest that proves them complete.

  python -m data_prep.imagenet convert --train=ILSVRC2012_img_train.tar --val=ILSVRC2012_img_val.tar \\
      --val_labels=LOC_val_solution.csv --out=/data/imagenet
  python -m data_prep.imagenet verify /data/imagenet [--quick]
  python -m data_prep.imagenet index /data/imagenet --label_offset=1 --num_classes=1000
  python -m data_prep.imagenet restart --input=/data/imagenet_ref --out=/data/imagenet
  python -m data_prep.imagenet bench

Bad input (a missing, cut or unreadable file, a wrong flag, an --out that cannot be written, records that do not
match their manifest) exits 2 with a message naming the file or flag at fault.
"""
import argparse
import os
import signal
import sys

from data_prep.imagenet import bench, convert, labels, plan, restart, sources, verify
from tf_gp2bm.errors import EXIT_BAD_INPUT, Terminated
from tf_gp2bm.formats import imagenet as imagenet_records


def _add_convert(sub):
  p = sub.add_parser("convert", help="tars or folders -> TFRecord shards + manifest.json")
  p.add_argument("--train", required=True, help="ILSVRC2012_img_train.tar, or a folder of <synset>/ or <synset>.tar")
  p.add_argument("--val", required=True, help="ILSVRC2012_img_val.tar, or a folder of images (flat or per class)")
  p.add_argument("--val_labels", help="LOC_val_solution.csv, the devkit ground truth txt (needs --synset_map), "
                 "one synset per line, or '<file> <synset>' lines; optional if --val has class folders")
  p.add_argument("--synset_map", help="synsets in devkit ID order (text, first word per line) or meta.mat")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--train_shards", type=int, default=imagenet_records.TRAIN_SHARDS)
  p.add_argument("--val_shards", type=int, default=imagenet_records.VAL_SHARDS)
  p.add_argument("--seed", type=int, default=None, help="train shuffle seed (default: a fixed value)")
  p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
  p.add_argument("--allow_partial", action="store_true", help="accept a subset of ILSVRC-2012")
  p.add_argument("--skip_bad", action="store_true", help="skip unreadable images (listed in the manifest)")
  p.add_argument("--no_restart_markers", dest="restart_markers", action="store_false",
                 help="store train JPEGs as they came; by default each is rewritten losslessly with a restart "
                 "marker per MCU (the same pixels, checked per image), so the trainer's fused image op decodes only "
                 "the crop window")


def _add_verify(sub):
  p = sub.add_parser("verify", help="re-check a converted folder against its manifest")
  p.add_argument("dir")
  p.add_argument("--quick", action="store_true", help="decode a sample of the images instead of all")
  p.add_argument("--workers", type=int, default=os.cpu_count() or 1)


def _add_index(sub):
  p = sub.add_parser("index", help="write manifest.json for records made elsewhere (e.g. imagenet_to_gcs)")
  p.add_argument("dir")
  p.add_argument("--label_offset", type=int, default=imagenet_records.REFERENCE_LABEL_OFFSET)
  p.add_argument("--num_classes", type=int, default=1000)
  p.add_argument("--allow_partial", action="store_true", help="accept a subset of ILSVRC-2012")
  p.add_argument("--workers", type=int, default=os.cpu_count() or 1)


def _add_restart(sub):
  p = sub.add_parser("restart", help="copy a record set, rewriting its train JPEGs with restart markers (what "
                     "convert does by default), for records made without them")
  p.add_argument("--input", required=True, help="a folder of records with manifest.json (convert or index)")
  p.add_argument("--out", required=True, help="a new folder for the rewritten records")
  p.add_argument("--skip_bad", action="store_true", help="leave out records whose JPEG does not decode (counted, "
                 "and listed in the manifest); by default such a record is refused, named")
  p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")


def _add_bench(sub):
  p = sub.add_parser("bench", help="images/s of this converter vs a decode/re-encode converter")
  p.add_argument("--images", type=int, default=400, help="generated JPEGs per run")
  p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  p.add_argument("--dir", help="scratch folder (default: a temporary one, removed afterwards)")


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m data_prep.imagenet", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  for add in (_add_convert, _add_verify, _add_index, _add_restart, _add_bench):
    add(sub)
  return parser.parse_args(argv)


def _convert(args):
  if args.seed is None:
    args.seed = plan.DEFAULT_SEED
  manifest = convert.convert(args)
  for split, info in manifest["splits"].items():
    print(f"{split}: {info['num_examples']:,} images in {info['num_shards']} shards")
  print(f"repaired {len(manifest['repairs'])}, skipped {len(manifest['skipped'])}; "
        f"wrote {os.path.join(args.out, imagenet_records.MANIFEST)}")
  return 0


def _verify(args):
  problems = verify.verify(args.dir, quick=args.quick, workers=args.workers)
  for problem in problems:
    print(f"FAIL {problem}")
  print(f"verify {args.dir}: " + (f"{len(problems)} problem(s)" if problems else "OK"))
  return EXIT_BAD_INPUT if problems else 0


def _index(args):
  manifest = verify.index(args.dir, args.label_offset, args.num_classes, args.allow_partial, args.workers)
  for split, info in manifest["splits"].items():
    print(f"{split}: {info['num_examples']:,} records in {info['num_shards']} shards")
  print(f"wrote {os.path.join(args.dir, imagenet_records.MANIFEST)}")
  return 0


def _restart(args):
  manifest = restart.restart(args.input, args.out, args.workers, skip_bad=args.skip_bad)
  counts = manifest["restart_markers"]
  left_out = manifest["restart_skipped"]
  skipped = f"; {left_out:,} records left out, their JPEG does not decode (--skip_bad)" if left_out else ""
  print(f"train: {counts['rewritten']:,} JPEGs rewritten with restart markers, {counts['kept']:,} kept as they were "
        f"(progressive or CMYK){skipped}; wrote {os.path.join(args.out, imagenet_records.MANIFEST)}")
  return 0


def _bench(args):
  bench.run(args.images, args.workers, args.dir)
  return 0


def _raise_terminated(signum, frame):
  raise Terminated(signum)


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  user_errors = (convert.ConvertError, plan.PlanError, sources.SourceError,
                 labels.LabelError, verify.VerifyError, restart.RestartError, FileNotFoundError, ValueError)
  # SIGTERM unwinds like Ctrl-C, so the writers' cleanup runs and no temporary shard is left behind.
  previous = signal.signal(signal.SIGTERM, _raise_terminated)
  try:
    return {"convert": _convert, "verify": _verify, "index": _index, "restart": _restart,
            "bench": _bench}[args.command](args)
  except user_errors as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT
  except KeyboardInterrupt:
    print("interrupted; rerun the same command to resume", file=sys.stderr)
    return 130
  except Terminated as e:
    print(f"{e}; rerun the same command to resume", file=sys.stderr)
    return e.exit_code
  finally:
    signal.signal(signal.SIGTERM, previous)
