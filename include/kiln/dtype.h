// Element types kiln understands, with sizes, names and half-precision conversions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "kiln/export.h"

KILN_API_BEGIN
namespace kiln {

// The codes are stored in plans and in dtype attributes: a new type goes at the end.
// kString is a tensor of UTF-8 strings: its elements live on the host only
// (TensorData::strings), so it has no element size and no GPU storage.
enum class DType : uint8_t {
  kFloat32, kFloat16, kBFloat16, kFloat64, kInt64, kInt32, kInt8, kUInt8, kBool, kInt16, kUInt16, kUInt32, kUInt64,
  kString
};

// The types of fixed-size elements, in code order (a code indexes it); kString follows them.
inline constexpr DType kAllDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt64,
                                       DType::kInt32,   DType::kInt8,    DType::kUInt8,    DType::kBool,    DType::kInt16,
                                       DType::kUInt16,  DType::kUInt32,  DType::kUInt64};

// Bytes of one element; kString has no fixed size: a kUnsupported kiln::Error.
size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);  // "float32", "int64", ..., "string"
std::optional<DType> parse_dtype(std::string_view name);
// The dtype a stored code (plans, dtype attributes) stands for; nullopt for a code no type has.
std::optional<DType> dtype_from_code(int64_t code);
inline bool is_string(DType d) { return d == DType::kString; }
// Throws the kUnsupported kiln::Error of code that reads `dtype`'s elements as numbers (a string tensor).
[[noreturn]] void fail_not_numeric(DType dtype);
inline bool is_floating(DType d) {
  return d == DType::kFloat32 || d == DType::kFloat16 || d == DType::kBFloat16 || d == DType::kFloat64;
}
inline bool is_unsigned_integer(DType d) {
  return d == DType::kUInt8 || d == DType::kUInt16 || d == DType::kUInt32 || d == DType::kUInt64;
}
inline bool is_integer(DType d) {
  return d == DType::kInt64 || d == DType::kInt32 || d == DType::kInt16 || d == DType::kInt8 || is_unsigned_integer(d);
}

// IEEE binary16 and bfloat16 stored as raw bits; arithmetic happens after widening.
struct Float16 {
  uint16_t bits = 0;
};
struct BFloat16 {
  uint16_t bits = 0;
};

float half_to_float(uint16_t bits);
uint16_t float_to_half(float value);  // round to nearest even, overflow to inf, NaN kept
inline float bfloat16_to_float(uint16_t bits) {
  uint32_t wide = uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &wide, 4);
  return f;
}
uint16_t float_to_bfloat16(float value);  // round to nearest even, NaN kept

// Calls fn(T{}) with the C++ type that stores `dtype` (Float16/BFloat16 for the half types, bool for kBool);
// a string tensor has no such type: fail_not_numeric.
template <class Fn>
decltype(auto) visit_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32: return fn(float{});
    case DType::kFloat16: return fn(Float16{});
    case DType::kBFloat16: return fn(BFloat16{});
    case DType::kFloat64: return fn(double{});
    case DType::kInt64: return fn(int64_t{});
    case DType::kInt32: return fn(int32_t{});
    case DType::kInt8: return fn(int8_t{});
    case DType::kUInt8: return fn(uint8_t{});
    case DType::kBool: return fn(bool{});
    case DType::kInt16: return fn(int16_t{});
    case DType::kUInt16: return fn(uint16_t{});
    case DType::kUInt32: return fn(uint32_t{});
    case DType::kUInt64: return fn(uint64_t{});
    case DType::kString: break;
  }
  fail_not_numeric(dtype);
}

}  // namespace kiln
KILN_API_END
