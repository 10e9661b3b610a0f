// One TensorFlow op for the ResNet train image: JPEG decode of the crop window, optional left-right flip, legacy
// bilinear resize to size x size, rounded to uint8.
//
// It computes exactly the pixels of the TensorFlow op chain it replaces
//   decode_and_crop_jpeg(channels=3) -> reverse(width) if flip -> compat.v1 resize BILINEAR(align_corners=False)
//   -> round half to even -> clip to [0, 255] -> uint8
// (same libjpeg-turbo calls: fast integer DCT, fancy upsampling, jpeg_crop_scanline + jpeg_skip_scanlines; the same float
// interpolation formula and order), and is cheaper because:
//   - it stops decoding after the window's last row (TensorFlow entropy-decodes the rows below it too);
//   - the flip is an index mapping and the resize writes uint8 directly (no float image, no extra passes);
//   - one op call per image instead of five in the tf.data function.
#include <jerror.h>
#include <setjmp.h>
#include <stdio.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

// jpeglib.h is C and needs stdio.h before it.
#include <jpeglib.h>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "sub_image.h"

namespace {

using tensorflow::errors::InvalidArgument;

struct JpegErrors {
  jpeg_error_mgr pub;
  jmp_buf jump;
  bool truncated = false;
  char message[JMSG_LENGTH_MAX] = {0};
};

void ExitOnError(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, errors->message);
  longjmp(errors->jump, 1);
}

// Warnings are ignored as TensorFlow ignores them, except running out of data: TensorFlow refuses a truncated
// JPEG (try_recover_truncated=False), where libjpeg's memory source would pad it with grey.
void OnMessage(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) reinterpret_cast<JpegErrors*>(cinfo->err)->truncated = true;
}

struct Window {
  int y, x, height, width;
};

// A decoded window: height rows of width RGB pixels, `stride` bytes apart, starting at `pixels`.
struct Pixels {
  const uint8_t* pixels;
  int height, width;
  size_t stride;
};

// A buffer the next call on the same tf.data thread reuses: it grows without zero-filling, and one that grew past
// kKeepBytes (a rare huge image) is freed after the call, so idle threads do not hold it.
class ScratchBuffer {
 public:
  uint8_t* Get(size_t bytes) {
    if (capacity_ < bytes) data_.reset(new uint8_t[bytes]), capacity_ = bytes;
    return data_.get();
  }
  void Trim() {
    if (capacity_ > kKeepBytes) data_.reset(), capacity_ = 0;
  }

 private:
  static constexpr size_t kKeepBytes = size_t{8} << 20;
  std::unique_ptr<uint8_t[]> data_;
  size_t capacity_ = 0;
};

thread_local ScratchBuffer decoded_rows, cmyk_line;

void TrimScratch() { decoded_rows.Trim(), cmyk_line.Trim(); }

