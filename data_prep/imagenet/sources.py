"""Lists ILSVRC-2012 images from the vendor tars or from extracted folders without unpacking anything.

Each image becomes a `SourceImage` that says where its bytes live: a (file, offset, size) span. For the train tar
the span points inside a per-class tar inside the outer tar (both are plain tars, so member data is stored
contiguously), which lets workers read any image with one pread and no extraction. Listing reads only the
512-byte member headers.
"""
import collections
import io
import os
import tarfile

from tf_gp2bm import files
from tf_gp2bm.errors import InputError


class SourceImage(collections.namedtuple("SourceImage", "name synset path offset size container")):
  """One image. synset: its class (None in a flat validation set). path/offset/size: where its bytes are
  (offset None: the plain file path/name). container: the tar or folder holding it, shared by many images so
  1.3M of these stay small."""
  __slots__ = ()

  @property
  def source(self):
    """Names the image in messages, e.g. ILSVRC2012_img_train.tar:n01440764.tar/n01440764_10026.JPEG."""
    return f"{self.container}/{self.name}"


class SourceError(Exception):
  """The input is missing or not laid out as ILSVRC-2012 train/val data."""


class _Window(io.RawIOBase):
  """Bytes [start, start + size) of an open file, read with pread and no buffer: tarfile then reads each 512-byte
  member header of a nested tar directly (through extractfile it would pull 8 KiB per header: ~10 GB for the
  train tar instead of ~0.7 GB)."""

  def __init__(self, fd, start, size):
    super().__init__()
    self.fd, self.start, self.size, self.pos = fd, start, size, 0

  def readable(self):
    return True

  def seekable(self):
    return True

  def tell(self):
    return self.pos

  def seek(self, pos, whence=io.SEEK_SET):
    self.pos = {io.SEEK_SET: pos, io.SEEK_CUR: self.pos + pos, io.SEEK_END: self.size + pos}[whence]
    return self.pos

  def readinto(self, buffer):
    data = os.pread(self.fd, max(0, min(len(buffer), self.size - self.pos)), self.start + self.pos)
    buffer[:len(data)] = data
    self.pos += len(data)
    return len(data)


def _open_tar(path, flag, fileobj=None):
  try:
    # "r:" refuses compressed tars: offsets into compressed data are meaningless, and ImageNet's are plain.
    return tarfile.open(name=None if fileobj else path, fileobj=fileobj, mode="r:")
  except (tarfile.TarError, OSError) as e:
    raise SourceError(f"{flag}: {path} is not a readable uncompressed tar archive ({e})") from None


def _members(tar, source, flag, read_at):
  """The members of an open tar, then a check that it ends with its end-of-archive block: a cut archive (an
  interrupted download) is a SourceError naming the archive and the member it ends in or after, not a tarfile
  traceback or, when the cut falls in a header, a silently shorter listing. read_at(offset, n) reads the tar."""
  last = None
  try:
    for member in tar:
      last = member
      yield member
  except tarfile.TarError as e:
    where = f"inside member {last.name}" if last else "in its first header"
    raise SourceError(f"{flag}: {source} ends {where} ({e}): a cut or damaged archive; download it again") from None
  end_block = read_at(tar.offset, tarfile.BLOCKSIZE)
  if end_block != tarfile.NUL * tarfile.BLOCKSIZE:
    where = f"after member {last.name}" if last else "before its first member"
    raise SourceError(f"{flag}: {source} is cut {where} (no end-of-archive block at byte {tar.offset:,}); "
                      "download it again")


def _tar_images(tar_path, flag, synset, fileobj=None, base=0, source=None):
  """Images inside one tar; `base` is where that tar starts inside `tar_path` (for a nested tar)."""
  source = source or tar_path
  images = []
  with _open_tar(source, flag, fileobj) as tar, open(tar_path, "rb") as raw:
    limit = fileobj.size if fileobj is not None else None
    read_at = lambda offset, n: os.pread(raw.fileno(), max(0, min(n, (limit or offset + n) - offset)),  # noqa: E731
                                         base + offset)
    for member in _members(tar, source, flag, read_at):
      if member.isfile() and not os.path.basename(member.name).startswith("."):
        name = os.path.basename(member.name)
        images.append(SourceImage(name, synset, tar_path, base + member.offset_data, member.size, source))
  return images


def _readable(path, flag):
  """A SourceError naming `path` unless it can be read: a symlink loop or an unreadable file is never skipped."""
  try:
    files.check_readable(path, flag)
  except InputError as e:
    raise SourceError(str(e)) from None


