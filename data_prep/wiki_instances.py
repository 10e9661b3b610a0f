"""BERT pretraining instances (masked LM + next sentence) with the reference algorithm, on token ids.

Same decisions, same `random.Random(seed)` draws in the same order as the reference create_pretraining_data.py,
so the output is identical. What is faster:
  * tokenization through data_prep.wordpiece (memoized per word);
  * ints instead of token strings, index arithmetic instead of `del tokens[0]` when truncating;
  * the RNG draws replayed from a bulk Mersenne Twister buffer (data_prep.mt_stream), with the per-example
    shuffle of ~500 mask candidates in C;
  * instances kept as compact arrays; only an index list is shuffled at the end, which draws the same
    numbers as shuffling the instances themselves.
"""
import array
import random

from data_prep.mt_stream import WordStream
from data_prep.wordpiece import WordpieceTokenizer


class Instance:
  """One training example before padding: ids with [CLS] A [SEP] B [SEP], masked in place."""
  __slots__ = ("input_ids", "len_a", "masked_lm_positions", "masked_lm_ids", "is_random_next")

  def __init__(self, input_ids, len_a, masked_lm_positions, masked_lm_ids, is_random_next):
    self.input_ids = input_ids
    self.len_a = len_a  # tokens of segment A; segment_ids are 0 for [CLS] A [SEP], 1 for B [SEP]
    self.masked_lm_positions = masked_lm_positions
    self.masked_lm_ids = masked_lm_ids
    self.is_random_next = is_random_next

  @property
  def segment_ids(self):
    return [0] * (self.len_a + 2) + [1] * (len(self.input_ids) - self.len_a - 2)

  @property
  def next_sentence_label(self):
    return 1 if self.is_random_next else 0


def read_documents(input_files, tokenizer):
  """Documents as lists of sentences of ids. Blank lines separate documents; as the reference, a line is
  split on "\\n" only, utf-8 errors are dropped, and empty documents are removed."""
  documents = [[]]
  for path in input_files:
    with open(path, "r", encoding="utf-8", errors="ignore", newline="\n") as f:
      for line in f:
        line = line.strip()
        if not line:
          documents.append([])
          continue
        ids = tokenizer.tokenize_ids(line)
        if ids:
          documents[-1].append(ids)
  return [d for d in documents if d]


class InstanceMaker:
  def __init__(self, vocab_size, cls_id, sep_id, mask_id, *, max_seq_length, max_predictions_per_seq,
               masked_lm_prob, short_seq_prob, draws):
    self.vocab_size = vocab_size
    self.cls_id, self.sep_id, self.mask_id = cls_id, sep_id, mask_id
    self.max_seq_length = max_seq_length
    self.max_predictions_per_seq = max_predictions_per_seq
    self.masked_lm_prob = masked_lm_prob
    self.short_seq_prob = short_seq_prob
    self.draws = draws
    # Compact storage: 2 bytes per id when the vocab allows it (the 30,522-token vocab does).
    self.typecode = "H" if vocab_size <= 1 << 16 else "i"

  def from_document(self, documents, doc_index, out):
    draws = self.draws
    document = documents[doc_index]
    max_tokens = self.max_seq_length - 3
    target = max_tokens
    if draws.random() < self.short_seq_prob:
      target = draws.randint(2, max_tokens)
    chunk, length, i = [], 0, 0
    while i < len(document):
      chunk.append(document[i])
      length += len(document[i])
      if i == len(document) - 1 or length >= target:
        a_end = draws.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        tokens_a = [t for seg in chunk[:a_end] for t in seg]
        if len(chunk) == 1 or draws.random() < 0.5:
          is_random_next = True
          b_target = target - len(tokens_a)
          for _ in range(10):
            other = draws.randint(0, len(documents) - 1)
            if other != doc_index:
              break
          other_doc = documents[other]
          tokens_b = []
          for j in range(draws.randint(0, len(other_doc) - 1), len(other_doc)):
            tokens_b.extend(other_doc[j])
            if len(tokens_b) >= b_target:
              break
          i -= len(chunk) - a_end  # the unused sentences go back to the document
        else:
          is_random_next = False
          tokens_b = [t for seg in chunk[a_end:] for t in seg]
        tokens_a, tokens_b = self._truncate(tokens_a, tokens_b, max_tokens)
        out.append(self._masked(tokens_a, tokens_b, is_random_next))
        chunk, length = [], 0
      i += 1

  def _truncate(self, a, b, max_tokens):
    """The reference removes one token at a time from the longer side, front or back by a coin flip."""
    a_lo, a_hi, b_lo, b_hi = self.draws.truncate(len(a), len(b), max_tokens)
    assert a_hi > a_lo and b_hi > b_lo, "empty segment after truncation"
    return a[a_lo:a_hi], b[b_lo:b_hi]

  def _masked(self, tokens_a, tokens_b, is_random_next):
    ids = [self.cls_id] + tokens_a + [self.sep_id] + tokens_b + [self.sep_id]
    n, sep_a = len(ids), len(tokens_a) + 1
    # Candidates are all positions but [CLS]/[SEP]. The reference tests the token text; text can never yield
    # those tokens (BasicTokenizer splits '[' and ']' off as punctuation), so testing the position is the same.
    candidates = list(range(1, sep_a))
    candidates.extend(range(sep_a + 1, n - 1))
    draws = self.draws
    candidates = draws.shuffled(candidates)
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
    return Instance(array.array(self.typecode, ids), len(tokens_a), picked,
                    [labels[p] for p in picked], is_random_next)


def create_instances(documents, vocab, *, max_seq_length, max_predictions_per_seq, masked_lm_prob,
                     short_seq_prob, dupe_factor, rng):
  """All instances of one input, in the reference's final (shuffled) order. `documents` is shuffled in place."""
  draws = WordStream(rng)
  # Shuffling indices draws exactly what shuffling the documents would.
  documents[:] = [documents[k] for k in draws.shuffled(range(len(documents)))]
  maker = InstanceMaker(len(vocab), vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"],
                        max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
                        masked_lm_prob=masked_lm_prob, short_seq_prob=short_seq_prob, draws=draws)
  instances = []
  for _ in range(dupe_factor):
    for doc_index in range(len(documents)):
      maker.from_document(documents, doc_index, instances)
  return [instances[k] for k in draws.shuffled(range(len(instances)))]


def create_pretraining_examples(input_files, vocab_file, *, max_seq_length, max_predictions_per_seq,
                                masked_lm_prob=0.15, short_seq_prob=0.1, dupe_factor, random_seed=12345,
                                do_lower_case=True):
  """The reference create_pretraining_data.py on `input_files` (one path or a list), as a list of Instance.

  Like one invocation of the reference: all files are read into one document pool, one RNG seeded once.
  """
  if isinstance(input_files, (str, bytes)) or hasattr(input_files, "__fspath__"):
    input_files = [input_files]
  tokenizer = WordpieceTokenizer.from_file(vocab_file, do_lower_case)
  for special in ("[CLS]", "[SEP]", "[MASK]", "[UNK]"):
    if special not in tokenizer.vocab:
      raise ValueError(f"{vocab_file}: vocab has no {special} token")
  documents = read_documents(input_files, tokenizer)
  return create_instances(documents, tokenizer.vocab, max_seq_length=max_seq_length,
                          max_predictions_per_seq=max_predictions_per_seq, masked_lm_prob=masked_lm_prob,
                          short_seq_prob=short_seq_prob, dupe_factor=dupe_factor,
                          rng=random.Random(random_seed))
