"""The fused train-image op (decode_crop_resize.cc): built against the installed TensorFlow, loaded, and checked
pixel for pixel against TensorFlow's own op chain before a run uses it.

    python -m tf_gp2bm.tasks.resnet.jpeg_op      # build (or find) the library and run the self-check

The library is cached under $GP2BM_OP_CACHE (default ~/.cache/tf_gp2bm/ops), keyed by the source, the TensorFlow
version and the compiler flags, so a TensorFlow upgrade or a source change builds a new one and ranks starting
together build it once (a file lock). It needs a C++ compiler and the libjpeg-turbo headers (Debian/Ubuntu:
libjpeg-dev); `scripts/setup.sh` builds it.
"""
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import tensorflow as tf

from tf_gp2bm import files

FOLDER = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(FOLDER, "decode_crop_resize.cc")
HEADERS = [os.path.join(FOLDER, "sub_image.h")]
LIBRARY = "decode_crop_resize.so"
INSTALL_HINT = "needs a C++ compiler and the libjpeg-turbo headers (Debian/Ubuntu: apt-get install g++ libjpeg-dev)"


class OpUnavailable(RuntimeError):
  """The fused op cannot be built, loaded or trusted here; the message says why."""


def compile_command(out_path):
  # -ffp-contract=off: no fused multiply-adds, so the float interpolation rounds as TensorFlow's does.
  # -Wno-*: TensorFlow's own headers trip these with current compilers.
  return (["c++", "-shared", "-fPIC", "-O3", "-ffp-contract=off", "-Wno-deprecated-declarations",
           "-Wno-interference-size", SOURCE, "-o", out_path]
          + tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags() + ["-ljpeg"])


def cache_root():
  return os.environ.get("GP2BM_OP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tf_gp2bm", "ops")


def library_path():
  key = hashlib.sha256()
  for path in [SOURCE] + HEADERS:
    with open(path, "rb") as f:
      key.update(f.read())
  key.update(" ".join([tf.__version__] + compile_command("")).encode())
  return os.path.join(cache_root(), key.hexdigest()[:16], LIBRARY)


def build():
  """Path of the library for this TensorFlow, compiling it if no cached copy exists."""
  path = library_path()
  if os.path.exists(path):
    return path
  if shutil.which("c++") is None:
    raise OpUnavailable(f"the fused image op {INSTALL_HINT}: no `c++` on PATH")
  folder = os.path.dirname(path)
  try:
    os.makedirs(folder, exist_ok=True)
    lock = open(os.path.join(folder, "build.lock"), "w")
  except OSError as e:
    raise OpUnavailable(f"cannot write the op cache {folder} ({e.strerror}); set GP2BM_OP_CACHE") from None
  with lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # another rank may be building the same library
    if os.path.exists(path):
      return path
    with files.atomic_output(path) as partial:  # a concurrent loader never sees a half-written library
      result = subprocess.run(compile_command(partial), capture_output=True, text=True)
      if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines()[-10:]
        raise OpUnavailable(f"building the fused image op failed; it {INSTALL_HINT}:\n  " + "\n  ".join(errors[:10]))
  return path


_loaded = {}
# The ops the library must register (decode_crop_resize.cc); a cached library of another source may lack one.
OPS = ("tf_gp2bm_decode_crop_flip_resize_jpeg", "tf_gp2bm_jpeg_restart_every_mcu", "tf_gp2bm_jpeg_cut_around")


def _load_checked(path):
  """The op module of the library at `path`, with every op present and the self-check passed."""
  try:
    module = tf.load_op_library(path)
  except (tf.errors.OpError, OSError) as e:
    raise OpUnavailable(f"{path} does not load into this TensorFlow ({str(e).strip()}); delete it to "
                        "rebuild") from None
  missing = [op for op in OPS if not hasattr(module, op)]
  if missing:
    raise OpUnavailable(f"{path} loads but lacks the op(s) {', '.join(missing)} (a library of another source); "
                        "delete it to rebuild")
  try:
    with tf.init_scope():  # eager, even when first called while tracing a tf.data function
      mismatch = self_check(module)
  except (tf.errors.OpError, TypeError, ValueError) as e:  # an op of another signature, or one that fails
    raise OpUnavailable(f"{path}: the self-check could not run the op ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0]}); delete it to rebuild") from None
  if mismatch:
    raise OpUnavailable(f"{path}: {mismatch}")
  return module


@tf.autograph.experimental.do_not_convert  # plain Python, even when first called while tracing
def load():
  """The op module (built if needed), self-checked once per process; raises OpUnavailable with the reason, however
  the build, the load or the check fails, so --image_op=auto can fall back and `fused` can refuse."""
  if "module" not in _loaded:
    try:
      path = build()
    except OSError as e:  # an unreadable or vanished cache entry, a compiler that cannot start
      raise OpUnavailable(f"the fused image op cannot be built or found ({e}); set GP2BM_OP_CACHE or delete "
                          f"{cache_root()}") from None
    _loaded["module"] = _load_checked(path)
  return _loaded["module"]


