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

/* CRC-32C (Castagnoli), as the TFRecord format uses; slicing-by-8 tables (8 bytes per step). */
static uint32_t crc_table[8][256];
static int crc_ready = 0;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i)
    for (int t = 1; t < 8; ++t)
      crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
  crc_ready = 1;
}

uint32_t crc32c(const uint8_t *data, size_t n) {
  if (!crc_ready) crc_init();
  uint32_t crc = 0xFFFFFFFFu;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint8_t *d = data + i;
    uint32_t lo = crc ^ ((uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24);
    uint32_t hi = (uint32_t)d[4] | (uint32_t)d[5] << 8 | (uint32_t)d[6] << 16 | (uint32_t)d[7] << 24;
    crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
          crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
          crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
  }
  for (; i < n; ++i) crc = crc_table[0][(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

/* Python's round() of a float to an int: half to even (the reference's int(round(n * masked_lm_prob))). */
static long py_round(double x) {
  double f = (double)(long)x;  /* x >= 0 here */
  double diff = x - f;
  if (diff > 0.5) return (long)f + 1;
  if (diff < 0.5) return (long)f;
  return ((long)f % 2 == 0) ? (long)f : (long)f + 1;
}

/* One example of create_instances_from_document after its segments were chosen: truncate A = flat[a_lo:a_hi]
   and B = flat[b_lo:b_hi] to max_tokens, lay out [CLS] A [SEP] B [SEP] into ids, then the masked LM step:
   shuffle the candidate positions, take the first `budget`, draw [MASK] / keep / random word for each, and
   sort the picks by position. cand needs max_tokens + 3 entries. info = {n, len_a, num_predictions}.
   Returns the words used, or -1 if the buffer ran out (outputs are then garbage; call again with more). */
long build_instance(const uint32_t *words, long nwords, const int32_t *flat, long a_lo, long a_hi, long b_lo,
                    long b_hi, long max_tokens, int32_t cls_id, int32_t sep_id, int32_t mask_id,
                    uint32_t vocab_size, double masked_lm_prob, long max_predictions, int32_t *cand,
                    int32_t *ids, int32_t *positions, int32_t *labels, int64_t *info) {
  int64_t bounds[4] = {a_lo, a_hi, b_lo, b_hi};
  long p = truncate_pair(words, nwords, max_tokens, bounds);
  if (p < 0) return -1;
  long len_a = bounds[1] - bounds[0], len_b = bounds[3] - bounds[2];
  long n = len_a + len_b + 3;
  ids[0] = cls_id;
  for (long k = 0; k < len_a; ++k) ids[1 + k] = flat[bounds[0] + k];
  ids[len_a + 1] = sep_id;
  for (long k = 0; k < len_b; ++k) ids[len_a + 2 + k] = flat[bounds[2] + k];
  ids[n - 1] = sep_id;
  /* candidates: every position but [CLS] (0) and the two [SEP] (len_a + 1, n - 1), in order */
  long count = 0;
  for (long k = 1; k < n - 1; ++k)
    if (k != len_a + 1) cand[count++] = (int32_t)k;
  long used = shuffle_i32(words + p, nwords - p, cand, count);
  if (used < 0) return -1;
  p += used;
  long budget = py_round((double)n * masked_lm_prob);
  if (budget < 1) budget = 1;
  if (budget > max_predictions) budget = max_predictions;
  if (budget > count) budget = count;
  for (long t = 0; t < budget; ++t) {
    int32_t index = cand[t];
    positions[t] = index;
    labels[t] = ids[index];
    if (p + 2 > nwords) return -1;
    double r = to_double(words[p], words[p + 1]);
    p += 2;
    if (r < 0.8) { ids[index] = mask_id; continue; }
    if (p + 2 > nwords) return -1;
    r = to_double(words[p], words[p + 1]);
    p += 2;
    if (r < 0.5) continue;  /* keep the original token */
    int64_t id = below(words, nwords, &p, vocab_size);
    if (id < 0) return -1;
    ids[index] = (int32_t)id;
  }
  /* insertion sort of the (at most max_predictions) picks by position */
  for (long t = 1; t < budget; ++t) {
    int32_t pos = positions[t], lab = labels[t];
    long u = t - 1;
    while (u >= 0 && positions[u] > pos) { positions[u + 1] = positions[u]; labels[u + 1] = labels[u]; --u; }
    positions[u + 1] = pos;
    labels[u + 1] = lab;
  }
  info[0] = n;
  info[1] = len_a;
  info[2] = budget;
  return p;
}

/* ---- tf.train.Example encoding, byte-identical to SerializeToString(deterministic=True) ---- */
static int varint_size(uint64_t v) {
  int s = 1;
  while (v >= 0x80) { v >>= 7; ++s; }
  return s;
}

static uint8_t *put_varint(uint8_t *o, uint64_t v) {
  while (v >= 0x80) { *o++ = (uint8_t)(v | 0x80); v >>= 7; }
  *o++ = (uint8_t)v;
  return o;
}

static long entry_size(long key_len, long packed_len) {
  long list = 1 + varint_size(packed_len) + packed_len;  /* Int64List/FloatList.value, packed */
  long feature = 1 + varint_size(list) + list;          /* Feature.int64_list / float_list */
  long entry = 1 + varint_size(key_len) + key_len + 1 + varint_size(feature) + feature;
  return 1 + varint_size(entry) + entry;                /* Features.feature map entry */
}

static uint8_t *put_entry_head(uint8_t *o, const char *key, long key_len, uint8_t feature_tag,
                               long packed_len) {
  long list = 1 + varint_size(packed_len) + packed_len;
  long feature = 1 + varint_size(list) + list;
  long entry = 1 + varint_size(key_len) + key_len + 1 + varint_size(feature) + feature;
  *o++ = 0x0A; o = put_varint(o, entry);
  *o++ = 0x0A; o = put_varint(o, key_len);
  for (long k = 0; k < key_len; ++k) *o++ = (uint8_t)key[k];
  *o++ = 0x12; o = put_varint(o, feature);
  *o++ = feature_tag; o = put_varint(o, list);
  *o++ = 0x0A; o = put_varint(o, packed_len);
  return o;
}

static long packed_ints_size(const int32_t *v, long n, long padded) {
  long s = padded - n;  /* zeros take one byte each */
  for (long k = 0; k < n; ++k) s += varint_size((uint32_t)v[k]);
  return s;
}

static uint8_t *put_ints(uint8_t *o, const int32_t *v, long n, long padded) {
  for (long k = 0; k < n; ++k) o = put_varint(o, (uint32_t)v[k]);
  for (long k = n; k < padded; ++k) *o++ = 0;
  return o;
}

/* Keys in sorted order, as deterministic serialization writes map entries. Returns the size written, or -1 if
   out_cap is too small. */
long encode_example(const int32_t *ids, long n, long len_a, const int32_t *positions, const int32_t *labels,
                    long m, long next_label, long max_seq, long max_pred, uint8_t *out, long out_cap) {
  long ids_len = packed_ints_size(ids, n, max_seq);
  long lab_len = packed_ints_size(labels, m, max_pred);
  long pos_len = packed_ints_size(positions, m, max_pred);
  long total = entry_size(9, ids_len) + entry_size(10, max_seq) + entry_size(13, lab_len)
               + entry_size(19, pos_len) + entry_size(17, 4 * max_pred) + entry_size(20, 1)
               + entry_size(11, max_seq);
  if (1 + varint_size(total) + total > out_cap) return -1;
  uint8_t *o = out;
  *o++ = 0x0A; o = put_varint(o, total);
  o = put_entry_head(o, "input_ids", 9, 0x1A, ids_len);
  o = put_ints(o, ids, n, max_seq);
  o = put_entry_head(o, "input_mask", 10, 0x1A, max_seq);
  for (long k = 0; k < max_seq; ++k) *o++ = k < n ? 1 : 0;
  o = put_entry_head(o, "masked_lm_ids", 13, 0x1A, lab_len);
  o = put_ints(o, labels, m, max_pred);
  o = put_entry_head(o, "masked_lm_positions", 19, 0x1A, pos_len);
  o = put_ints(o, positions, m, max_pred);
  o = put_entry_head(o, "masked_lm_weights", 17, 0x12, 4 * max_pred);
  for (long k = 0; k < max_pred; ++k) {  /* little-endian float32 1.0f = 00 00 80 3F */
    *o++ = 0; *o++ = 0; *o++ = k < m ? 0x80 : 0; *o++ = k < m ? 0x3F : 0;
  }
  o = put_entry_head(o, "next_sentence_labels", 20, 0x1A, 1);
  *o++ = (uint8_t)next_label;
  o = put_entry_head(o, "segment_ids", 11, 0x1A, max_seq);
  for (long k = 0; k < max_seq; ++k) *o++ = (k >= len_a + 2 && k < n) ? 1 : 0;
  return (long)(o - out);
}
