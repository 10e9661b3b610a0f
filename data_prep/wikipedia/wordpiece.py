"""BERT uncased/cased WordPiece tokenization with the reference FullTokenizer's exact output, made fast.

The reference (google-research/bert tokenization.py, as vendored by MLCommons) walks every character of every
line in Python. Its result for a line is the concatenation of independent results for each whitespace-separated
word once the line has been cleaned (control characters dropped, whitespace made spaces, CJK characters spaced
out), because lower-casing, accent stripping, punctuation splitting and WordPiece all act inside one word. So we
clean a line with one `str.translate` and memoize word -> ids; Wikipedia repeats words so heavily that almost
every word is a dictionary hit.
"""
import itertools
import unicodedata

UNK = "[UNK]"
MAX_CHARS_PER_WORD = 200  # the reference's max_input_chars_per_word: longer words become [UNK]
MEMO_LIMIT = 1_000_000  # words (~150 MB); bounds memory over many parts (the memo is just cleared when full)


def load_vocab(path):
  """token -> id as the reference's load_vocab: one token per line ("\n"-separated), stripped, first occurrence
  wins. Ids are assigned in order of first occurrence, so with a duplicate-free file the id is the line number.
  """
  with open(path, "rb") as f:
    lines = f.read().decode("utf-8", "ignore").split("\n")
  if lines and lines[-1] == "":
    lines.pop()  # after the final newline: end of file, not a line
  vocab = {}
  for line in lines:
    token = line.strip()
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
    self._memo = {}  # cleaned word -> ids
    self._chunk_memo = {}  # lower-cased punctuation-free chunk -> ids ("(1990)." shares "1990")
    self._longest = max((len(t) for t in vocab), default=0)
    self._continuations = {t[2:] for t in vocab if t.startswith("##")}

  @classmethod
  def from_file(cls, vocab_file, do_lower_case=True):
    return cls(load_vocab(vocab_file), do_lower_case)

  def _chunks(self, word):
    """The reference's BasicTokenizer on one cleaned word: lower-case, strip accents, split off punctuation."""
    if self.do_lower_case:
      word = word.lower()
      if not word.isascii():  # NFD of ASCII is itself and has no combining marks
        word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
    return word.translate(_PUNCT_TABLE).split()

  def word_pieces(self, word):
    """Basic tokenization then greedy longest-match WordPiece, for one cleaned word (as strings)."""
    pieces = []
    for chunk in self._chunks(word):
      pieces.extend(self._greedy_pieces(chunk))
    return pieces

  def _greedy_pieces(self, chunk):
    if len(chunk) > MAX_CHARS_PER_WORD:
      return [UNK]
    vocab, continuations, out, start = self.vocab, self._continuations, [], 0
    while start < len(chunk):
      end = min(len(chunk), start + self._longest)  # no longer piece can be in the vocab
      known = vocab if start == 0 else continuations  # later pieces are "##" + piece in the vocab
      while end > start:
        if chunk[start:end] in known:
          break
        end -= 1
      else:
        return [UNK]  # some suffix matched nothing: the whole word is unknown
      out.append(chunk[start:end] if start == 0 else "##" + chunk[start:end])
      start = end
    return out

  def tokenize_ids(self, line):
    words = line.translate(self._table).split()
    found = list(map(self._memo.get, words))  # C-level loop: nearly every word is a hit
    if None in found:
      for k, ids in enumerate(found):
        if ids is None:
          found[k] = self._word_ids(words[k])
    return list(itertools.chain.from_iterable(found))

  def _word_ids(self, word):
    memo, chunk_memo = self._memo, self._chunk_memo
    if len(memo) >= MEMO_LIMIT:
      memo.clear()
      chunk_memo.clear()
    ids = []
    for chunk in self._chunks(word):
      found = chunk_memo.get(chunk)
      if found is None:
        pieces = self._greedy_pieces(chunk)
        found = tuple(map(self.vocab.get, pieces))
        if None in found:  # only [UNK] can be missing: every other piece was found in the vocab
          found = tuple(self._lookup(p) for p in pieces)
        chunk_memo[chunk] = found
      ids.extend(found)
    ids = memo[word] = tuple(ids)
    return ids

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


class _PunctTable(dict):
  """str.translate table putting spaces around punctuation (the reference makes each one its own token)."""

  def __missing__(self, cp):
    char = chr(cp)
    value = self[cp] = f" {char} " if _is_punctuation(char) else cp
    return value


_PUNCT_TABLE = _PunctTable()