def decode_crop_flip_resize(encoded, window, flip, size):
  """The fused op: uint8 [size, size, 3]; window = (y, x, height, width) int32; flip a scalar bool."""
  return load().tf_gp2bm_decode_crop_flip_resize_jpeg(encoded, window, flip, size=size)


def restart_every_mcu(jpeg):
  """(jpeg bytes, rewritten): the JPEG rewritten losslessly with a restart marker after every MCU, which lets the
  fused op decode only the MCUs around a crop window; the input as it is when it cannot be (progressive, CMYK) or
  when the rewrite would decode to other pixels (compared on every image). Eager."""
  data, rewritten = load().tf_gp2bm_jpeg_restart_every_mcu(jpeg)
  return data.numpy(), bool(rewritten)


def cut_around(jpeg, window):
  """(cut jpeg, window in the cut, cut?) tensors: the smaller JPEG the fused op decodes for `window` of a JPEG with
  a restart marker per MCU; the input and window as they are when it has none. The bench's stage profile
  (`--pipeline_stages`) times it alone."""
  return load().tf_gp2bm_jpeg_cut_around(jpeg, window)


def to_uint8(image):
  """A float image rounded (half to even) to the uint8 the host hands the device."""
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def tf_decode_crop_flip_resize_float(encoded, window, flip, size):
  """The reference's train image from TensorFlow's ops: decode_and_crop_jpeg, flip, legacy bilinear resize; float."""
  image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
  image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
  return tf.compat.v1.image.resize(image, [size, size], method=tf.image.ResizeMethod.BILINEAR, align_corners=False)


def tf_decode_crop_flip_resize(encoded, window, flip, size):
  """The same image as the fused op, from TensorFlow's ops (the reference's chain, rounded to uint8)."""
  return to_uint8(tf_decode_crop_flip_resize_float(encoded, window, flip, size))


def self_check(module):
  """'' when the op gives TensorFlow's pixels on a generated image (4:2:0 and 4:4:4 chroma, windows off the block
  grid, both flips, up- and downscaling), as it is and rewritten with a restart marker per MCU (the cut path); else
  what differs. A different libjpeg build could decode differently: this catches it before a run, on an image that
  is not the dataset."""
  rng = np.random.default_rng(0)
  low = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
  pixels = tf.image.resize(low, [71, 93], method="bicubic") + rng.normal(0, 12, (71, 93, 3))
  pixels = tf.cast(tf.clip_by_value(pixels, 0, 255), tf.uint8)
  cases = [(chroma, window, flip, size) for chroma in (True, False)
           for window, flip, size in (((0, 0, 71, 93), False, 64), ((5, 3, 50, 61), True, 64),
                                      ((17, 29, 23, 19), False, 40), ((1, 7, 70, 86), True, 32))]
  for chroma, window, flip, size in cases:
    encoded = tf.io.encode_jpeg(pixels, quality=90, chroma_downsampling=chroma)
    restarted, rewritten = module.tf_gp2bm_jpeg_restart_every_mcu(encoded)
    if not rewritten:
      return "it could not rewrite a baseline JPEG with restart markers"
    want = tf_decode_crop_flip_resize(encoded, window, tf.constant(flip), size).numpy()
    for name, jpeg in (("as encoded", encoded), ("with restart markers", restarted)):
      got = module.tf_gp2bm_decode_crop_flip_resize_jpeg(jpeg, window, flip, size=size).numpy()
      if not np.array_equal(want, got):
        worst = int(np.abs(want.astype(int) - got).max())
        return (f"its pixels differ from TensorFlow's decode_and_crop_jpeg + resize on a JPEG {name} (window "
                f"{window}, flip {flip}, size {size}, chroma subsampled {chroma}: {int((want != got).sum())} "
                f"values, up to {worst} levels); the libjpeg it linked decodes differently from TensorFlow's")
  return ""


def resolve(mode):
  """('fused' or 'tf', why) for --image_op=mode (config.IMAGE_OPS); 'fused' raises OpUnavailable when the op
  cannot be used, 'auto' falls back to TensorFlow's ops and says why."""
  if mode == "tf":
    return "tf", "TensorFlow's ops (--image_op=tf)"
  try:
    load()
  except OpUnavailable as e:
    if mode == "fused":
      raise
    return "tf", f"TensorFlow's ops: the fused op is unavailable ({e})"
  return "fused", "the fused decode-crop-flip-resize op (self-checked: the same pixels as TensorFlow's ops)"


def main():
  try:
    path = build()
    load()
  except OpUnavailable as e:
    print(f"fused image op: {e}", file=sys.stderr)
    return 1
  print(f"fused image op: {path} (self-check passed: the same pixels as TensorFlow's ops)")
  return 0
