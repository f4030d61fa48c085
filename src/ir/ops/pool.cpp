// The pool family: MaxPool, AveragePool, the global pools and the builder's
// MaxPoolChannelsLast (window geometry: window.cpp).
#include "kiln/ir/window.h"
#include "family.h"

namespace kiln::ir {

namespace {

void infer_pool_op(Ctx& c) {
  bool channels_last = c.node().op == OpKind::kMaxPoolChannelsLast;
  if (c.node().op == OpKind::kAveragePool) c.require_float(0);
  c.require_dtype(0, {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt8, DType::kUInt8});
  c.require_rank(0, 3);
  Shape x = c.shape(0);
  if (channels_last) x = permuted(x, to_channels_first_perm(x.size()));
  auto kernel = c.attrs().get_ints("kernel_shape");
  if (kernel.size() != x.size() - 2)
    c.error(ErrorCode::kInvalidModel, "kernel_shape has ", kernel.size(), " dims; input has ", x.size() - 2,
            " spatial dims");
  WindowDims wd = window_dims(c, Shape(x.begin() + 2, x.end()), kernel, false);
  Shape out{x[0], x[1]};
  out.insert(out.end(), wd.output.begin(), wd.output.end());
  if (channels_last) {
    c.set(0, c.dtype(0), permuted(out, to_channels_last_perm(out.size())));
    return;
  }
  c.set(0, c.dtype(0), out);
  c.set(1, DType::kInt64, out);
}

}  // namespace

OpSchema pool_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool:
      return OpSchema{};  // one input, one output, no attributes
    case OpKind::kMaxPool:
      return {1, 1, 1, 2,
              {{"auto_pad", T::kString}, {"ceil_mode", T::kInt}, {"dilations", T::kInts}, {"kernel_shape", T::kInts},
               {"pads", T::kInts}, {"storage_order", T::kInt}, {"strides", T::kInts}}};
    case OpKind::kMaxPoolChannelsLast:  // MaxPool on [N, spatial..., C], no Indices output
      return {1, 1, 1, 1,
              {{"auto_pad", T::kString}, {"ceil_mode", T::kInt}, {"dilations", T::kInts}, {"kernel_shape", T::kInts},
               {"pads", T::kInts}, {"strides", T::kInts}}};
    case OpKind::kAveragePool:
      return {1, 1, 1, 1,
              {{"auto_pad", T::kString}, {"ceil_mode", T::kInt}, {"count_include_pad", T::kInt},
               {"dilations", T::kInts}, {"kernel_shape", T::kInts}, {"pads", T::kInts}, {"strides", T::kInts}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_pool(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kMaxPool: case OpKind::kAveragePool: case OpKind::kMaxPoolChannelsLast: infer_pool_op(c); break;
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: {
      c.require_float(0);
      c.require_rank(0, 3);
      Shape out = c.shape(0);
      for (size_t i = 2; i < out.size(); ++i) out[i] = Dim(1);
      c.set(0, c.dtype(0), out);
      break;
    }
    default: no_inference(c);
  }
}

}  // namespace kiln::ir
