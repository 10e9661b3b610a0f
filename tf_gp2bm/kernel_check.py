r"""Parity check of a vendor kernel module against the defaults: `python -m tf_gp2bm.kernel_check --kernels=MODULE`.

For every hot spot the module replaces: forward outputs and gradients (with respect to every float input) on
contract-shaped inputs at each call site's dtypes, and the replacement compiled with jit_compile; for the optimizer
hot spots, several update steps on a model-like variable list. Errors are relative to the norm of the default's
result (for a gradient: to the larger of its own norm and 1e-3 of the whole gradient's, so an exactly-zero default
gradient does not read as 100 % wrong). Prints a table; exit 0 when everything is within tolerance, 1 when
something differs, 2 for a --kernels module that cannot be loaded or bad flags.
"""
import argparse
import sys

import tf_gp2bm  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tf_gp2bm import errors, files, kernels
from tf_gp2bm.errors import InputError

# Relative error allowed between a replacement and the default, by the least precise float dtype of a case
# (forward outputs; gradients get twice as much).
TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-2, "float16": 2e-3}
PRECISIONS = ("fp32", "bf16", "fp16")


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m tf_gp2bm.kernel_check", description=__doc__.splitlines()[0])
  parser.add_argument("--kernels", required=True, help="the vendor kernel module, as given to tf_gp2bm.train")
  parser.add_argument("--precision", default="all", choices=PRECISIONS + ("all",),
                      help="compute precision whose call-site dtypes to check (default: all three)")
  parser.add_argument("--steps", type=int, default=5, help="update steps for the optimizer hot spots")
  parser.add_argument("--xla", default=True, action=argparse.BooleanOptionalAction,
                      help="also compile each replacement with jit_compile (what a --xla run needs)")
  parser.add_argument("--report", default=None,
                      help="also write the printed report to this file (keep it with the run and the submission)")
  return parser.parse_args(argv)


def _write_report(path, text):
  with files.atomic_output(path) as tmp:
    with open(tmp, "w") as f:
      f.write(text)


def main(argv=None):
  args = parse_args(argv)
  if args.steps < 1:
    print("error: --steps must be at least 1", file=sys.stderr)
    return errors.EXIT_BAD_INPUT
  from tf_gp2bm.kernels import parity  # TensorFlow loads here, after the flags are checked
  try:
    replaced = kernels.load_plugin(args.kernels)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_BAD_INPUT
  precisions = PRECISIONS if args.precision == "all" else (args.precision,)
  print(f"kernel_check: {args.kernels} replaces {', '.join(replaced)}; precisions {', '.join(precisions)}; "
        f"relative tolerance {', '.join(f'{d} {t:.0e}' for d, t in TOLERANCE.items())}", flush=True)
  rows = []
  for name in replaced:
    if kernels.registry.hot_spot(name).optimizer:
      rows += parity.check_optimizer(name, args.steps, TOLERANCE["float32"], args.xla)
    else:
      for precision in precisions:
        rows += parity.check_forward(name, precision, TOLERANCE, args.xla)
  failed = [r for r in rows if not r.ok]
  summary = (f"{len(rows) - len(failed)}/{len(rows)} checks within tolerance" +
             (f"; {len(failed)} differ from the defaults" if failed else ""))
  print(parity.table(rows))
  print(summary)
  if args.report:
    _write_report(args.report, f"kernel_check --kernels={args.kernels} --precision={args.precision} "
                                  f"--steps={args.steps} --{'' if args.xla else 'no-'}xla\n"
                                  f"{parity.table(rows)}\n{summary}\n")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
