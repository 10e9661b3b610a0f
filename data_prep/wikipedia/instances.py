"""BERT pretraining instances (masked LM + next sentence) with the reference algorithm, on token ids.

Same decisions, same `random.Random(seed)` draws in the same order as the reference create_pretraining_data.py,
so the output is identical. What is faster:
  * tokenization through data_prep.wordpiece (memoized per word);
  * all token ids of an input in one flat int32 array; sentences, segments A/B and truncation are index ranges
    into it (A is always consecutive sentences of one document, and so is B), never lists of strings;
  * the RNG draws replayed from a bulk Mersenne Twister buffer (data_prep.wikipedia.mt_stream), and the per-example
    work (truncation, [CLS] A [SEP] B [SEP], shuffle of ~500 mask candidates, masking) in one C call;
  * instances kept compact (uint16 ids) until the final shuffle, which permutes an index list: the same draws
    as shuffling the instances themselves.
"""
import array
import os
import random

import numpy as np

from data_prep import native
from data_prep.wikipedia.mt_stream import WordStream
from data_prep.wikipedia.wordpiece import WordpieceTokenizer


class Instance:
  """One training example before padding: ids of [CLS] A [SEP] B [SEP] with the masks applied."""
  __slots__ = ("ids", "len_a", "positions", "labels", "is_random_next")

  def __init__(self, ids, len_a, positions, labels, is_random_next):
    self.ids = ids  # np.ndarray (uint16 or int32)
    self.len_a = len_a  # tokens of segment A; segment_ids are 0 for [CLS] A [SEP], 1 for B [SEP]
    self.positions = positions  # np.ndarray int32, sorted
    self.labels = labels  # np.ndarray int32: the original ids at those positions
    self.is_random_next = is_random_next

  @property
  def input_ids(self):
    return self.ids.tolist()

  @property
  def masked_lm_positions(self):
    return self.positions.tolist()

  @property
  def masked_lm_ids(self):
    return self.labels.tolist()

  @property
  def segment_ids(self):
    return [0] * (self.len_a + 2) + [1] * (len(self.ids) - self.len_a - 2)

  @property
  def next_sentence_label(self):
    return 1 if self.is_random_next else 0


def read_documents(input_files, tokenizer):
  """(flat ids, documents): each document is the list of its sentences' start offsets in `flat` plus the end.

  Blank lines separate documents; as the reference, a line is split on "\\n" only, utf-8 errors are dropped,
  lines without tokens are skipped and empty documents removed."""
  flat = array.array("i")
  documents, current = [], [0]
  for path in input_files:
    with open(path, "r", encoding="utf-8", errors="ignore", newline="\n") as f:
      for line in f:
        line = line.strip()
        if not line:
          if len(current) > 1:
            documents.append(current)
          current = [len(flat)]
          continue
        ids = tokenizer.tokenize_ids(line)
        if ids:
          flat.extend(ids)
          current.append(len(flat))
  if len(current) > 1:
    documents.append(current)
  return np.frombuffer(flat, dtype=np.int32) if flat else np.zeros(0, np.int32), documents