// Decodes `window` of the image. Returns an empty string, or the error.
std::string DecodeWindow(const uint8_t* jpeg, size_t jpeg_size, const Window& window, Pixels* out) {
  jpeg_decompress_struct cinfo;
  JpegErrors errors;
  cinfo.err = jpeg_std_error(&errors.pub);
  errors.pub.error_exit = ExitOnError;
  errors.pub.emit_message = OnMessage;
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return std::string("Invalid JPEG data: ") + errors.message;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, jpeg, jpeg_size);
  jpeg_read_header(&cinfo, TRUE);
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;  // TensorFlow converts CMYK itself, below
  cinfo.do_fancy_upsampling = TRUE;
  cinfo.scale_num = cinfo.scale_denom = 1;
  cinfo.dct_method = JDCT_IFAST;  // decode_jpeg's default dct_method "" is the fast integer DCT
  jpeg_calc_output_dimensions(&cinfo);
  const int64_t image_h = cinfo.output_height, image_w = cinfo.output_width;
  if (window.height <= 0 || window.width <= 0 || window.y < 0 || window.x < 0 ||
      int64_t{window.y} + window.height > image_h || int64_t{window.x} + window.width > image_w) {
    jpeg_destroy_decompress(&cinfo);
    return "crop window y=" + std::to_string(window.y) + " x=" + std::to_string(window.x) + " h=" +
           std::to_string(window.height) + " w=" + std::to_string(window.width) + " does not fit the " +
           std::to_string(image_h) + "x" + std::to_string(image_w) + " image";
  }
  if (image_h * image_w * cinfo.output_components >= (int64_t{1} << 29)) {
    jpeg_destroy_decompress(&cinfo);
    return "image too large: " + std::to_string(image_h) + "x" + std::to_string(image_w);
  }
  jpeg_start_decompress(&cinfo);
  JDIMENSION crop_x = window.x, crop_width = window.width;
  jpeg_crop_scanline(&cinfo, &crop_x, &crop_width);  // widens to the iMCU grid; `skip` realigns
  if (jpeg_skip_scanlines(&cinfo, window.y) != static_cast<JDIMENSION>(window.y) || errors.truncated) {
    jpeg_destroy_decompress(&cinfo);
    return "Invalid JPEG data: premature end of data";
  }
  const size_t skip = static_cast<size_t>(window.x) - crop_x;
  // RGB rows are decoded in place at the widened width; CMYK rows go through a line and are converted.
  const size_t stride = cmyk ? static_cast<size_t>(window.width) * 3 : static_cast<size_t>(cinfo.output_width) * 3;
  uint8_t* rows = decoded_rows.Get(stride * window.height);
  uint8_t* line = cmyk ? cmyk_line.Get(static_cast<size_t>(cinfo.output_width) * 4) : nullptr;
  for (int row = 0; row < window.height; ++row) {
    JSAMPROW target = cmyk ? line : rows + row * stride;
    if (jpeg_read_scanlines(&cinfo, &target, 1) != 1 || errors.truncated) {
      jpeg_destroy_decompress(&cinfo);
      return "Invalid JPEG data: premature end of data at line " + std::to_string(row) + "/" +
             std::to_string(window.height);
    }
    if (!cmyk) continue;
    const uint8_t* src = line + skip * 4;
    uint8_t* dst = rows + row * stride;
    for (int i = 0; i < window.width; ++i, src += 4, dst += 3) {  // TensorFlow's CMYK -> RGB, integer math
      const int c = src[0], m = src[1], y = src[2], k = src[3];
      if (cinfo.saw_Adobe_marker) {
        dst[0] = k * c / 255, dst[1] = k * m / 255, dst[2] = k * y / 255;
      } else {
        dst[0] = (255 - k) * (255 - c) / 255, dst[1] = (255 - k) * (255 - m) / 255,
        dst[2] = (255 - k) * (255 - y) / 255;
      }
    }
  }
  // The rows below the window are never needed: abort instead of decoding them.
  jpeg_abort_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  *out = Pixels{cmyk ? rows : rows + skip * 3, window.height, window.width, stride};
  return "";
}

struct Tap {
  int lower, upper;
  float lerp;
};

// TensorFlow's legacy (align_corners=False, no half-pixel centres) sampling: in = i * (in_size / out_size).
std::vector<Tap> Taps(int in_size, int out_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  std::vector<Tap> taps(out_size);
  for (int i = 0; i < out_size; ++i) {
    const float in = static_cast<float>(i) * scale;
    const float in_floor = std::floor(in);
    taps[i].lower = std::max(static_cast<int>(in_floor), 0);
    taps[i].upper = std::min(static_cast<int>(std::ceil(in)), in_size - 1);
    taps[i].lerp = in - in_floor;
  }
  return taps;
}

// Four floats in one vector (GCC/Clang vector extensions: SSE on x86, NEON on Arm); lane-wise arithmetic rounds
// exactly as the scalar code would.
typedef float Float4 __attribute__((vector_size(16)));

