"""Compiles gelu_op.cc against the installed TensorFlow: `python examples/custom_op/build.py --out=DIR`.

Run as a script, so nothing but DIR is written (as `-m examples.custom_op.build` the package would load, and build
into its cache, first).

The compiler flags come from tf.sysconfig (include path, C++ ABI, standard), so the library matches the TensorFlow
that loads it. The result is rebuilt only when the source is newer.
"""
import argparse
import os
import subprocess
import sys

import tensorflow as tf

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gelu_op.cc")
LIBRARY = "gelu_op.so"


def command(out_path):
  # -Wno-deprecated-declarations: TensorFlow's own headers use APIs they deprecate.
  return (["c++", "-shared", "-fPIC", "-O2", "-Wno-deprecated-declarations", SOURCE, "-o", out_path]
          + tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags())


def build(out_dir):
  """Returns the path of the built library in `out_dir`."""
  os.makedirs(out_dir, exist_ok=True)
  out_path = os.path.join(out_dir, LIBRARY)
  if os.path.exists(out_path) and os.path.getmtime(out_path) >= os.path.getmtime(SOURCE):
    return out_path
  partial = f"{out_path}.{os.getpid()}.partial"
  result = subprocess.run(command(partial), capture_output=True, text=True)
  if result.returncode != 0:
    errors = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines()[-20:]
    raise RuntimeError(f"building {LIBRARY} failed ({' '.join(command(partial))}):\n" + "\n".join(errors[:20]))
  os.replace(partial, out_path)  # a concurrent loader never sees a half-written library
  return out_path


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python examples/custom_op/build.py", description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="directory for the built library")
  print(build(parser.parse_args(argv).out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