class InstanceMaker:
  def __init__(self, flat, vocab_size, cls_id, sep_id, mask_id, *, max_seq_length, max_predictions_per_seq,
               masked_lm_prob, short_seq_prob, draws, use_native=True):
    self.flat = np.ascontiguousarray(flat, dtype=np.int32)
    self.vocab_size = vocab_size
    self.cls_id, self.sep_id, self.mask_id = cls_id, sep_id, mask_id
    self.max_seq_length = max_seq_length
    self.max_predictions_per_seq = max_predictions_per_seq
    self.masked_lm_prob = masked_lm_prob
    self.short_seq_prob = short_seq_prob
    self.draws = draws
    self.id_dtype = np.uint16 if vocab_size <= 1 << 16 else np.int32  # compact storage
    self._lib = native.load() if use_native else None
    if self._lib is not None:
      self._ids = np.zeros(max_seq_length, np.int32)
      self._cand = np.zeros(max_seq_length, np.int32)
      self._pos = np.zeros(max_predictions_per_seq, np.int32)
      self._lab = np.zeros(max_predictions_per_seq, np.int32)
      self._info = np.zeros(3, np.int64)
      self._addr = [a.ctypes.data for a in (self.flat, self._cand, self._ids, self._pos, self._lab, self._info)]

  def from_document(self, documents, doc_index, out):
    """create_instances_from_document with sentences as index ranges."""
    draws = self.draws
    starts = documents[doc_index]
    num_sentences = len(starts) - 1
    max_tokens = self.max_seq_length - 3
    target = max_tokens
    if draws.random() < self.short_seq_prob:
      target = draws.randint(2, max_tokens)
    first, i = 0, 0  # the current chunk is sentences first..i
    while i < num_sentences:
      if i == num_sentences - 1 or starts[i + 1] - starts[first] >= target:
        chunk_len = i - first + 1
        a_end = draws.randint(1, chunk_len - 1) if chunk_len >= 2 else 1
        a_lo, a_hi = starts[first], starts[first + a_end]
        if chunk_len == 1 or draws.random() < 0.5:
          is_random_next = True
          b_target = target - (a_hi - a_lo)
          for _ in range(10):
            other = draws.randint(0, len(documents) - 1)
            if other != doc_index:
              break
          other_starts = documents[other]
          j = draws.randint(0, len(other_starts) - 2)
          b_lo = other_starts[j]
          while True:  # whole sentences until B reaches its target or the document ends
            j += 1
            if j == len(other_starts) - 1 or other_starts[j] - b_lo >= b_target:
              break
          b_hi = other_starts[j]
          i -= chunk_len - a_end  # the unused sentences go back to the document
        else:
          is_random_next = False
          b_lo, b_hi = a_hi, starts[i + 1]
        out.append(self._instance(a_lo, a_hi, b_lo, b_hi, is_random_next))
        first = i + 1
      i += 1

  def _instance(self, a_lo, a_hi, b_lo, b_hi, is_random_next):
    if self._lib is None:
      return self._instance_python(a_lo, a_hi, b_lo, b_hi, is_random_next)
    flat_addr, cand, ids, pos, lab, info = self._addr
    lib = self._lib
    self.draws.native(lambda w, nw: lib.build_instance(
        w, nw, flat_addr, a_lo, a_hi, b_lo, b_hi, self.max_seq_length - 3, self.cls_id, self.sep_id,
        self.mask_id, self.vocab_size, self.masked_lm_prob, self.max_predictions_per_seq, cand, ids, pos, lab,
        info), 4 * self.max_seq_length + 8 * self.max_predictions_per_seq + 64)
    n, len_a, m = self._info.tolist()
    return Instance(self._ids[:n].astype(self.id_dtype), len_a, self._pos[:m].copy(), self._lab[:m].copy(),
                    is_random_next)

  def _instance_python(self, a_lo, a_hi, b_lo, b_hi, is_random_next):
    """The same as build_instance in _native.c, for machines without a C compiler."""
    draws = self.draws
    ta_lo, ta_hi, tb_lo, tb_hi = draws.truncate(a_hi - a_lo, b_hi - b_lo, self.max_seq_length - 3)
    assert ta_hi > ta_lo and tb_hi > tb_lo, "empty segment after truncation"
    tokens_a = self.flat[a_lo + ta_lo:a_lo + ta_hi].tolist()
    tokens_b = self.flat[b_lo + tb_lo:b_lo + tb_hi].tolist()
    ids = [self.cls_id] + tokens_a + [self.sep_id] + tokens_b + [self.sep_id]
    n, sep_a = len(ids), len(tokens_a) + 1
    # Candidates are all positions but [CLS]/[SEP]. The reference tests the token text; text can never yield
    # those tokens (BasicTokenizer splits '[' and ']' off as punctuation), so testing the position is the same.
    candidates = draws.shuffled(list(range(1, sep_a)) + list(range(sep_a + 1, n - 1)))
    budget = min(self.max_predictions_per_seq, max(1, int(round(n * self.masked_lm_prob))))
    picked = candidates[:budget]  # positions are distinct, so the reference's "covered" set never skips
    labels = {}
    for index, choice in zip(picked, draws.mask_choices(len(picked), self.vocab_size)):
      labels[index] = ids[index]
      if choice == -1:
        ids[index] = self.mask_id
      elif choice >= 0:
        ids[index] = choice  # a random vocab word; -2 keeps the original token
    picked.sort()
    return Instance(np.array(ids, dtype=self.id_dtype), len(tokens_a), np.array(picked, dtype=np.int32),
                    np.array([labels[p] for p in picked], dtype=np.int32), is_random_next)


def create_instances(flat, documents, vocab, *, max_seq_length, max_predictions_per_seq, masked_lm_prob,
                     short_seq_prob, dupe_factor, rng, use_native=True):
  """All instances of one input, in the reference's final (shuffled) order."""
  draws = WordStream(rng, use_native=use_native)
  # Shuffling indices draws exactly what shuffling the documents would.
  documents = [documents[k] for k in draws.shuffled(range(len(documents)))]
  maker = InstanceMaker(flat, len(vocab), vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"],
                        max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
                        masked_lm_prob=masked_lm_prob, short_seq_prob=short_seq_prob, draws=draws,
                        use_native=use_native)
  instances = []
  for _ in range(dupe_factor):
    for doc_index in range(len(documents)):
      maker.from_document(documents, doc_index, instances)
  return [instances[k] for k in draws.shuffled(range(len(instances)))]


_TOKENIZERS = {}


def _tokenizer(vocab_file, do_lower_case):
  """One tokenizer per vocab file and process, so its word memo carries over from part to part."""
  st = os.stat(vocab_file)
  key = (os.path.abspath(vocab_file), st.st_size, st.st_mtime_ns, do_lower_case)
  if key not in _TOKENIZERS:
    _TOKENIZERS.clear()
    _TOKENIZERS[key] = WordpieceTokenizer.from_file(vocab_file, do_lower_case)
  return _TOKENIZERS[key]


def create_pretraining_examples(input_files, vocab_file, *, max_seq_length, max_predictions_per_seq,
                                masked_lm_prob=0.15, short_seq_prob=0.1, dupe_factor, random_seed=12345,
                                do_lower_case=True):
  """The reference create_pretraining_data.py on `input_files` (one path or a list), as a list of Instance.

  Like one invocation of the reference: all files are read into one document pool, one RNG seeded once.
  """
  if isinstance(input_files, (str, bytes)) or hasattr(input_files, "__fspath__"):
    input_files = [input_files]
  tokenizer = _tokenizer(vocab_file, do_lower_case)
  for special in ("[CLS]", "[SEP]", "[MASK]", "[UNK]"):
    if special not in tokenizer.vocab:
      raise ValueError(f"{vocab_file}: vocab has no {special} token")
  flat, documents = read_documents(input_files, tokenizer)
  return create_instances(flat, documents, tokenizer.vocab, max_seq_length=max_seq_length,
                          max_predictions_per_seq=max_predictions_per_seq, masked_lm_prob=masked_lm_prob,
                          short_seq_prob=short_seq_prob, dupe_factor=dupe_factor,
                          rng=random.Random(random_seed))