def _dir_images(directory, synset, flag):
  images = []
  for entry in sorted(os.scandir(directory), key=lambda e: e.name):
    if entry.name.startswith("."):
      continue
    _readable(entry.path, flag)  # first: is_dir() itself raises on a symlink loop
    if entry.is_dir():
      continue
    images.append(SourceImage(entry.name, synset, directory, None, entry.stat().st_size, directory))
  return images


def _check_exists(path, flag):
  if not path:
    raise SourceError(f"{flag} is required")
  if not os.path.exists(path):
    raise SourceError(f"{flag}={path}: no such file or directory")


def _input_info(path):
  if os.path.isdir(path):
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return {"path": os.path.abspath(path), "kind": "dir", "bytes": total}
  return {"path": os.path.abspath(path), "kind": "tar", "bytes": os.path.getsize(path)}


def _synset_of(name, flag, container):
  synset = name[:-len(".tar")] if name.endswith(".tar") else name
  if not synset or any(c.isspace() for c in synset):
    raise SourceError(f"{flag}: {container} holds {name!r}, expected a per-class folder or tar named by synset")
  return synset


def list_train(path, flag="--train", on_class=None):
  """Returns ({synset: [SourceImage, ...] sorted by name}, input info). Accepts the vendor tar of per-class tars,
  or a folder of per-class folders and/or per-class tars. on_class(num_images) is called after each class."""
  _check_exists(path, flag)
  by_synset = {}

  def add(synset, images, where):
    if synset in by_synset:
      raise SourceError(f"{flag}: class {synset} appears twice in {path} (second at {where})")
    if not images:
      raise SourceError(f"{flag}: class {synset} has no images ({where})")
    by_synset[synset] = sorted(images, key=lambda im: im.name)
    if on_class:
      on_class(len(images))

  if os.path.isdir(path):
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
      if entry.name.startswith("."):
        continue
      synset = _synset_of(entry.name, flag, path)
      _readable(entry.path, flag)
      if entry.is_dir():
        add(synset, _dir_images(entry.path, synset, flag), entry.path)
      elif entry.name.endswith(".tar"):
        add(synset, _tar_images(entry.path, flag, synset), entry.path)
      else:
        raise SourceError(f"{flag}: unexpected file {entry.path}; expected <synset>/ folders or <synset>.tar")
  else:
    with _open_tar(path, flag) as outer, open(path, "rb") as raw:
      for member in _members(outer, path, flag, lambda offset, n: os.pread(raw.fileno(), n, offset)):
        if not member.isfile() or os.path.basename(member.name).startswith("."):
          continue
        where = f"{path}:{member.name}"
        if not member.name.endswith(".tar"):
          raise SourceError(f"{flag}: unexpected member {where}; expected per-class <synset>.tar files")
        synset = _synset_of(os.path.basename(member.name), flag, path)
        inner = _Window(raw.fileno(), member.offset_data, member.size)
        add(synset, _tar_images(path, flag, synset, inner, member.offset_data, where), where)
  if not by_synset:
    raise SourceError(f"{flag}={path}: no classes found")
  return by_synset, _input_info(path)


def list_val(path, flag="--val"):
  """Returns ([SourceImage, ...] sorted by name, input info). Accepts the vendor tar of flat JPEGs, a flat folder,
  or a folder of per-class folders (then each SourceImage carries its folder's synset)."""
  _check_exists(path, flag)
  if os.path.isdir(path):
    images = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
      if entry.name.startswith("."):
        continue
      _readable(entry.path, flag)
      if entry.is_dir():
        images += _dir_images(entry.path, entry.name, flag)
      else:
        images.append(SourceImage(entry.name, None, path, None, entry.stat().st_size, path))
  else:
    images = _tar_images(path, flag, None)
  if not images:
    raise SourceError(f"{flag}={path}: no images found")
  names = collections.Counter(im.name for im in images)
  duplicate = next((n for n, c in names.items() if c > 1), None)
  if duplicate:
    raise SourceError(f"{flag}: {duplicate} appears more than once in {path}")
  return sorted(images, key=lambda im: im.name), _input_info(path)


def read_span(image, open_files):
  """The bytes of one image; `open_files` caches file descriptors of tars across calls."""
  try:
    if image.offset is None:  # a plain file in a folder
      with open(os.path.join(image.path, image.name), "rb") as f:
        return f.read()
    fd = open_files.get(image.path)
    if fd is None:
      fd = open_files[image.path] = os.open(image.path, os.O_RDONLY)
    data = os.pread(fd, image.size, image.offset)
  except OSError as e:  # listed readable, then changed under the run
    raise SourceError(f"{image.source}: cannot be read ({e.strerror})") from None
  if len(data) != image.size:
    raise SourceError(f"{image.source}: archive ended early ({len(data)} of {image.size} bytes)")
  return data
