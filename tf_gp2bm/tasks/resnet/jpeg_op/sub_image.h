// A JPEG with a restart marker after every MCU (as `data_prep.imagenet convert` writes the train images) can be cut
// into a smaller, valid JPEG holding only the MCUs around a crop window: each MCU's entropy-coded bytes stand alone
// (the DC predictors restart at every marker), so the decoder's Huffman pass, most of a JPEG decode, never touches
// the rest of the image. Decoding the cut gives the window's pixels exactly: the IDCT works per block and colour
// conversion per pixel, and the cut keeps `margin` pixels of context for the chroma upsampling, which reads
// neighbouring chroma samples.
#ifndef TF_GP2BM_JPEG_SUB_IMAGE_H_
#define TF_GP2BM_JPEG_SUB_IMAGE_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace jpeg_sub_image {

struct Layout {
  size_t size_field = 0;     // offset of the frame header's height (then width), 2 bytes each, big-endian
  size_t entropy_start = 0;  // first byte after the scan header
  int width = 0, height = 0;
  int mcu_width = 0, mcu_height = 0, mcus_per_row = 0, mcu_rows = 0;
  int margin = 0;  // pixels of context the chroma upsampling needs around a window
  std::vector<uint32_t> begin, end;  // the entropy-coded bytes of MCU i: [begin[i], end[i])
};

inline int Read16(const uint8_t* p) { return (p[0] << 8) | p[1]; }

// Fills `layout` for a baseline (or extended) Huffman JPEG with one scan of all its components, a restart interval
// of one MCU and exactly one entropy segment per MCU; anything else returns false and is decoded the usual way.
inline bool Parse(const uint8_t* data, size_t size, Layout* layout) {
  if (size < 4 || data[0] != 0xFF || data[1] != 0xD8) return false;
  size_t pos = 2;
  int restart_interval = 0, components = 0, h_max = 1, v_max = 1, ratio = 1;
  int h[3] = {1, 1, 1}, v[3] = {1, 1, 1};
  while (true) {  // marker segments up to the start of scan
    if (pos >= size || data[pos] != 0xFF) return false;
    while (pos < size && data[pos] == 0xFF) ++pos;  // fill bytes
    if (pos + 3 > size) return false;
    const int marker = data[pos++];
    if (marker == 0xD8 || marker == 0xD9 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) return false;
    const size_t length = Read16(data + pos);
    if (length < 2 || pos + length > size) return false;
    const uint8_t* segment = data + pos + 2;
    if (marker == 0xC0 || marker == 0xC1) {  // baseline or extended sequential, Huffman coded
      if (length < 8) return false;
      components = segment[5];
      if (segment[0] != 8 || (components != 1 && components != 3) || length != 8 + 3 * size_t(components)) {
        return false;
      }
      layout->size_field = pos + 3;
      layout->height = Read16(segment + 1);
      layout->width = Read16(segment + 3);
      for (int i = 0; i < components; ++i) {
        h[i] = segment[7 + 3 * i] >> 4, v[i] = segment[7 + 3 * i] & 15;
        if (h[i] < 1 || h[i] > 4 || v[i] < 1 || v[i] > 4) return false;
        h_max = std::max(h_max, h[i]), v_max = std::max(v_max, v[i]);
      }
    } else if (marker >= 0xC2 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
      return false;  // progressive, lossless or arithmetic coded
    } else if (marker == 0xDD) {
      if (length != 4) return false;
      restart_interval = Read16(segment);
    } else if (marker == 0xDA) {
      const int in_scan = segment[0];
      if (components == 0 || in_scan != components || length != 6 + 2 * size_t(in_scan)) return false;
      const uint8_t* spectral = segment + 1 + 2 * in_scan;
      if (spectral[0] != 0 || spectral[1] != 63 || spectral[2] != 0) return false;
      layout->entropy_start = pos + length;
      break;
    }
    pos += length;
  }
  if (restart_interval != 1 || layout->width <= 0 || layout->height <= 0) return false;
  if (components == 1) {
    layout->mcu_width = layout->mcu_height = 8;  // a one-component scan's MCU is one block
  } else {
    for (int i = 0; i < components; ++i) {
      if (h_max % h[i] || v_max % v[i]) return false;
      ratio = std::max({ratio, h_max / h[i], v_max / v[i]});
    }
    layout->mcu_width = 8 * h_max, layout->mcu_height = 8 * v_max;
  }
  // A subsampled chroma sample is upsampled from its neighbours: keep two samples of context.
  layout->margin = ratio > 1 ? 2 * ratio : 0;
  layout->mcus_per_row = (layout->width + layout->mcu_width - 1) / layout->mcu_width;
  layout->mcu_rows = (layout->height + layout->mcu_height - 1) / layout->mcu_height;
  const size_t mcus = size_t(layout->mcus_per_row) * layout->mcu_rows;
  layout->begin.clear(), layout->end.clear();
  layout->begin.reserve(mcus), layout->end.reserve(mcus);
  size_t start = layout->entropy_start;
  for (size_t p = start;;) {
    const void* found = std::memchr(data + p, 0xFF, size - p);
    if (found == nullptr) return false;  // no end of image: truncated
    const size_t ff = static_cast<const uint8_t*>(found) - data;
    size_t q = ff;
    while (q < size && data[q] == 0xFF) ++q;
    if (q >= size) return false;
    const int marker = data[q];
    if (marker == 0x00) {  // a stuffed 0xFF data byte
      p = q + 1;
      continue;
    }
    const bool restart = marker >= 0xD0 && marker <= 0xD7;
    if (!restart && marker != 0xD9) return false;  // another scan, DNL, ...: not this layout
    if (restart && marker - 0xD0 != static_cast<int>(layout->begin.size() & 7)) return false;
    layout->begin.push_back(start), layout->end.push_back(ff);
    if (!restart) break;
    start = p = q + 1;
  }
  return layout->begin.size() == mcus;
}

// The JPEG holding MCU columns [c0, c1) of rows [r0, r1): the original headers with the cut's size, the MCUs'
// entropy segments in order with their restart markers renumbered, and an end-of-image marker.
inline void Build(const uint8_t* data, const Layout& layout, int c0, int c1, int r0, int r1,
                  std::vector<uint8_t>* out) {
  out->assign(data, data + layout.entropy_start);
  const int width = std::min(c1 * layout.mcu_width, layout.width) - c0 * layout.mcu_width;
  const int height = std::min(r1 * layout.mcu_height, layout.height) - r0 * layout.mcu_height;
  uint8_t* size_field = out->data() + layout.size_field;
  size_field[0] = height >> 8, size_field[1] = height & 255, size_field[2] = width >> 8, size_field[3] = width & 255;
  int written = 0;
  for (int r = r0; r < r1; ++r) {
    for (int c = c0; c < c1; ++c, ++written) {
      if (written > 0) out->push_back(0xFF), out->push_back(0xD0 + ((written - 1) & 7));
      const size_t i = size_t(r) * layout.mcus_per_row + c;
      out->insert(out->end(), data + layout.begin[i], data + layout.end[i]);
    }
  }
  out->push_back(0xFF), out->push_back(0xD9);
}

}  // namespace jpeg_sub_image

#endif  // TF_GP2BM_JPEG_SUB_IMAGE_H_
