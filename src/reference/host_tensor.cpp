// Dtype conversion, indexing and layout helpers shared by the reference kernels.
#include <cmath>
#include <limits>

#include "kernels.h"

namespace kiln::reference {

std::vector<int64_t> KernelContext::out_dims(size_t i) const {
  const ir::Shape& s = outputs.at(i).shape;
  if (!ir::shape_is_constant(s))
    fail(ErrorCode::kInternal, where(), ": output ", i, " shape ", ir::shape_to_string(s), " is not concrete");
  return ir::shape_constants(s);
}

std::vector<double> to_doubles(const Tensor& t) { return ir::read_doubles(t); }
std::vector<int64_t> to_ints(const Tensor& t) { return ir::read_ints(t); }

namespace {

// Float -> integer conversion without undefined behaviour: truncate toward zero, saturate, NaN -> 0.
template <class T>
T float_to_int(double v) {
  if (std::isnan(v)) return T(0);
  double t = std::trunc(v);
  if (t <= double(std::numeric_limits<T>::min())) return std::numeric_limits<T>::min();
  if (t >= double(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return T(t);
}

// Narrow floats saturate (Cast's default); narrow integers keep the low bits
// of the truncated value (0 for NaN and infinities), as ONNX's reference (ml_dtypes) converts.
template <DType D>
void store_double(NarrowFloat<D>* out, double v) {
  out->bits = narrow_float_from_double(D, v, true);
}
template <DType D>
void store_double(NarrowInteger<D>* out, double v) {
  out->value = std::isfinite(v) ? narrow_integer_wrap(D, float_to_int<int64_t>(v)) : 0;
}

template <class T>
void store_double(T* out, double v) {
  if constexpr (std::is_same_v<T, Float16>) out->bits = float_to_half(float(v));
  else if constexpr (std::is_same_v<T, BFloat16>) out->bits = float_to_bfloat16(float(v));
  else if constexpr (std::is_same_v<T, bool>) *out = v != 0;
  else if constexpr (std::is_floating_point_v<T>) *out = T(v);
  else *out = float_to_int<T>(v);
}

}  // namespace

Tensor from_doubles(DType dtype, std::vector<int64_t> dims, const std::vector<double>& values) {
  size_t n = size_t(ir::checked_numel(dims));
  if (values.size() != n) fail(ErrorCode::kInternal, "from_doubles: ", values.size(), " values for ", n, " elements");
  std::vector<std::byte> bytes(n * dtype_size(dtype));
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* out = reinterpret_cast<T*>(bytes.data());
    for (size_t i = 0; i < n; ++i) store_double(out + i, values[i]);
  });
  Tensor t;
  t.dtype = dtype;
  t.dims = std::move(dims);
  t.data = Buffer::from_bytes(std::move(bytes));
  return t;
}

Tensor from_ints(DType dtype, std::vector<int64_t> dims, const std::vector<int64_t>& values) {
  if (is_floating(dtype) || is_narrow_float(dtype)) return from_doubles(dtype, std::move(dims), std::vector<double>(values.begin(), values.end()));
  size_t n = size_t(ir::checked_numel(dims));
  if (values.size() != n) fail(ErrorCode::kInternal, "from_ints: ", values.size(), " values for ", n, " elements");
  std::vector<std::byte> bytes(n * dtype_size(dtype));
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* out = reinterpret_cast<T*>(bytes.data());
    if constexpr (std::is_integral_v<T>) {
      for (size_t i = 0; i < n; ++i) out[i] = std::is_same_v<T, bool> ? T(values[i] != 0) : T(values[i]);  // wraps like C
    } else if constexpr (requires { out->value; }) {
      for (size_t i = 0; i < n; ++i) out[i].value = narrow_integer_wrap(dtype, values[i]);
    }
  });
  Tensor t;
  t.dtype = dtype;
  t.dims = std::move(dims);
  t.data = Buffer::from_bytes(std::move(bytes));
  return t;
}

double rounded_to(DType dtype, double v) {
  switch (dtype) {
    case DType::kFloat32: return double(float(v));
    case DType::kFloat16: return half_to_float(float_to_half(float(v)));
    case DType::kBFloat16: return bfloat16_to_float(float_to_bfloat16(float(v)));
    default: return v;
  }
}

Tensor make_tensor(DType dtype, std::vector<int64_t> dims, const std::vector<double>& values) {
  return from_doubles(dtype, std::move(dims), values);
}

Tensor make_string_tensor(std::vector<int64_t> dims, std::vector<std::string> values) {
  Tensor t;
  t.dtype = DType::kString;
  t.dims = std::move(dims);
  t.strings = std::move(values);
  return t;
}

Tensor with_dims(const Tensor& t, std::vector<int64_t> dims) {
  Tensor out = t;
  out.dims = std::move(dims);
  return out;
}

double scalar_double(const Tensor& t) {
  if (t.numel() != 1) fail(ErrorCode::kShapeError, "expected a single value, got ", t.numel(), " elements");
  return to_doubles(t)[0];
}

int64_t normalize_axis(const KernelContext& c, int64_t axis, size_t rank) {
  int64_t r = int64_t(rank);
  if (axis < -r || axis >= r) c.error(ErrorCode::kInvalidModel, "axis ", axis, " is out of range for rank ", r);
  return axis < 0 ? axis + r : axis;
}

std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& in_dims, const std::vector<int64_t>& out_dims) {
  std::vector<int64_t> in_strides = strides_of(in_dims), out(out_dims.size(), 0);
  size_t offset = out_dims.size() - in_dims.size();
  for (size_t i = 0; i < in_dims.size(); ++i) out[offset + i] = in_dims[i] == 1 ? 0 : in_strides[i];
  return out;
}

Tensor run_channels_last(const KernelContext& c, Tensor (*channels_first)(const KernelContext&)) {
  size_t rank = c.in(0).dims.size();
  std::vector<int64_t> to_first = ir::to_channels_first_perm(rank);
  std::vector<Tensor> permuted_inputs;
  permuted_inputs.reserve(c.inputs.size());
  KernelContext first{c.node, c.inputs, c.outputs};
  for (size_t i = 0; i < c.inputs.size(); ++i)
    if (c.has(i) && c.in(i).dims.size() == rank) first.inputs[i] = &permuted_inputs.emplace_back(permute(c.in(i), to_first));
  first.outputs.resize(1);
  first.outputs[0].shape = ir::permuted(c.outputs.at(0).shape, to_first);
  return permute(channels_first(first), ir::to_channels_last_perm(rank));
}

}  // namespace kiln::reference
