"""A deliberately plain re-statement of the MLPerf BERT reference data generator, used as the test oracle.

It follows retired_benchmarks/bert/cleanup_scripts/{create_pretraining_data.py,tokenization.py} of
mlcommons/training step by step: character-by-character FullTokenizer (BasicTokenizer + WordpieceTokenizer),
token strings everywhere, the same `random.Random(seed)` calls in the same order, `list.shuffle`, `del tokens[0]`.
Nothing here is shared with data_prep/, so agreement between the two is evidence, not tautology. It is slow on
purpose; data_prep.wikipedia's bench also runs it to measure the speed-up.
"""
import collections
import random
import unicodedata


# ---------------------------------------------------------------------------------------------- tokenizer
def read_vocab(path):
  vocab = collections.OrderedDict()
  with open(path, "r", encoding="utf-8", errors="ignore", newline="\n") as f:
    for line in f:
      token = line.strip()
      if token not in vocab:
        vocab[token] = len(vocab)
  return vocab


def _whitespace(ch):
  if ch in (" ", "\t", "\n", "\r"):
    return True
  return unicodedata.category(ch) == "Zs"


def _control(ch):
  if ch in ("\t", "\n", "\r"):
    return False
  return unicodedata.category(ch) in ("Cc", "Cf")


def _punctuation(ch):
  cp = ord(ch)
  ascii_punct = (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126)
  return ascii_punct or unicodedata.category(ch).startswith("P")


def _chinese(cp):
  ranges = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
            (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
  return any(lo <= cp <= hi for lo, hi in ranges)


class ReferenceTokenizer:
  """FullTokenizer: basic tokenization of the whole line, then WordPiece of each resulting token."""

  def __init__(self, vocab_file, do_lower_case=True):
    self.vocab = read_vocab(vocab_file)
    self.do_lower_case = do_lower_case

  def basic(self, text):
    cleaned = []
    for ch in text:
      if ord(ch) == 0 or ord(ch) == 0xFFFD or _control(ch):
        continue
      cleaned.append(" " if _whitespace(ch) else ch)
    spaced = []
    for ch in cleaned:
      spaced.append(" " + ch + " " if _chinese(ord(ch)) else ch)
    words = "".join(spaced).strip().split()
    pieces = []
    for word in words:
      if self.do_lower_case:
        word = word.lower()
        word = "".join(ch for ch in unicodedata.normalize("NFD", word)
                       if unicodedata.category(ch) != "Mn")
      groups = []
      new_group = True
      for ch in word:
        if _punctuation(ch):
          groups.append([ch])
          new_group = True
        else:
          if new_group:
            groups.append([])
          new_group = False
          groups[-1].append(ch)
      pieces.extend("".join(g) for g in groups)
    return " ".join(pieces).strip().split()

  def wordpiece(self, token):
    out = []
    for word in token.strip().split():
      chars = list(word)
      if len(chars) > 200:
        out.append("[UNK]")
        continue
      sub, start, bad = [], 0, False
      while start < len(chars):
        end = len(chars)
        found = None
        while start < end:
          candidate = "".join(chars[start:end])
          if start > 0:
            candidate = "##" + candidate
          if candidate in self.vocab:
            found = candidate
            break
          end -= 1
        if found is None:
          bad = True
          break
        sub.append(found)
        start = end
      out.extend(["[UNK]"] if bad else sub)
    return out

  def tokenize(self, text):
    result = []
    for token in self.basic(text):
      result.extend(self.wordpiece(token))
    return result

  def ids(self, tokens):
    return [self.vocab[t] for t in tokens]


# ---------------------------------------------------------------------------------------------- generator
Instance = collections.namedtuple(
    "Instance", ["tokens", "segment_ids", "masked_lm_positions", "masked_lm_labels", "is_random_next"])


def read_documents(input_files, tokenizer):
  documents = [[]]
  for path in input_files:
    # The reference reads with tf.gfile readline(), which splits on "\n" only, and decodes utf-8 ignoring errors.
    with open(path, "r", encoding="utf-8", errors="ignore", newline="\n") as f:
      for line in f:
        line = line.strip()
        if not line:
          documents.append([])
        tokens = tokenizer.tokenize(line)
        if tokens:
          documents[-1].append(tokens)
  return [d for d in documents if d]


def create_instances(input_files, tokenizer, max_seq_length, dupe_factor, short_seq_prob, masked_lm_prob,
                     max_predictions_per_seq, seed):
  rng = random.Random(seed)
  documents = read_documents(input_files, tokenizer)
  rng.shuffle(documents)
  vocab_words = list(tokenizer.vocab.keys())
  instances = []
  for _ in range(dupe_factor):
    for doc_index in range(len(documents)):
      instances.extend(document_instances(documents, doc_index, max_seq_length, short_seq_prob,
                                          masked_lm_prob, max_predictions_per_seq, vocab_words, rng))
  rng.shuffle(instances)
  return instances


def document_instances(documents, doc_index, max_seq_length, short_seq_prob, masked_lm_prob,
                       max_predictions_per_seq, vocab_words, rng):
  document = documents[doc_index]
  max_tokens = max_seq_length - 3
  target = max_tokens
  if rng.random() < short_seq_prob:
    target = rng.randint(2, max_tokens)
  out = []
  chunk, length, i = [], 0, 0
  while i < len(document):
    chunk.append(document[i])
    length += len(document[i])
    if i == len(document) - 1 or length >= target:
      if chunk:
        a_end = 1
        if len(chunk) >= 2:
          a_end = rng.randint(1, len(chunk) - 1)
        tokens_a = []
        for seg in chunk[:a_end]:
          tokens_a.extend(seg)
        tokens_b = []
        if len(chunk) == 1 or rng.random() < 0.5:
          is_random_next = True
          b_target = target - len(tokens_a)
          for _ in range(10):
            other = rng.randint(0, len(documents) - 1)
            if other != doc_index:
              break
          other_doc = documents[other]
          first = rng.randint(0, len(other_doc) - 1)
          for j in range(first, len(other_doc)):
            tokens_b.extend(other_doc[j])
            if len(tokens_b) >= b_target:
              break
          i -= len(chunk) - a_end
        else:
          is_random_next = False
          for seg in chunk[a_end:]:
            tokens_b.extend(seg)
        truncate_pair(tokens_a, tokens_b, max_tokens, rng)
        assert tokens_a and tokens_b
        tokens = ["[CLS]"] + tokens_a + ["[SEP]"] + tokens_b + ["[SEP]"]
        segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
        tokens, positions, labels = mask_tokens(tokens, masked_lm_prob, max_predictions_per_seq,
                                                vocab_words, rng)
        out.append(Instance(tokens, segment_ids, positions, labels, is_random_next))
      chunk, length = [], 0
    i += 1
  return out


def mask_tokens(tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng):
  candidates = [i for i, t in enumerate(tokens) if t != "[CLS]" and t != "[SEP]"]
  rng.shuffle(candidates)
  output = list(tokens)
  budget = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))
  picked, seen = [], set()
  for index in candidates:
    if len(picked) >= budget:
      break
    if index in seen:
      continue
    seen.add(index)
    if rng.random() < 0.8:
      replacement = "[MASK]"
    elif rng.random() < 0.5:
      replacement = tokens[index]
    else:
      replacement = vocab_words[rng.randint(0, len(vocab_words) - 1)]
    output[index] = replacement
    picked.append((index, tokens[index]))
  picked.sort(key=lambda p: p[0])
  return output, [p[0] for p in picked], [p[1] for p in picked]


