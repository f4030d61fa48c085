// The normalization family: batch, instance, layer and group normalization,
// local response normalization (over channels), Lp normalization and the
// softmax ops (normalizations over one axis).
#include "family.h"

namespace kiln::ir {

namespace {

void infer_norm(Ctx& c, OpKind op) {
  c.require_float(0);
  const Shape& x = c.shape(0);
  if (op == OpKind::kLayerNormalization) {
    int64_t axis = c.axis(c.attrs().get_int("axis", -1), int64_t(x.size()));
    Shape normalized(x.begin() + axis, x.end());
    for (size_t i = 1; i < 3; ++i)
      if (c.has(i)) c.require_broadcasts_to(i, normalized, "the normalized dims");
    Shape stat(x.begin(), x.begin() + axis);
    stat.resize(x.size(), Dim(1));
    c.set(0, c.dtype(0), x);
    c.set(1, DType::kFloat32, stat);
    c.set(2, DType::kFloat32, stat);
    return;
  }
  c.require_rank(0, 2);
  if (op == OpKind::kGroupNormalization) {
    int64_t groups = c.attrs().get_int("num_groups", 0);
    if (groups < 1) c.error(ErrorCode::kInvalidModel, "num_groups must be >= 1");
    if (x[1].is_constant() && x[1].constant() % groups != 0)
      c.error(ErrorCode::kShapeError, "channels ", x[1].constant(), " not divisible by num_groups ", groups);
  }
  // Scale, bias (and BatchNormalization's mean and variance): one value per channel.
  for (size_t i = 1; i < c.num_inputs(); ++i) {
    c.require_rank(i, 1, 1);
    if (c.shape(i)[0].is_constant() && x[1].is_constant() && c.shape(i)[0] != x[1])
      c.error(ErrorCode::kShapeError, c.input_name(i), " has ", c.shape(i)[0].constant(), " values for ",
              x[1].constant(), " channels");
  }
  c.set(0, c.dtype(0), x);
}

}  // namespace

OpSchema normalization_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kBatchNormalization: return {5, 5, 1, 1, {{"epsilon", T::kFloat}, {"momentum", T::kFloat}}};
    case OpKind::kInstanceNormalization: return {3, 3, 1, 1, {{"epsilon", T::kFloat}}};
    case OpKind::kLayerNormalization:
      return {2, 3, 1, 3, {{"axis", T::kInt}, {"epsilon", T::kFloat}, {"stash_type", T::kInt}}};
    case OpKind::kGroupNormalization:
      return {3, 3, 1, 1, {{"epsilon", T::kFloat}, {"num_groups", T::kInt}, {"stash_type", T::kInt}}};
    case OpKind::kSoftmax:
    case OpKind::kLogSoftmax:
    case OpKind::kHardmax: return {1, 1, 1, 1, {{"axis", T::kInt}}};
    case OpKind::kLRN: return {1, 1, 1, 1, {{"alpha", T::kFloat}, {"beta", T::kFloat}, {"bias", T::kFloat}, {"size", T::kInt}}};
    case OpKind::kLpNormalization: return {1, 1, 1, 1, {{"axis", T::kInt}, {"p", T::kInt}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_normalization(Ctx& c) {
  const Node& node = c.node();
  switch (node.op) {
    case OpKind::kBatchNormalization: case OpKind::kInstanceNormalization: case OpKind::kLayerNormalization:
    case OpKind::kGroupNormalization:
      infer_norm(c, node.op);
      break;
    case OpKind::kSoftmax: case OpKind::kLogSoftmax: case OpKind::kHardmax:  // as a float unary op, over a valid axis
      c.require_float(0);
      c.set(0, c.dtype(0), c.shape(0));
      c.axis(node.attrs.get_int("axis", -1), c.rank(0));
      break;
    case OpKind::kLpNormalization: {  // x / ||x||_p along the axis; ONNX defines p 1 and 2
      c.require_float(0);
      c.axis(node.attrs.get_int("axis", -1), c.rank(0));
      int64_t p = node.attrs.get_int("p", 2);
      if (p != 1 && p != 2) c.error(ErrorCode::kInvalidModel, "p ", p, " is not 1 or 2");
      c.set(0, c.dtype(0), c.shape(0));
      break;
    }
    case OpKind::kLRN:  // over a window of channels: N, C and at least that
      c.require_float(0);
      c.require_rank(0, 2);
      if (!node.attrs.has("size")) c.error(ErrorCode::kInvalidModel, "attribute 'size' is required");
      if (int64_t size = node.attrs.get_int("size", 0); size < 1)
        c.error(ErrorCode::kInvalidModel, "size ", size, " must be >= 1");
      c.set(0, c.dtype(0), c.shape(0));
      break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir
