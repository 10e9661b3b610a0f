"""The `extract` stage: the enwiki-20200101 dump -> WikiExtractor `<doc id= url= title=>` text files (XX/wiki_nn).

Runs the pinned `wikiextractor` package from PyPI (requirements.txt) with one process per core and ~1 MB output
files, as the reference layout (text/AA/wiki_00 .. FE/wiki_17 for this dump). The dump is checked first: size
and md5 for the official file name (a truncated download fails the size check at once, before the 17 GB md5),
and the bz2 stream's end-of-stream marker for any dump. WikiExtractor fills in {{CURRENTDAY}}-style templates
from the clock, so its output differs from the published text: the published parts are the preferred input.
"""
import importlib.metadata
import os
import subprocess
import sys

from data_prep.wikipedia import published
from tf_gp2bm.files import md5_file, read_json, sha256_file, write_json_atomic
from data_prep.wikipedia.manifest import StageError, input_identity, is_done, mark_done, write_manifest
from data_prep.wikipedia.textstages import relative_files

_BZ2_EOS = 0x177245385090  # 48-bit end-of-stream magic, not byte aligned in the file


def bz2_ends_cleanly(path):
  """True if the file's last bytes hold a bz2 end-of-stream marker (a truncated file does not)."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    f.seek(max(0, size - 16))
    tail = int.from_bytes(f.read(), "big")
  # the marker is followed by a 32-bit CRC and 0-7 padding bits
  for pad in range(8):
    if (tail >> (32 + pad)) & 0xFFFFFFFFFFFF == _BZ2_EOS:
      return True
  return False


def check_dump(path, check_md5=True):
  if not os.path.isfile(path):
    raise StageError(f"dump {path} does not exist")
  size = os.path.getsize(path)
  official = os.path.basename(path) == published.DUMP_NAME
  if official and size != published.DUMP_BYTES:
    raise StageError(f"{path} is {size:,} bytes, the published dump has {published.DUMP_BYTES:,} "
                     f"({'truncated download?' if size < published.DUMP_BYTES else 'not the same file'})")
  if not bz2_ends_cleanly(path):
    raise StageError(f"{path} does not end with a bz2 end-of-stream marker: truncated or not a bz2 file")
  if official and check_md5:
    print(f"[extract] md5 of {path} ({size / 1e9:.1f} GB) ...", file=sys.stderr)
    digest = md5_file(path)
    if digest != published.DUMP_MD5:
      raise StageError(f"{path}: md5 {digest}, the published dump has {published.DUMP_MD5}")
  return official


def run_extract(dump, out_dir, workers=None, check_md5=True):
  official = check_dump(dump, check_md5)
  import wikiextractor
  settings = {"wikiextractor": getattr(wikiextractor, "__version__", None) or _version("wikiextractor"),
              "bytes_per_file": "1M", "official_dump": official}
  marker = os.path.join(out_dir, ".done", "extract.json")
  dump_identity = input_identity(dump)
  done = read_json(marker, "extract marker") if os.path.exists(marker) else {}
  if done.get("dump") == dump_identity and done.get("settings") == settings:
    print(f"[extract] {out_dir} already extracted from {dump}", file=sys.stderr)
  else:
    if os.path.exists(out_dir):
      raise StageError(f"{out_dir} exists but holds no finished extraction of {dump}; remove it first")
    tmp = out_dir.rstrip("/") + ".tmp-extract"
    command = [sys.executable, "-m", "wikiextractor.WikiExtractor", dump, "-o", tmp, "-b", "1M",
               "--processes", str(workers or os.cpu_count() or 1)]
    print(f"[extract] {' '.join(command)}", file=sys.stderr)
    result = subprocess.run(command)
    if result.returncode != 0:
      raise StageError(f"WikiExtractor failed on {dump} (exit {result.returncode}); partial output left in {tmp}")
    if not relative_files(tmp):
      raise StageError(f"WikiExtractor wrote no files from {dump}")
    os.replace(tmp, out_dir)  # the whole tree appears at once, never half-written
    os.makedirs(os.path.join(out_dir, ".done"), exist_ok=True)
    write_json_atomic(os.path.join(out_dir, ".done", "extract.json"),
                      {"dump": dump_identity, "settings": settings})
  rels = relative_files(out_dir)
  for rel in rels:  # per-file entries for the manifest (the dump itself is identified in extract.json)
    path = os.path.join(out_dir, rel)
    if not is_done(out_dir, rel, [], settings):
      mark_done(out_dir, rel, [], settings, {"bytes": os.path.getsize(path), "sha256": sha256_file(path)})
  return write_manifest(out_dir, "extract", settings, rels, extra={"dump": dump_identity})


def _version(package):
  return importlib.metadata.version(package)