def truncate_pair(tokens_a, tokens_b, max_tokens, rng):
  while len(tokens_a) + len(tokens_b) > max_tokens:
    longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    assert longer
    if rng.random() < 0.5:
      del longer[0]
    else:
      longer.pop()


def to_features(instance, tokenizer, max_seq_length, max_predictions_per_seq):
  """The padded feature lists the reference writes for one instance."""
  input_ids = tokenizer.ids(instance.tokens)
  input_mask = [1] * len(input_ids)
  segment_ids = list(instance.segment_ids)
  while len(input_ids) < max_seq_length:
    input_ids.append(0)
    input_mask.append(0)
    segment_ids.append(0)
  positions = list(instance.masked_lm_positions)
  label_ids = tokenizer.ids(instance.masked_lm_labels)
  weights = [1.0] * len(label_ids)
  while len(positions) < max_predictions_per_seq:
    positions.append(0)
    label_ids.append(0)
    weights.append(0.0)
  return {
      "input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids,
      "masked_lm_positions": positions, "masked_lm_ids": label_ids, "masked_lm_weights": weights,
      "next_sentence_labels": [1 if instance.is_random_next else 0],
  }


def reference_features(input_files, vocab_file, *, max_seq_length, max_predictions_per_seq, dupe_factor,
                       masked_lm_prob=0.15, short_seq_prob=0.1, seed=12345, do_lower_case=True):
  tokenizer = ReferenceTokenizer(vocab_file, do_lower_case)
  instances = create_instances(input_files, tokenizer, max_seq_length, dupe_factor, short_seq_prob,
                               masked_lm_prob, max_predictions_per_seq, seed)
  return [to_features(x, tokenizer, max_seq_length, max_predictions_per_seq) for x in instances]
