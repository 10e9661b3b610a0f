"""The BERT pretraining TFRecord format (reference create_pretraining_data.py) that `--task=bert` reads.

Shared by the Wikipedia pipeline (data_prep.wikipedia) and the BERT smoke demo. Padding as the reference: ids,
mask and segment ids padded with 0 to max_seq_length; masked LM positions/ids padded with 0 and weights 1.0 for
real predictions, 0.0 for padding, to max_predictions_per_seq.

Examples are encoded by hand (in data_prep/_native.c, or in Python without a compiler) rather than through
tf.train.Example: the bytes equal `tf.train.Example(...).SerializeToString(deterministic=True)` (map keys
sorted), which a test checks, and it is many times faster than building protobuf objects.
"""
import ctypes
import hashlib
import os
import struct

import numpy as np

from data_prep import native
from tf_gp2bm.files import atomic_output, sha256_file
from tf_gp2bm.formats.bert_pretraining import FEATURES, FORMAT, feature_spec  # noqa: F401  (the format this writes)


def _varint(value):
  if value < 0:
    value += 1 << 64  # protobuf encodes negative int64 as 10-byte two's complement
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


_VARINTS = [_varint(v) for v in range(1 << 16)]  # ids and positions: one list lookup per value


def _varints(values):
  values = list(values)
  if values and 0 <= min(values) and max(values) < len(_VARINTS):
    table = _VARINTS
    return b"".join([table[v] for v in values])
  return b"".join([_varint(v) for v in values])


def _field(tag, payload):
  return tag + _varint(len(payload)) + payload


def _int64_feature(packed):
  # Feature.int64_list (field 3) holding Int64List.value (field 1, packed)
  return _field(b"\x1a", _field(b"\x0a", packed))


def _float_feature(packed):
  # Feature.float_list (field 2) holding FloatList.value (field 1, packed little-endian float32)
  return _field(b"\x12", _field(b"\x0a", packed))


_KEYS = {name: _field(b"\x0a", name.encode()) for name in FEATURES}
_ONE_F32, _ZERO_F32 = struct.pack("<f", 1.0), struct.pack("<f", 0.0)


class _NativeEncoder:
  """encode_example of data_prep/_native.c with reusable buffers for one (max_seq_length, max_predictions)."""

  def __init__(self, lib, max_seq_length, max_predictions_per_seq):
    self._lib, self._string_at = lib, ctypes.string_at
    self.max_seq_length, self.max_predictions_per_seq = max_seq_length, max_predictions_per_seq
    self._ids = np.zeros(max_seq_length, np.int32)
    self._pos = np.zeros(max_predictions_per_seq, np.int32)
    self._lab = np.zeros(max_predictions_per_seq, np.int32)
    self._cap = 16 * (max_seq_length + max_predictions_per_seq) + 512
    self._out = np.zeros(self._cap, np.uint8)
    self._addr = [a.ctypes.data for a in (self._ids, self._pos, self._lab, self._out)]

  def encode(self, ids, len_a, positions, labels, next_label):
    n, m = len(ids), len(positions)
    self._ids[:n] = ids
    self._pos[:m] = positions
    self._lab[:m] = labels
    ids_addr, pos_addr, lab_addr, out_addr = self._addr
    size = self._lib.encode_example(ids_addr, n, len_a, pos_addr, lab_addr, m, next_label, self.max_seq_length,
                                    self.max_predictions_per_seq, out_addr, self._cap)
    assert size > 0, "encode_example: output buffer too small"
    return self._string_at(out_addr, size)


_ENCODERS = {}


def _native_encoder(max_seq_length, max_predictions_per_seq):
  key = (max_seq_length, max_predictions_per_seq)
  if key not in _ENCODERS:
    lib = native.load()
    _ENCODERS[key] = _NativeEncoder(lib, *key) if lib is not None else None
  return _ENCODERS[key]