inline Float4 LoadFloat4(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Bilinear resize to out (size x size x 3); a flip mirrors the source columns. Separable, with TensorFlow's
// arithmetic: a source row interpolated along x is exactly TensorFlow's `top` (or `bottom`), and consecutive output
// rows share source rows, so each is interpolated once; then out = top + (bottom - top) * y_lerp, rounded.
void ResizeBilinear(const Pixels& in, bool flip, int size, uint8_t* out) {
  const int n = size * 3;
  // Plain locals in the loops: a thread_local in a shared library costs a TLS lookup per use.
  thread_local std::vector<int> lower_buffer, upper_buffer;
  thread_local std::vector<float> x_lerp_buffer, rows_buffer, source_buffer;
  lower_buffer.resize(size), upper_buffer.resize(size), x_lerp_buffer.resize(size), rows_buffer.resize(2 * n + 8);
  source_buffer.resize(in.width * 3 + 4);
  int* lower = lower_buffer.data();
  int* upper = upper_buffer.data();
  float* x_lerp = x_lerp_buffer.data();
  float* source = source_buffer.data();
  const std::vector<Tap> xs = Taps(in.width, size), ys = Taps(in.height, size);
  for (int ox = 0; ox < size; ++ox) {
    lower[ox] = 3 * (flip ? in.width - 1 - xs[ox].lower : xs[ox].lower);
    upper[ox] = 3 * (flip ? in.width - 1 - xs[ox].upper : xs[ox].upper);
    x_lerp[ox] = xs[ox].lerp;
  }
  // The source row as floats (one vectorised pass), then each pixel's three channels in one vector: 4x faster
  // than converting gathered bytes. A pixel's 4-float load reads one float past it (the buffer has room), and its
  // 4-float store spills one lane into the next pixel, which that pixel's store then overwrites.
  auto along_x = [lower, upper, x_lerp, source, size, &in](int source_row, float* dst) {
    const uint8_t* bytes = in.pixels + source_row * in.stride;
    for (int i = 0; i < in.width * 3; ++i) source[i] = bytes[i];
    for (int ox = 0; ox < size; ++ox) {
      const Float4 left = LoadFloat4(source + lower[ox]), right = LoadFloat4(source + upper[ox]);
      const Float4 v = left + (right - left) * x_lerp[ox];
      std::memcpy(dst + 3 * ox, &v, sizeof(v));
    }
  };
  float* top = rows_buffer.data();
  float* bottom = top + n + 4;
  int top_row = -1, bottom_row = -1;
  for (int oy = 0; oy < size; ++oy) {
    const int lo = ys[oy].lower, hi = ys[oy].upper;
    if (lo == bottom_row) std::swap(top, bottom), std::swap(top_row, bottom_row);
    if (lo != top_row) along_x(lo, top), top_row = lo;
    const float* low = top;
    const float* high = top;
    if (hi != lo) {
      if (hi != bottom_row) along_x(hi, bottom), bottom_row = hi;
      high = bottom;
    }
    const float y_lerp = ys[oy].lerp;
    uint8_t* dst = out + static_cast<size_t>(oy) * n;
    for (int j = 0; j < n; ++j) {
      const float v = low[j] + (high[j] - low[j]) * y_lerp;
      // Adding and removing 1.5 * 2^23 rounds to the nearest integer, ties to even, as tf.round does. No clip
      // needed: v is a convex mix of bytes, within a rounding error of [0, 255], so it rounds into [0, 255].
      dst[j] = static_cast<uint8_t>(static_cast<int>((v + 12582912.0f) - 12582912.0f));
    }
  }
}

// For a JPEG with a restart marker after every MCU: cuts the MCUs around `window` (plus the upsampling margin)
// into `sub_image` and sets `cut` to the window's place in it. False when the layout does not allow it, the
// window does not fit the image (the full decode then reports it), or the cut would save little.
bool CutAround(const uint8_t* data, size_t size, const Window& window, jpeg_sub_image::Layout* layout,
               std::vector<uint8_t>* sub_image, Window* cut) {
  if (!jpeg_sub_image::Parse(data, size, layout)) return false;
  if (window.height <= 0 || window.width <= 0 || window.y < 0 || window.x < 0 ||
      int64_t{window.y} + window.height > layout->height || int64_t{window.x} + window.width > layout->width) {
    return false;
  }
  const int m = layout->margin, mw = layout->mcu_width, mh = layout->mcu_height;
  const int c0 = std::max(window.x - m, 0) / mw;
  const int c1 = std::min((window.x + window.width + m + mw - 1) / mw, layout->mcus_per_row);
  const int r0 = std::max(window.y - m, 0) / mh;
  const int r1 = std::min((window.y + window.height + m + mh - 1) / mh, layout->mcu_rows);
  if (int64_t{c1 - c0} * (r1 - r0) * 10 > int64_t{layout->mcus_per_row} * layout->mcu_rows * 9) return false;
  jpeg_sub_image::Build(data, *layout, c0, c1, r0, r1, sub_image);
  *cut = Window{window.y - r0 * mh, window.x - c0 * mw, window.height, window.width};
  return true;
}

class DecodeCropFlipResizeJpegOp : public tensorflow::OpKernel {
 public:
  explicit DecodeCropFlipResizeJpegOp(tensorflow::OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("size", &size_));
    OP_REQUIRES(context, size_ > 0, InvalidArgument("size must be positive, got ", size_));
  }

  void Compute(tensorflow::OpKernelContext* context) override {
    const tensorflow::Tensor& contents = context->input(0);
    const tensorflow::Tensor& window_tensor = context->input(1);
    const tensorflow::Tensor& flip = context->input(2);
    OP_REQUIRES(context, tensorflow::TensorShapeUtils::IsScalar(contents.shape()),
                InvalidArgument("contents must be a scalar string, got shape ", contents.shape().DebugString()));
    OP_REQUIRES(context, window_tensor.NumElements() == 4,
                InvalidArgument("crop_window must hold 4 values (y, x, height, width), got shape ",
                                window_tensor.shape().DebugString()));
    OP_REQUIRES(context, tensorflow::TensorShapeUtils::IsScalar(flip.shape()),
                InvalidArgument("flip must be a scalar bool"));
    const auto w = window_tensor.flat<int32_t>();
    const Window window{w(0), w(1), w(2), w(3)};
    const tensorflow::tstring& jpeg = contents.scalar<tensorflow::tstring>()();
    const uint8_t* data = reinterpret_cast<const uint8_t*>(jpeg.data());
    size_t size = jpeg.size();
    Window cut = window;
    thread_local jpeg_sub_image::Layout layout;
    thread_local std::vector<uint8_t> sub_image;
    if (CutAround(data, size, window, &layout, &sub_image, &cut)) data = sub_image.data(), size = sub_image.size();
    Pixels decoded;
    const std::string error = DecodeWindow(data, size, cut, &decoded);
    OP_REQUIRES(context, error.empty(), InvalidArgument(error));
    tensorflow::Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, tensorflow::TensorShape({size_, size_, 3}), &output));
    ResizeBilinear(decoded, flip.scalar<bool>()(), size_, output->flat<uint8_t>().data());
    TrimScratch();
    if (sub_image.capacity() > (size_t{8} << 20)) std::vector<uint8_t>().swap(sub_image);
  }

 private:
  int size_;
};

