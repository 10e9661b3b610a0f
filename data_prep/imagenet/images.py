"""Checks one ImageNet image and, only when needed, repairs it into an RGB JPEG.

Good RGB and grayscale JPEGs (nearly all of ImageNet) are passed through byte-for-byte after a cheap walk over
the JPEG markers, so the common case never decodes pixels; the trainer decodes every image to three channels.
Only CMYK JPEGs and PNG (or other) data inside a `.JPEG` file are decoded with PIL and re-encoded at quality 100:
the reference imagenet_to_gcs re-encodes exactly those two kinds and leaves grayscale JPEGs as they are.
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


def _to_rgb_jpeg(image):
  out = io.BytesIO()
  image.convert("RGB").save(out, format="JPEG", quality=REPAIR_QUALITY)
  return out.getvalue()


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
    image = _decode(data)
    repair = {4: "cmyk->rgb"}.get(components, f"{components}ch->rgb")
    return _to_rgb_jpeg(image), image.height, image.width, repair
  if data[:2] == b"\xff\xd8":
    raise BadImage("malformed JPEG header")
  image = _decode(data)
  repair = "png->jpeg" if data.startswith(_PNG_MAGIC) else f"{(image.format or 'unknown').lower()}->jpeg"
  return _to_rgb_jpeg(image), image.height, image.width, repair
