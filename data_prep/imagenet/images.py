"""Checks one ImageNet image and, only when needed, repairs it into an RGB JPEG.

Good RGB and grayscale JPEGs (nearly all of ImageNet) are passed through byte-for-byte after a cheap walk over
the JPEG markers, so the common case never decodes pixels; the trainer decodes every image to three channels.
Only CMYK JPEGs and PNG (or other) data inside a `.JPEG` file are re-encoded, with the reference imagenet_to_gcs's
own TensorFlow ops, so the pixels are the reference's: a CMYK JPEG through decode_jpeg(channels=0) (TensorFlow
turns CMYK into RGB) and a PNG through decode_png(channels=3), each then encode_jpeg(format="rgb", quality=100).
The reference re-encodes exactly those two kinds (it finds them by file name, this by content) and leaves grayscale
JPEGs as they are. PIL only checks that a JPEG with a cut-off end still decodes.
"""
import io

from PIL import Image, UnidentifiedImageError

REPAIR_QUALITY = 100
# Start-of-frame markers (baseline, progressive, lossless, ...); C4/C8/CC share the range but are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class BadImage(Exception):
  """The bytes cannot be turned into a usable RGB JPEG."""


def jpeg_frame(data):
  """(height, width, components) from the frame header, or None if the marker structure is malformed.

  Walks segment headers only up to the first scan, so it costs microseconds however large the image is.
  """
  if data[:2] != b"\xff\xd8":
    return None
  frame, i, n = None, 2, len(data)
  while i + 4 <= n:
    if data[i] != 0xFF:
      return None
    marker = data[i + 1]
    if marker == 0xFF:  # fill byte before a marker
      i += 1
      continue
    if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length field
      i += 2
      continue
    length = int.from_bytes(data[i + 2:i + 4], "big")
    if length < 2 or i + 2 + length > n:
      return None
    if marker in _SOF_MARKERS:
      if length < 8:
        return None
      height = int.from_bytes(data[i + 5:i + 7], "big")
      width = int.from_bytes(data[i + 7:i + 9], "big")
      frame = (height, width, data[i + 9])
    elif marker == 0xDA:  # start of scan: entropy-coded data follows
      return frame
    elif marker == 0xD9:
      return None
    i += 2 + length
  return None


def _ends_cleanly(data):
  # Some encoders pad after the end-of-image marker; anything else means the scan data was cut off.
  return data.rstrip(b"\x00").endswith(b"\xff\xd9")


def _decode(data):
  try:
    image = Image.open(io.BytesIO(data))
    image.load()  # raises on truncated or corrupt data (PIL's LOAD_TRUNCATED_IMAGES is off by default)
    return image
  except UnidentifiedImageError:
    raise BadImage("not an image format PIL recognises") from None  # its own message names only a BytesIO
  except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
    raise BadImage(f"cannot decode: {e}") from None


def _reencode(data, decode):
  """The reference's repair: `decode` (one of TensorFlow's decoders), then encode_jpeg(format="rgb", quality=100)
  with its other arguments at their defaults, as imagenet_to_gcs's ImageCoder does. Returns (jpeg, height, width)."""
  import tensorflow as tf  # only for the few images repaired; the shard-writing workers have it loaded already
  try:
    pixels = decode(tf, data)
    jpeg = tf.io.encode_jpeg(pixels, format="rgb", quality=REPAIR_QUALITY).numpy()
  except tf.errors.OpError as e:
    raise BadImage(f"cannot decode: {e.message.splitlines()[0]}") from None
  return jpeg, int(pixels.shape[0]), int(pixels.shape[1])


def _cmyk_to_rgb(data):
  return _reencode(data, lambda tf, d: tf.io.decode_jpeg(d, channels=0))


def _png_to_jpeg(data):
  return _reencode(data, lambda tf, d: tf.io.decode_png(d, channels=3))


def _other_to_jpeg(data):
  # Not a kind ImageNet holds (the reference knows only its one PNG): TensorFlow's decoders for GIF and BMP.
  return _reencode(data, lambda tf, d: tf.io.decode_image(d, channels=3, expand_animations=False))


def prepare(data):
  """Returns (jpeg_bytes, height, width, repair) where repair is None or a short label like "cmyk->rgb".

  Raises BadImage for data that no decoder can read (truncated, empty, not an image).
  """
  if not data:
    raise BadImage("empty file")
  frame = jpeg_frame(data)
  if frame is not None:
    height, width, components = frame
    if components in (1, 3) and height > 0 and width > 0:
      if not _ends_cleanly(data):
        _decode(data)  # trailing bytes after a complete image are harmless; a cut-off scan raises here
      return data, height, width, None
    image = _decode(data)  # a cut-off scan raises here, as TensorFlow's decoder would not for every cut
    if components == 4:
      return (*_cmyk_to_rgb(data), "cmyk->rgb")
    return (*_reencode(data, lambda tf, d: tf.io.decode_jpeg(d, channels=3)), f"{components}ch->rgb")
  if data[:2] == b"\xff\xd8":
    raise BadImage("malformed JPEG header")
  image = _decode(data)
  if data.startswith(_PNG_MAGIC):
    return (*_png_to_jpeg(data), "png->jpeg")
  return (*_other_to_jpeg(data), f"{(image.format or 'unknown').lower()}->jpeg")