// libjpeg destination that appends to a vector.
struct VectorDestination {
  jpeg_destination_mgr pub;
  std::vector<uint8_t>* out;
};

void StartVector(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<VectorDestination*>(cinfo->dest);
  d->out->resize(1 << 16);
  d->pub.next_output_byte = d->out->data(), d->pub.free_in_buffer = d->out->size();
}

boolean GrowVector(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<VectorDestination*>(cinfo->dest);
  const size_t used = d->out->size();
  d->out->resize(2 * used);
  d->pub.next_output_byte = d->out->data() + used, d->pub.free_in_buffer = d->out->size() - used;
  return TRUE;
}

void EndVector(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<VectorDestination*>(cinfo->dest);
  d->out->resize(d->out->size() - d->pub.free_in_buffer);
}

// Rewrites a JPEG with a restart marker after every MCU, losslessly: the DCT coefficients, quantisation tables and
// sampling are copied and only the entropy coding is redone (with optimised Huffman tables). "" or why not.
std::string RestartEveryMcu(const uint8_t* data, size_t size, std::vector<uint8_t>* out) {
  jpeg_decompress_struct source;
  jpeg_compress_struct target;
  JpegErrors errors;
  VectorDestination destination;
  source.err = target.err = jpeg_std_error(&errors.pub);
  errors.pub.error_exit = ExitOnError;
  errors.pub.emit_message = OnMessage;
  bool target_created = false;
  if (setjmp(errors.jump)) {
    if (target_created) jpeg_destroy_compress(&target);
    jpeg_destroy_decompress(&source);
    return std::string("unreadable JPEG: ") + errors.message;
  }
  jpeg_create_decompress(&source);
  jpeg_mem_src(&source, data, size);
  jpeg_read_header(&source, TRUE);
  const char* why_not = source.progressive_mode ? "progressive"
                        : source.arith_code     ? "arithmetic coded"
                        : (source.jpeg_color_space == JCS_CMYK || source.jpeg_color_space == JCS_YCCK) ? "CMYK"
                        : (source.num_components != 1 && source.num_components != 3) ? "not 1 or 3 components"
                                                                                      : nullptr;
  if (why_not != nullptr) {
    jpeg_destroy_decompress(&source);
    return why_not;
  }
  jvirt_barray_ptr* coefficients = jpeg_read_coefficients(&source);
  if (errors.truncated) {
    jpeg_destroy_decompress(&source);
    return "truncated";
  }
  jpeg_create_compress(&target);
  target_created = true;
  destination.out = out;
  destination.pub.init_destination = StartVector;
  destination.pub.empty_output_buffer = GrowVector;
  destination.pub.term_destination = EndVector;
  target.dest = &destination.pub;
  jpeg_copy_critical_parameters(&source, &target);
  target.restart_interval = 1;
  target.optimize_coding = TRUE;
  jpeg_write_coefficients(&target, coefficients);
  jpeg_finish_compress(&target);
  jpeg_destroy_compress(&target);
  jpeg_finish_decompress(&source);
  jpeg_destroy_decompress(&source);
  return "";
}

