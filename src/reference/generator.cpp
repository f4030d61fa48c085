// The generator family: outputs made from shapes and scalar inputs (Shape,
// Size, ConstantOfShape, Range, OneHot, EyeLike).
#include "kernels.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

// Shape and Size: shape inference knows the contents.
Tensor run_shape(const KernelContext& c) {
  std::vector<int64_t> v;
  for (auto& d : *c.outputs[0].known) v.push_back(d.constant());
  return from_ints(DType::kInt64, c.out_dims(0), v);
}

Tensor run_constant_of_shape(const KernelContext& c) {
  const ir::TensorData* value = c.attrs().get_tensor("value");
  double v = value ? to_doubles(*value)[0] : 0.0;
  std::vector<int64_t> dims = c.out_dims(0);
  if (value && !is_floating(value->dtype))
    return from_ints(value->dtype, dims, std::vector<int64_t>(size_t(ir::checked_numel(dims)), to_ints(*value)[0]));
  return from_doubles(c.out_dtype(0), dims, std::vector<double>(size_t(ir::checked_numel(dims)), v));
}

Tensor run_onehot(const KernelContext& c) {
  std::vector<double> idx = to_doubles(c.in(0)), values = to_doubles(c.in(2));
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t axis = normalize_axis(c, c.attrs().get_int("axis", -1), dims.size());
  int64_t depth = dims[size_t(axis)];
  int64_t inner = ir::checked_numel({dims.begin() + axis + 1, dims.end()});
  std::vector<double> out(size_t(ir::checked_numel(dims)), values[0]);
  for (size_t i = 0; i < idx.size(); ++i) {
    int64_t v = int64_t(idx[i]);
    if (v < 0) v += depth;
    if (v < 0 || v >= depth) continue;  // out-of-range indices give an all-off row
    int64_t o = int64_t(i) / inner, in = int64_t(i) % inner;
    out[size_t((o * depth + v) * inner + in)] = values[1];
  }
  return from_doubles(c.out_dtype(0), dims, out);
}

Tensor run_range(const KernelContext& c) {
  DType dt = c.in(0).dtype;
  double start = scalar_double(c.in(0)), delta = scalar_double(c.in(2));
  if (delta == 0) c.error(ErrorCode::kInvalidModel, "delta is zero");
  int64_t n = c.out_dims(0).at(0);
  if (!is_floating(dt)) {
    int64_t s = to_ints(c.in(0))[0], d = to_ints(c.in(2))[0];
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = s + i * d;
    return from_ints(dt, {n}, v);
  }
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = start + double(i) * delta;
  return from_doubles(dt, {n}, v);
}

// EyeLike: ones where column - row == k.
Tensor run_eye_like(const KernelContext& c) {
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t k = c.attrs().get_int("k", 0);
  std::vector<int64_t> out(size_t(ir::checked_numel(dims)), 0);
  for (int64_t r = 0; r < dims[0]; ++r)
    if (r + k >= 0 && r + k < dims[1]) out[size_t(r * dims[1] + r + k)] = 1;
  return from_ints(c.out_dtype(0), dims, out);
}

}  // namespace

Kernel generator_kernel(OpKind op) {
  switch (op) {
    case OpKind::kShape: case OpKind::kSize: return one_output<run_shape>;
    case OpKind::kConstantOfShape: return one_output<run_constant_of_shape>;
    case OpKind::kRange: return one_output<run_range>;
    case OpKind::kOneHot: return one_output<run_onehot>;
    case OpKind::kEyeLike: return one_output<run_eye_like>;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
