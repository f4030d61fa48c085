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
  kFloat8E4M3FN, kFloat8E4M3FNUZ, kFloat8E5M2, kFloat8E5M2FNUZ, kUInt4, kInt4, kFloat4E2M1, kUInt2, kInt2,
  kString, kFloat8E8M0
};

// The types of fixed-size elements, in code order; every type but kString (code 22).
inline constexpr DType kAllDTypes[] = {
    DType::kFloat32,       DType::kFloat16,     DType::kBFloat16,        DType::kFloat64, DType::kInt64, DType::kInt32,
    DType::kInt8,          DType::kUInt8,       DType::kBool,            DType::kInt16,   DType::kUInt16, DType::kUInt32,
    DType::kUInt64,        DType::kFloat8E4M3FN, DType::kFloat8E4M3FNUZ, DType::kFloat8E5M2, DType::kFloat8E5M2FNUZ,
    DType::kUInt4,         DType::kInt4,        DType::kFloat4E2M1,      DType::kUInt2,   DType::kInt2,
    DType::kFloat8E8M0};

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

// The narrow types ONNX stores, moves, casts and (de)quantizes but computes
// nothing else in: the float8 formats (float8e8m0 among them) and float4e2m1 ("narrow floats"), and
// int4, uint4, int2 and uint2 ("narrow integers"). is_floating and is_integer
// are false for them, so arithmetic refuses them.
//
// Every narrow type takes one byte per element in memory and in plans
// (dtype_size 1); only ONNX tensors pack the 4- and 2-bit ones (two or four
// to a byte, low bits first), and the ONNX reader unpacks them. One byte per
// element keeps each element addressable, so byte sizes from element counts,
// the copy kernels and plans' mapped weights hold for them unchanged; the cost
// is memory (twice or four times the packed size).
inline bool is_narrow_float(DType d) {
  return d == DType::kFloat8E4M3FN || d == DType::kFloat8E4M3FNUZ || d == DType::kFloat8E5M2 || d == DType::kFloat8E5M2FNUZ ||
         d == DType::kFloat4E2M1 || d == DType::kFloat8E8M0;
}
inline bool is_narrow_integer(DType d) {
  return d == DType::kUInt4 || d == DType::kInt4 || d == DType::kUInt2 || d == DType::kInt2;
}
inline bool is_narrow(DType d) { return is_narrow_float(d) || is_narrow_integer(d); }
// Bits an element takes packed as ONNX stores it: 4 or 2 for the sub-byte types, 8 x dtype_size else.
int packed_bits(DType dtype);

// A narrow float's bits (the low 4 for float4e2m1) as a double; NaN where the format has one.
double narrow_float_to_double(DType dtype, uint8_t bits);
// `value` in a narrow float format as ONNX casts: round to nearest even; a
// value beyond the largest finite one (infinities too) saturates to it when
// `saturate`, else becomes infinity (float8e5m2) or NaN (the other float8
// formats); NaN stays NaN; the FNUZ formats have no -0 (it becomes +0).
// float4e2m1 has no infinity or NaN: it always saturates, and NaN becomes
// 0x8 (-0), as ONNX's reference (ml_dtypes) converts it. float8e8m0 rounds
// up (Cast's default round_mode; see float_to_float8e8m0).
uint8_t narrow_float_from_double(DType dtype, double value, bool saturate);

// float8e8m0 (the scales of the MX formats) is an exponent alone: code c is
// 2^(c - 127) for c up to 254 and 0xFF is NaN; no sign, no zero, no infinity.
// Cast's round_mode (ONNX 24) says how a value between two powers of two rounds.
enum class E8M0Rounding : uint8_t { kUp, kDown, kNearest };
std::optional<E8M0Rounding> parse_e8m0_rounding(std::string_view round_mode);  // "up", "down", "nearest"
// ONNX's conversion, on the value as float32 (its biased exponent becomes the
// code; the sign is dropped): NaN and infinities become NaN (0xFF); kUp adds
// one for any fraction, kNearest for a fraction of one half and more (exactly
// one half of a float32 subnormal stays), kDown none; past 2^127 a value
// saturates to 2^127 when `saturate`, else becomes NaN.
uint8_t float_to_float8e8m0(float value, bool saturate, E8M0Rounding rounding);
// The integer `value` wrapped into a narrow integer type's bits (C's
// conversion to a narrower integer): its low 4 or 2 bits, sign-extended for int4 and int2.
int8_t narrow_integer_wrap(DType dtype, int64_t value);

// Storage of the narrow types in memory, one byte per element (see above):
// a narrow float's bits, a narrow integer's value (sign-extended).
template <DType D>
struct NarrowFloat {
  uint8_t bits = 0;
};
template <DType D>
struct NarrowInteger {
  int8_t value = 0;
};

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

// Calls fn(T{}) with the C++ type that stores `dtype` (Float16/BFloat16 for the half types, bool for kBool,
// NarrowFloat/NarrowInteger for the narrow types); a string tensor has no such type: fail_not_numeric.
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
    case DType::kFloat8E4M3FN: return fn(NarrowFloat<DType::kFloat8E4M3FN>{});
    case DType::kFloat8E4M3FNUZ: return fn(NarrowFloat<DType::kFloat8E4M3FNUZ>{});
    case DType::kFloat8E5M2: return fn(NarrowFloat<DType::kFloat8E5M2>{});
    case DType::kFloat8E5M2FNUZ: return fn(NarrowFloat<DType::kFloat8E5M2FNUZ>{});
    case DType::kFloat4E2M1: return fn(NarrowFloat<DType::kFloat4E2M1>{});
    case DType::kUInt4: return fn(NarrowInteger<DType::kUInt4>{});
    case DType::kInt4: return fn(NarrowInteger<DType::kInt4>{});
    case DType::kUInt2: return fn(NarrowInteger<DType::kUInt2>{});
    case DType::kInt2: return fn(NarrowInteger<DType::kInt2>{});
    case DType::kFloat8E8M0: return fn(NarrowFloat<DType::kFloat8E8M0>{});
    case DType::kString: break;
  }
  fail_not_numeric(dtype);
}

}  // namespace kiln
KILN_API_END