// Both decode to the same pixels (the settings of tf.io.decode_jpeg's defaults, as the train pipeline decodes).
bool SamePixels(const uint8_t* a, size_t a_size, const uint8_t* b, size_t b_size) {
  std::vector<uint8_t> first;
  Pixels pixels;
  for (int pass = 0; pass < 2; ++pass) {
    jpeg_decompress_struct cinfo;
    JpegErrors errors;
    cinfo.err = jpeg_std_error(&errors.pub);
    errors.pub.error_exit = ExitOnError;
    if (setjmp(errors.jump)) {
      jpeg_destroy_decompress(&cinfo);
      return false;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, pass ? b : a, pass ? b_size : a_size);
    jpeg_read_header(&cinfo, TRUE);
    const Window all{0, 0, static_cast<int>(cinfo.image_height), static_cast<int>(cinfo.image_width)};
    jpeg_destroy_decompress(&cinfo);
    if (!DecodeWindow(pass ? b : a, pass ? b_size : a_size, all, &pixels).empty()) return false;
    std::vector<uint8_t> rows;
    for (int r = 0; r < pixels.height; ++r) {
      const uint8_t* row = pixels.pixels + r * pixels.stride;
      rows.insert(rows.end(), row, row + size_t(pixels.width) * 3);
    }
    TrimScratch();
    if (pass == 0) first.swap(rows);
    else return first == rows;
  }
  return false;
}

