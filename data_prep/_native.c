/* Hot loops of the BERT pretraining data generator (loaded with ctypes by data_prep/native.py).

   The draw functions replay CPython's random.Random on a buffer of its raw 32-bit Mersenne Twister words
   (see data_prep/mt_stream.py for the formulas). Each returns the number of words it used, or -1 if the
   buffer ran out, in which case the caller supplies more words and calls again with the same inputs. */
#include <stdint.h>
#include <stddef.h>

static int bit_length(uint64_t n) {
  int k = 0;
  while ((n >> k) != 0) ++k;
  return k;
}

/* random.random(): 53 bits from two words. The arithmetic is exact in IEEE double, as in CPython. */
static double to_double(uint32_t a, uint32_t b) {
  return ((double)(a >> 5) * 67108864.0 + (double)(b >> 6)) * (1.0 / 9007199254740992.0);
}

/* rng._randbelow(bound) for 1 <= bound < 2**32; -1 on shortage. */
static int64_t below(const uint32_t *words, long nwords, long *p, uint64_t bound) {
  int shift = 32 - bit_length(bound);
  for (;;) {
    if (*p >= nwords) return -1;
    uint64_t r = (uint64_t)(words[(*p)++] >> shift);
    if (r < bound) return (int64_t)r;
  }
}

/* random.shuffle(items). */
long shuffle_i32(const uint32_t *words, long nwords, int32_t *items, long n) {
  long p = 0;
  for (long i = n - 1; i > 0; --i) {
    int64_t j = below(words, nwords, &p, (uint64_t)i + 1);
    if (j < 0) return -1;
    int32_t t = items[i]; items[i] = items[j]; items[j] = t;
  }
  return p;
}

/* The reference's choice for each of `count` masked positions: out = -1 for [MASK] (random() < 0.8),
   -2 to keep the token (then random() < 0.5), else a random vocab id (randint(0, vocab_size - 1)). */
long mask_draws(const uint32_t *words, long nwords, long count, uint32_t vocab_size, int64_t *out) {
  long p = 0;
  for (long t = 0; t < count; ++t) {
    if (p + 2 > nwords) return -1;
    double r = to_double(words[p], words[p + 1]);
    p += 2;
    if (r < 0.8) { out[t] = -1; continue; }
    if (p + 2 > nwords) return -1;
    r = to_double(words[p], words[p + 1]);
    p += 2;
    if (r < 0.5) { out[t] = -2; continue; }
    int64_t id = below(words, nwords, &p, vocab_size);
    if (id < 0) return -1;
    out[t] = id;
  }
  return p;
}

/* truncate_seq_pair: drop one token at a time from the longer side (B on ties), from the front if
   random() < 0.5 else from the back. bounds = {a_lo, a_hi, b_lo, b_hi} is updated in place. */
long truncate_pair(const uint32_t *words, long nwords, long max_tokens, int64_t *bounds) {
  long p = 0;
  while ((bounds[1] - bounds[0]) + (bounds[3] - bounds[2]) > max_tokens) {
    if (p + 2 > nwords) return -1;
    int front = to_double(words[p], words[p + 1]) < 0.5;
    p += 2;
    int64_t *lo = bounds, *hi = bounds + 1;
    if (!(bounds[1] - bounds[0] > bounds[3] - bounds[2])) { lo = bounds + 2; hi = bounds + 3; }
    if (front) ++*lo; else --*hi;
  }
  return p;
}

/* CRC-32C (Castagnoli), as the TFRecord format uses. */
static uint32_t crc_table[256];
static int crc_ready = 0;

uint32_t crc32c(const uint8_t *data, size_t n) {
  if (!crc_ready) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      crc_table[i] = c;
    }
    crc_ready = 1;
  }
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) crc = crc_table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}
