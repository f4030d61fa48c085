// The pool family: MaxPool, AveragePool, LpPool, the global pools, MaxUnpool
// and the builder's MaxPoolChannelsLast (window geometry: window.cpp).
#include "kiln/ir/window.h"
#include "family.h"

namespace kiln::ir {

namespace {

void infer_pool_op(Ctx& c) {
  bool channels_last = c.node().op == OpKind::kMaxPoolChannelsLast;
  if (c.node().op == OpKind::kAveragePool || c.node().op == OpKind::kLpPool) c.require_float(0);
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

// LpPool's and GlobalLpPool's p: the exponent of the norm, a positive integer.
void check_p(const Ctx& c) {
  if (int64_t p = c.attrs().get_int("p", 2); p < 1) c.error(ErrorCode::kInvalidModel, "p ", p, " must be >= 1");
}

// MaxUnpool: X's values scattered to the flat positions I names in a tensor of
// the pooling's input size, [N, C, (in - 1) * stride - pads + kernel]; an
// output_shape input, at least that large, places it at the origin of a
// larger zero tensor (as ONNX's reference implementation does).
void infer_max_unpool(Ctx& c) {
  c.require_float(0);
  c.require_rank(0, 3);
  c.require_dtype(1, {DType::kInt64});
  const Shape& x = c.shape(0);
  const Shape& idx = c.shape(1);
  bool same = idx.size() == x.size();
  for (size_t d = 0; same && d < x.size(); ++d) same = !(x[d].is_constant() && idx[d].is_constant() && x[d] != idx[d]);
  if (!same) c.error(ErrorCode::kShapeError, "indices ", shape_to_string(idx), " must have X's shape ", shape_to_string(x));
  size_t n = x.size() - 2;
  auto kernel = c.attrs().get_ints("kernel_shape");
  auto strides = c.attrs().get_ints("strides", std::vector<int64_t>(n, 1));
  auto pads = c.attrs().get_ints("pads", std::vector<int64_t>(2 * n, 0));
  if (kernel.size() != n || strides.size() != n || pads.size() != 2 * n)
    c.error(ErrorCode::kInvalidModel, "kernel_shape/strides/pads do not fit ", n, " spatial dims");
  Shape out{x[0], x[1]};
  for (size_t i = 0; i < n; ++i) {
    if (kernel[i] < 1 || strides[i] < 1 || pads[i] < 0 || pads[n + i] < 0)
      c.error(ErrorCode::kInvalidModel, "kernel sizes and strides must be positive, pads non-negative");
    Dim d = (x[i + 2] - 1) * strides[i] + (kernel[i] - pads[i] - pads[n + i]);
    if (d.is_constant() && d.constant() < 1)
      c.error(ErrorCode::kShapeError, "spatial dim ", i, " of size ", x[i + 2].to_string(), " unpools to size ", d.constant());
    out.push_back(d);
  }
  if (c.has(2)) {
    c.require_rank(2, 1, 1);
    auto given = c.ints(2);
    if (!given) return c.set(0, c.dtype(0), c.fresh_shape(c.shape(2)[0], "output_shape"));
    if (given->size() != out.size())
      c.error(ErrorCode::kShapeError, "output_shape has ", given->size(), " dims; X has ", out.size());
    for (size_t d = 0; d < out.size(); ++d)
      if ((*given)[d].is_constant() && out[d].is_constant() && (*given)[d].constant() < out[d].constant())
        c.error(ErrorCode::kShapeError, "output_shape ", shape_to_string(Shape(given->begin(), given->end())),
                " is smaller than the unpooled size ", shape_to_string(out));
    out.assign(given->begin(), given->end());
  }
  c.set(0, c.dtype(0), out);
}

}  // namespace

OpSchema pool_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool:
      return OpSchema{};  // one input, one output, no attributes
    case OpKind::kGlobalLpPool: return {1, 1, 1, 1, {{"p", T::kInt}}};
    case OpKind::kLpPool:
      return {1, 1, 1, 1,
              {{"auto_pad", T::kString}, {"ceil_mode", T::kInt}, {"dilations", T::kInts}, {"kernel_shape", T::kInts},
               {"p", T::kInt}, {"pads", T::kInts}, {"strides", T::kInts}}};
    case OpKind::kMaxUnpool: return {2, 3, 1, 1, {{"kernel_shape", T::kInts}, {"pads", T::kInts}, {"strides", T::kInts}}};
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
    case OpKind::kLpPool:
      check_p(c);
      infer_pool_op(c);
      break;
    case OpKind::kMaxUnpool: infer_max_unpool(c); break;
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: case OpKind::kGlobalLpPool: {
      if (c.node().op == OpKind::kGlobalLpPool) check_p(c);
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