class JpegRestartEveryMcuOp : public tensorflow::OpKernel {
 public:
  explicit JpegRestartEveryMcuOp(tensorflow::OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(tensorflow::OpKernelContext* context) override {
    const tensorflow::Tensor& contents = context->input(0);
    OP_REQUIRES(context, tensorflow::TensorShapeUtils::IsScalar(contents.shape()),
                InvalidArgument("contents must be a scalar string, got shape ", contents.shape().DebugString()));
    const tensorflow::tstring& jpeg = contents.scalar<tensorflow::tstring>()();
    const uint8_t* data = reinterpret_cast<const uint8_t*>(jpeg.data());
    tensorflow::Tensor* output = nullptr;
    tensorflow::Tensor* rewritten = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, {}, &output));
    OP_REQUIRES_OK(context, context->allocate_output(1, {}, &rewritten));
    jpeg_sub_image::Layout layout;
    std::vector<uint8_t> bytes;
    if (jpeg_sub_image::Parse(data, jpeg.size(), &layout)) {  // already in this layout
      output->scalar<tensorflow::tstring>()() = jpeg;
      rewritten->scalar<bool>()() = true;
      return;
    }
    // Kept as it is unless the rewrite decodes to exactly the original's pixels.
    const bool ok = RestartEveryMcu(data, jpeg.size(), &bytes).empty() &&
                    jpeg_sub_image::Parse(bytes.data(), bytes.size(), &layout) &&
                    SamePixels(data, jpeg.size(), bytes.data(), bytes.size());
    output->scalar<tensorflow::tstring>()() =
        ok ? tensorflow::tstring(reinterpret_cast<const char*>(bytes.data()), bytes.size()) : jpeg;
    rewritten->scalar<bool>()() = ok;
  }
};

// The cut the fused op decodes, for inspection and tests: the smaller JPEG and the window's place in it, or the
// input and window unchanged (cut = false) when the image has no restart marker per MCU or a cut saves little.
class JpegCutAroundOp : public tensorflow::OpKernel {
 public:
  explicit JpegCutAroundOp(tensorflow::OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(tensorflow::OpKernelContext* context) override {
    const tensorflow::tstring& jpeg = context->input(0).scalar<tensorflow::tstring>()();
    const auto w = context->input(1).flat<int32_t>();
    OP_REQUIRES(context, w.size() == 4, InvalidArgument("crop_window must hold 4 values (y, x, height, width)"));
    const Window window{w(0), w(1), w(2), w(3)};
    jpeg_sub_image::Layout layout;
    std::vector<uint8_t> sub_image;
    Window cut = window;
    const bool was_cut =
        CutAround(reinterpret_cast<const uint8_t*>(jpeg.data()), jpeg.size(), window, &layout, &sub_image, &cut);
    tensorflow::Tensor *contents = nullptr, *cut_window = nullptr, *cut_flag = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, {}, &contents));
    OP_REQUIRES_OK(context, context->allocate_output(1, {4}, &cut_window));
    OP_REQUIRES_OK(context, context->allocate_output(2, {}, &cut_flag));
    contents->scalar<tensorflow::tstring>()() =
        was_cut ? tensorflow::tstring(reinterpret_cast<const char*>(sub_image.data()), sub_image.size()) : jpeg;
    auto out = cut_window->flat<int32_t>();
    out(0) = cut.y, out(1) = cut.x, out(2) = cut.height, out(3) = cut.width;
    cut_flag->scalar<bool>()() = was_cut;
  }
};

}  // namespace

REGISTER_OP("TfGp2bmDecodeCropFlipResizeJpeg")
    .Input("contents: string")
    .Input("crop_window: int32")
    .Input("flip: bool")
    .Attr("size: int")
    .Output("image: uint8")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      int size;
      TF_RETURN_IF_ERROR(c->GetAttr("size", &size));
      c->set_output(0, c->MakeShape({size, size, 3}));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("TfGp2bmDecodeCropFlipResizeJpeg").Device(tensorflow::DEVICE_CPU),
                        DecodeCropFlipResizeJpegOp);

REGISTER_OP("TfGp2bmJpegRestartEveryMcu")
    .Input("contents: string")
    .Output("rewritten_contents: string")
    .Output("rewritten: bool")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Scalar());
      c->set_output(1, c->Scalar());
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("TfGp2bmJpegRestartEveryMcu").Device(tensorflow::DEVICE_CPU), JpegRestartEveryMcuOp);

REGISTER_OP("TfGp2bmJpegCutAround")
    .Input("contents: string")
    .Input("crop_window: int32")
    .Output("cut_contents: string")
    .Output("cut_window: int32")
    .Output("cut: bool")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Scalar());
      c->set_output(1, c->Vector(4));
      c->set_output(2, c->Scalar());
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("TfGp2bmJpegCutAround").Device(tensorflow::DEVICE_CPU), JpegCutAroundOp);
