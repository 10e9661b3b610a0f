// A worked vendor custom op: the BERT reference's tanh GELU as a TensorFlow op with a CPU kernel and a gradient op.
//   Gp2bmGelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//   Gp2bmGeluGrad(dy, x) = dy * d/dx Gp2bmGelu(x)
// Built against the installed TensorFlow headers (examples/custom_op/build.py); the Python side registers the
// gradient and the `gelu` hot spot. There is no XLA kernel, so a jit_compile step cannot contain this op
// (docs/vendor_kernels.md explains what to do about that).
#include <cmath>

#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

using namespace tensorflow;  // NOLINT

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

float Gelu(float x) { return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + kCubic * x * x * x))); }

float GeluDerivative(float x) {
  const float t = std::tanh(kSqrt2OverPi * (x + kCubic * x * x * x));
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
}

// Element types are widened to float for the math and rounded back once (bfloat16 and half included).
template <typename T>
class GeluOp : public OpKernel {
 public:
  explicit GeluOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &y));
    auto in = x.flat<T>();
    auto out = y->flat<T>();
    for (int64_t i = 0; i < in.size(); ++i) out(i) = static_cast<T>(Gelu(static_cast<float>(in(i))));
  }
};

template <typename T>
class GeluGradOp : public OpKernel {
 public:
  explicit GeluGradOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& dy = context->input(0);
    const Tensor& x = context->input(1);
    OP_REQUIRES(context, dy.shape() == x.shape(),
                absl::InvalidArgumentError("Gp2bmGeluGrad: dy " + dy.shape().DebugString() + " and x " +
                                           x.shape().DebugString() + " differ"));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &dx));
    auto g = dy.flat<T>();
    auto in = x.flat<T>();
    auto out = dx->flat<T>();
    for (int64_t i = 0; i < in.size(); ++i) {
      out(i) = static_cast<T>(static_cast<float>(g(i)) * GeluDerivative(static_cast<float>(in(i))));
    }
  }
};

}  // namespace

REGISTER_OP("Gp2bmGelu")
    .Input("x: T")
    .Output("y: T")
    .Attr("T: {float, bfloat16, half}")
    .SetShapeFn(shape_inference::UnchangedShape);

REGISTER_OP("Gp2bmGeluGrad")
    .Input("dy: T")
    .Input("x: T")
    .Output("dx: T")
    .Attr("T: {float, bfloat16, half}")
    .SetShapeFn(shape_inference::UnchangedShape);

#define REGISTER_CPU(T)                                                                    \
  REGISTER_KERNEL_BUILDER(Name("Gp2bmGelu").Device(DEVICE_CPU).TypeConstraint<T>("T"), GeluOp<T>); \
  REGISTER_KERNEL_BUILDER(Name("Gp2bmGeluGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"), GeluGradOp<T>);

REGISTER_CPU(float)
REGISTER_CPU(bfloat16)
REGISTER_CPU(Eigen::half)