def serialize_instance(example, max_seq_length, max_predictions_per_seq):
  """One serialized tf.train.Example, padded like the reference. `example` is an Instance (from
  create_pretraining_examples) or a dict of unpadded input_ids, segment_ids, masked_lm_positions, masked_lm_ids
  and next_sentence_labels (an int)."""
  if isinstance(example, dict):
    ids = list(example["input_ids"])
    segment_ids = list(example["segment_ids"])
    positions, label_ids = list(example["masked_lm_positions"]), list(example["masked_lm_ids"])
    label = int(example["next_sentence_labels"])
    segments = _varints(segment_ids)
  else:
    n, m = len(example.ids), len(example.positions)
    if n > max_seq_length or m > max_predictions_per_seq or len(example.labels) != m:
      raise ValueError(f"instance of {n} tokens / {m} predictions does not fit "
                       f"max_seq_length={max_seq_length}, max_predictions_per_seq={max_predictions_per_seq}")
    encoder = _native_encoder(max_seq_length, max_predictions_per_seq)
    if encoder is not None:
      return encoder.encode(example.ids, example.len_a, example.positions, example.labels,
                            example.next_sentence_label)
    ids, positions, label_ids = example.input_ids, example.masked_lm_positions, example.masked_lm_ids
    label = example.next_sentence_label
    len_a = example.len_a
    segments = b"\x00" * (len_a + 2) + b"\x01" * (len(ids) - len_a - 2)
  n, m = len(ids), len(positions)
  if n > max_seq_length or m > max_predictions_per_seq or len(label_ids) != m:
    raise ValueError(f"instance of {n} tokens / {m} predictions does not fit "
                     f"max_seq_length={max_seq_length}, max_predictions_per_seq={max_predictions_per_seq}")
  pad, pad_m = b"\x00" * (max_seq_length - n), b"\x00" * (max_predictions_per_seq - m)
  values = {
      "input_ids": _int64_feature(_varints(ids) + pad),
      "input_mask": _int64_feature(b"\x01" * n + pad),
      "segment_ids": _int64_feature(segments + pad),
      "masked_lm_positions": _int64_feature(_varints(positions) + pad_m),
      "masked_lm_ids": _int64_feature(_varints(label_ids) + pad_m),
      "masked_lm_weights": _float_feature(_ONE_F32 * m + _ZERO_F32 * (max_predictions_per_seq - m)),
      "next_sentence_labels": _int64_feature(_varints([label])),
  }
  # Features.feature map entries (field 1), keys sorted as deterministic protobuf serialization does.
  entries = b"".join(_field(b"\x0a", _KEYS[k] + _field(b"\x12", values[k])) for k in sorted(values))
  return _field(b"\x0a", entries)  # Example.features (field 1)


def _masked_crc(data, crc32c):
  crc = crc32c(data, len(data))
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TFRecordFile:
  """Appends TFRecord frames (length, masked CRC-32C of length, data, masked CRC-32C of data).

  Written directly, with the CRC in data_prep/_native.c, so the data workers need not import TensorFlow
  (10 s and ~1 GB per process); without the native library it falls back to tf.io.TFRecordWriter.
  """

  def __init__(self, path):
    self.path = path
    self.count, self.bytes = 0, 0
    self._sha = hashlib.sha256()  # hashed as written, so the manifest costs no second read
    self._lib = native.load()
    if self._lib is None:
      import tensorflow as tf  # only without a C compiler: the workers normally never load TensorFlow
      self._tf_writer = tf.io.TFRecordWriter(path)
    else:
      self._file = open(path, "wb")

  def write(self, record):
    self.count += 1
    if self._lib is None:
      self._tf_writer.write(record)
      return
    header = struct.pack("<Q", len(record))
    crc = self._lib.crc32c
    frame = (header + struct.pack("<I", _masked_crc(header, crc)) + record
             + struct.pack("<I", _masked_crc(record, crc)))
    self._sha.update(frame)
    self.bytes += len(frame)
    self._file.write(frame)

  def stats(self):
    """count, bytes and sha256 of what was written (after close())."""
    if self._lib is None:  # TensorFlow wrote the file: hash it back
      return {"count": self.count, "bytes": os.path.getsize(self.path), "sha256": sha256_file(self.path)}
    return {"count": self.count, "bytes": self.bytes, "sha256": self._sha.hexdigest()}

  def close(self):
    if self._lib is None:
      self._tf_writer.close()
    else:
      self._file.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def write_records(path, records, progress=None):
  """Writes serialized records to one TFRecord file, atomically (temp name, then rename).

  Returns {"count", "bytes", "sha256"} of the file."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with atomic_output(path) as tmp:
    with TFRecordFile(tmp) as writer:
      for record in records:
        writer.write(record)
        if progress is not None:
          progress.update()
    stats = writer.stats()  # before the rename: the TensorFlow fallback hashes the temp file
  return stats


def write_examples(path, examples, max_seq_length, max_predictions_per_seq, progress=None):
  """Writes instances (or dicts, see serialize_instance) to one TFRecord file, atomically. Returns the count."""
  records = (serialize_instance(x, max_seq_length, max_predictions_per_seq) for x in examples)
  return write_records(path, records, progress)["count"]


def read_records(path, check_crc=True):
  """Yields the records of a TFRecord file without TensorFlow; a truncated or corrupt file raises ValueError
  naming the file and byte offset."""
  lib = native.load() if check_crc else None
  with open(path, "rb") as f:
    offset = 0
    while True:
      header = f.read(12)
      if not header:
        return
      if len(header) < 12:
        raise ValueError(f"{path}: truncated record header at byte {offset:,}")
      (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
      if lib is not None and _masked_crc(header[:8], lib.crc32c) != length_crc:
        raise ValueError(f"{path}: bad length checksum at byte {offset:,}")
      data = f.read(length)
      footer = f.read(4)
      if len(data) < length or len(footer) < 4:
        raise ValueError(f"{path}: truncated record at byte {offset:,}")
      if lib is not None and _masked_crc(data, lib.crc32c) != struct.unpack("<I", footer)[0]:
        raise ValueError(f"{path}: bad data checksum in the record at byte {offset:,}")
      offset += 16 + length
      yield data
