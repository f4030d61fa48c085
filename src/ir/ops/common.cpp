// What the op families share: broadcasting, reading constant tensors, and
// the messages for an op kind a family file has no case for.
#include "family.h"

namespace kiln::ir {

namespace {

template <class T>
std::vector<int64_t> ints_of(const TensorData& d) {
  std::vector<int64_t> out(size_t(d.numel()));
  const T* p = d.data.as<T>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = int64_t(p[i]);
  return out;
}

}  // namespace

std::string family_file(OpKind op) { return str("src/ir/ops/", family_name(family_of(op)), ".cpp"); }

void no_inference(const Ctx& c) {
  c.error(ErrorCode::kInternal, "kiln has no shape inference for this op (", family_file(c.node().op), ")");
}

std::optional<Dim> scalar_size(const Ctx& c, size_t i, const char* what) {
  c.require_dtype(i, {DType::kInt32, DType::kInt64});
  c.require_scalar(i);
  auto v = c.ints(i);
  if (!v) return std::nullopt;
  const Dim& d = v->at(0);
  if (d.is_constant() && d.constant() < 0) c.error(ErrorCode::kInvalidModel, what, " is ", d.constant(), "; it must not be negative");
  return d;
}

void check_equal_dims(const Ctx& c, const Dim& a, const Dim& b, const char* what) {
  if (a.is_constant() && b.is_constant() && a != b)
    c.error(ErrorCode::kShapeError, what, " do not match: ", a.to_string(), " vs ", b.to_string());
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const Dim* x = i < r - a.size() ? nullptr : &a[i - (r - a.size())];
    const Dim* y = i < r - b.size() ? nullptr : &b[i - (r - b.size())];
    if (!x) out[i] = *y;
    else if (!y) out[i] = *x;
    else if (*x == *y || *y == Dim(1)) out[i] = *x;
    else if (*x == Dim(1)) out[i] = *y;
    else if (x->is_constant() && y->is_constant())
      fail(ErrorCode::kShapeError, "shapes ", shape_to_string(a), " and ", shape_to_string(b), " do not broadcast");
    else if (x->is_constant()) out[i] = *x;  // a symbol broadcast against a constant must equal it
    else if (y->is_constant()) out[i] = *y;
    else out[i] = dim_max(*x, *y);
  }
  return out;
}

std::vector<int64_t> read_ints(const TensorData& d) {
  switch (d.dtype) {
    case DType::kInt64: return ints_of<int64_t>(d);
    case DType::kInt32: return ints_of<int32_t>(d);
    case DType::kInt8: return ints_of<int8_t>(d);
    case DType::kUInt8: return ints_of<uint8_t>(d);
    case DType::kInt16: return ints_of<int16_t>(d);
    case DType::kUInt16: return ints_of<uint16_t>(d);
    case DType::kUInt32: return ints_of<uint32_t>(d);
    case DType::kUInt64: return ints_of<uint64_t>(d);  // values of 2^63 and more keep their bits (two's complement)
    case DType::kBool: return ints_of<bool>(d);
    case DType::kUInt4: case DType::kInt4: case DType::kUInt2: case DType::kInt2: return ints_of<int8_t>(d);  // one value a byte
    default: fail(ErrorCode::kTypeError, "expected integer data, got ", dtype_name(d.dtype));
  }
}

std::vector<double> read_doubles(const TensorData& d) {
  std::vector<double> out(size_t(d.numel()));
  visit_dtype(d.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* p = d.data.as<T>();
    for (size_t i = 0; i < out.size(); ++i) {
      if constexpr (std::is_same_v<T, Float16>) out[i] = half_to_float(p[i].bits);
      else if constexpr (std::is_same_v<T, BFloat16>) out[i] = bfloat16_to_float(p[i].bits);
      else if constexpr (requires { p[i].bits; }) out[i] = narrow_float_to_double(d.dtype, p[i].bits);
      else if constexpr (requires { p[i].value; }) out[i] = double(p[i].value);
      else out[i] = double(p[i]);
    }
  });
  return out;
}

}  // namespace kiln::ir
