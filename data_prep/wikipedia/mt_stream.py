"""The draws of a CPython `random.Random`, served from a bulk buffer of its Mersenne Twister output.

Every draw the reference makes reduces to consuming 32-bit MT19937 outputs in order (CPython's
_randommodule.c / random.py, unchanged since 3.2, so also in the 3.7 the published data was made with):
  random()        two words a, b:  ((a >> 5) * 2**26 + (b >> 6)) / 2**53
  randbelow(n)    k = n.bit_length() (n < 2**32 here): words w >> (32 - k) until one is < n
  randint(a, b)   a + randbelow(b - a + 1)
  shuffle(x)      for i = len-1 .. 1: j = randbelow(i + 1); swap x[i], x[j]
So we copy the Random's state into numpy's MT19937 (the same generator and state layout), generate words in
blocks, and replay those formulas: scalar draws here in Python, the shuffle and the per-example loops in
data_prep/_native.c (`native`), or the same loops here in Python without a C compiler.
"""
import numpy as np

from data_prep import native


class WordStream:
  """Draws identical to `rng`'s from the point of construction on (`rng` itself is not advanced)."""
  BLOCK = 1 << 20  # words (4 MB) generated at a time

  def __init__(self, rng, use_native=True):
    version, state, _ = rng.getstate()
    if version != 3 or len(state) != 625:
      raise ValueError("unexpected random.Random state layout")
    self._mt = np.random.MT19937()
    self._mt.state = {"bit_generator": "MT19937",
                      "state": {"key": np.array(state[:624], dtype=np.uint32), "pos": state[624]}}
    self._words = np.empty(0, dtype=np.uint32)
    self._addr = self._words.ctypes.data  # cached: numpy's .ctypes costs microseconds per access
    self._item = self._words.item  # scalar draws read words as Python ints, one at a time
    self._n = 0
    self._p = 0
    self._lib = native.load() if use_native else None

  def _ensure(self, n):
    if self._p + n <= self._n:
      return
    fresh = self._mt.random_raw(max(self.BLOCK, n)).astype(np.uint32)
    self._words = np.concatenate([self._words[self._p:], fresh])
    self._addr = self._words.ctypes.data
    self._item = self._words.item
    self._n = len(self._words)
    self._p = 0

  def random(self):
    if self._p + 2 > self._n:
      self._ensure(2)
    p, item = self._p, self._item
    self._p = p + 2
    return ((item(p) >> 5) * 67108864.0 + (item(p + 1) >> 6)) * (1.0 / 9007199254740992.0)

  def below(self, n):
    """rng._randbelow(n) for 1 <= n < 2**32 (one word per try; larger n would take several)."""
    shift = 32 - n.bit_length()
    if shift < 0:
      raise ValueError(f"randbelow({n}) needs more than 32 bits per draw; not supported")
    while True:
      if self._p >= self._n:
        self._ensure(1)
      r = self._item(self._p) >> shift
      self._p += 1
      if r < n:
        return r

  def randint(self, a, b):
    return a + self.below(b - a + 1)

  def native(self, fn, need):
    """Runs fn(address of the next unread word, words available), a C draw loop returning the words it used
    or -1 when they ran out: then it is run again, from the same point, with more words."""
    while True:
      self._ensure(need)
      used = fn(self._addr + 4 * self._p, self._n - self._p)
      if used >= 0:
        self._p += used
        return
      need *= 2

  def shuffled(self, items):
    """A new list: `items` after rng.shuffle(items). Items must fit int32 (indices, ids)."""
    n = len(items)
    if n < 2:
      return list(items)
    if self._lib is None:
      x = list(items)
      for i in range(n - 1, 0, -1):
        j = self.below(i + 1)
        x[i], x[j] = x[j], x[i]
      return x
    arr = np.array(items, dtype=np.int32)
    original = arr.copy()

    def run(words, nwords):
      arr[:] = original  # a retry must start from the unshuffled items
      return self._lib.shuffle_i32(words, nwords, arr.ctypes.data, n)
    self.native(run, 2 * n + 64)  # ~1.4 n words are used on average
    return arr.tolist()

  # The two below are the per-example draws that data_prep/_native.c's build_instance makes; they serve the
  # pure-Python path only.
  def mask_choices(self, count, vocab_size):
    """For `count` masked positions: -1 = [MASK] (80%), -2 = keep (10%), else a random id (10%)."""
    out = []
    for _ in range(count):
      if self.random() < 0.8:
        out.append(-1)
      elif self.random() < 0.5:
        out.append(-2)
      else:
        out.append(self.below(vocab_size))
    return out

  def truncate(self, len_a, len_b, max_tokens):
    """truncate_seq_pair's coin flips: (a_lo, a_hi, b_lo, b_hi) to keep of A and B."""
    a_lo, a_hi, b_lo, b_hi = 0, len_a, 0, len_b
    while (a_hi - a_lo) + (b_hi - b_lo) > max_tokens:
      front = self.random() < 0.5
      if a_hi - a_lo > b_hi - b_lo:
        a_lo, a_hi = (a_lo + 1, a_hi) if front else (a_lo, a_hi - 1)
      else:
        b_lo, b_hi = (b_lo + 1, b_hi) if front else (b_lo, b_hi - 1)
    return a_lo, a_hi, b_lo, b_hi
