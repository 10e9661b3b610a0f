"""BERT uncased/cased WordPiece tokenization with the reference FullTokenizer's exact output, made fast.

The reference (google-research/bert tokenization.py, as vendored by MLCommons) walks every character of every
line in Python. Its result for a line is the concatenation of independent results for each whitespace-separated
word once the line has been cleaned (control characters dropped, whitespace made spaces, CJK characters spaced
out), because lower-casing, accent stripping, punctuation splitting and WordPiece all act inside one word. So we
clean a line with one `str.translate` and memoize word -> ids; Wikipedia repeats words so heavily that almost
every word is a dictionary hit.
"""
import unicodedata

UNK = "[UNK]"
MAX_CHARS_PER_WORD = 200  # the reference's max_input_chars_per_word: longer words become [UNK]
MEMO_LIMIT = 2_000_000  # words; bounds memory on pathological input (the memo is just cleared when full)


def load_vocab(path):
  """token -> id as the reference's load_vocab: one token per line, stripped, first occurrence wins.

  Ids are assigned in order of first occurrence, so with a duplicate-free file the id is the line number.
  """
  vocab = {}
  with open(path, "rb") as f:
    for raw in f:
      token = raw.decode("utf-8", "ignore").strip()
      if token not in vocab:
        vocab[token] = len(vocab)
  return vocab


def _is_punctuation(char):
  cp = ord(char)
  # The reference treats all non-alphanumeric ASCII as punctuation ('^', '$', '`' are not Unicode P*).
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(char).startswith("P")


def _is_cjk(cp):
  return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
          or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
          or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class _CleanTable(dict):
  """str.translate table doing the reference's _clean_text and _tokenize_chinese_chars in one pass.

  Filled lazily (str.translate looks code points up with __getitem__, so __missing__ applies): a corpus
  touches a few thousand distinct code points, not all 1.1 million.
  """

  def __missing__(self, cp):
    char = chr(cp)
    if char in "\t\n\r":
      value = " "
    elif char == " ":
      value = cp
    else:
      category = unicodedata.category(char)
      if cp == 0 or cp == 0xFFFD or category in ("Cc", "Cf"):
        value = None  # dropped
      elif category == "Zs":
        value = " "
      elif _is_cjk(cp):
        value = f" {char} "
      else:
        value = cp  # unchanged
    self[cp] = value
    return value


_CLEAN_TABLE = _CleanTable()


def clean_table():
  return _CLEAN_TABLE


class WordpieceTokenizer:
  """Text line -> WordPiece ids (or tokens), identical to reference FullTokenizer.tokenize + vocab lookup."""

  def __init__(self, vocab, do_lower_case=True):
    self.vocab = vocab
    self.do_lower_case = do_lower_case
    self.unk_id = vocab.get(UNK)
    self._table = clean_table()
    self._memo = {}

  @classmethod
  def from_file(cls, vocab_file, do_lower_case=True):
    return cls(load_vocab(vocab_file), do_lower_case)

  def word_pieces(self, word):
    """The reference's basic tokenization (after cleaning) then greedy longest-match WordPiece, for one word."""
    if self.do_lower_case:
      word = word.lower()
      word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
    pieces = []
    for chunk in _split_on_punctuation(word).split():
      pieces.extend(self._greedy_pieces(chunk))
    return pieces

  def _greedy_pieces(self, chunk):
    if len(chunk) > MAX_CHARS_PER_WORD:
      return [UNK]
    vocab, out, start = self.vocab, [], 0
    while start < len(chunk):
      end = len(chunk)
      while end > start:
        piece = chunk[start:end] if start == 0 else "##" + chunk[start:end]
        if piece in vocab:
          break
        end -= 1
      else:
        return [UNK]  # some suffix matched nothing: the whole word is unknown
      out.append(piece)
      start = end
    return out

  def tokenize_ids(self, line):
    memo, out = self._memo, []
    for word in line.translate(self._table).split():
      ids = memo.get(word)
      if ids is None:
        if len(memo) >= MEMO_LIMIT:
          memo.clear()
        ids = memo[word] = tuple(self._lookup(p) for p in self.word_pieces(word))
      out.extend(ids)
    return out

  def tokenize(self, line):
    """Word-piece strings (slow path, used to compare with the reference tokenizer)."""
    out = []
    for word in line.translate(self._table).split():
      out.extend(self.word_pieces(word))
    return out

  def _lookup(self, piece):
    ids = self.vocab.get(piece, self.unk_id)
    if ids is None:
      raise KeyError(f"word piece {piece!r} is not in the vocab and the vocab has no {UNK}")
    return ids


def _split_on_punctuation(word):
  """Puts spaces around every punctuation character (the reference splits them into their own tokens)."""
  if word.isalnum():
    return word
  return "".join(f" {c} " if _is_punctuation(c) else c for c in word)
