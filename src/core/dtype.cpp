#include "kiln/dtype.h"

#include <algorithm>
#include <cmath>

#include "kiln/error.h"

namespace kiln {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat64:
    case DType::kInt64:
    case DType::kUInt64: return 8;
    case DType::kFloat32:
    case DType::kInt32:
    case DType::kUInt32: return 4;
    case DType::kFloat16:
    case DType::kBFloat16:
    case DType::kInt16:
    case DType::kUInt16: return 2;
    case DType::kInt8:
    case DType::kUInt8:
    case DType::kBool: return 1;
    case DType::kFloat8E4M3FN:
    case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2:
    case DType::kFloat8E5M2FNUZ:
    case DType::kFloat4E2M1:
    case DType::kUInt4:
    case DType::kInt4:
    case DType::kUInt2:
    case DType::kInt2:
    case DType::kFloat8E8M0: return 1;  // one byte per element, unpacked (see dtype.h)
    case DType::kString: break;
  }
  fail_not_numeric(dtype);
}

void fail_not_numeric(DType dtype) {
  fail(ErrorCode::kUnsupported, "a ", dtype_name(dtype), " tensor has no fixed-size elements: this operation takes numbers only");
}

std::optional<DType> dtype_from_code(int64_t code) {
  if (code >= 0 && code <= int64_t(DType::kFloat8E8M0)) return DType(code);
  return std::nullopt;
}

int packed_bits(DType dtype) {
  switch (dtype) {
    case DType::kFloat4E2M1:
    case DType::kUInt4:
    case DType::kInt4: return 4;
    case DType::kUInt2:
    case DType::kInt2: return 2;
    default: return int(dtype_size(dtype)) * 8;
  }
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat64: return "float64";
    case DType::kInt64: return "int64";
    case DType::kInt32: return "int32";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kBool: return "bool";
    case DType::kInt16: return "int16";
    case DType::kUInt16: return "uint16";
    case DType::kUInt32: return "uint32";
    case DType::kUInt64: return "uint64";
    case DType::kFloat8E4M3FN: return "float8e4m3fn";
    case DType::kFloat8E4M3FNUZ: return "float8e4m3fnuz";
    case DType::kFloat8E5M2: return "float8e5m2";
    case DType::kFloat8E5M2FNUZ: return "float8e5m2fnuz";
    case DType::kUInt4: return "uint4";
    case DType::kInt4: return "int4";
    case DType::kFloat4E2M1: return "float4e2m1";
    case DType::kUInt2: return "uint2";
    case DType::kInt2: return "int2";
    case DType::kString: return "string";
    case DType::kFloat8E8M0: return "float8e8m0";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (DType d : kAllDTypes)
    if (dtype_name(d) == name) return d;
  if (name == "string") return DType::kString;
  if (name == "fp32" || name == "float") return DType::kFloat32;
  if (name == "fp16" || name == "half") return DType::kFloat16;
  if (name == "bf16") return DType::kBFloat16;
  if (name == "fp64" || name == "double") return DType::kFloat64;
  return std::nullopt;
}

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: value = mantissa * 2^-24
    float f = std::ldexp(float(mantissa), -24);
    std::memcpy(&bits, &f, 4);
    bits |= sign;
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

uint16_t float_to_half(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) return sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 : 0);  // inf or NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00;  // rounds to >= 65520: overflow
  if (abs < 0x38800000u) {                       // below the smallest normal half: subnormal or zero
    float magnitude;
    std::memcpy(&magnitude, &abs, 4);
    return sign | uint16_t(std::nearbyint(magnitude * 16777216.0f));  // units of 2^-24, ties to even
  }
  uint32_t rounded = abs + 0xfff + ((abs >> 13) & 1);  // round mantissa to 10 bits, ties to even
  return sign | uint16_t((rounded - 0x38000000u) >> 13);
}

uint16_t float_to_bfloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fff + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}

namespace {

// A narrow float format: `bits` wide with `mantissa` bits and an exponent
// bias; which codes are special; its largest finite value.
struct NarrowFormat {
  int bits, mantissa, bias;
  enum Specials { kIeee, kFiniteNaNAllOnes, kFiniteNaNNegativeZero, kNone } specials;
  double max;
};

NarrowFormat narrow_format(DType dtype) {
  switch (dtype) {
    case DType::kFloat8E4M3FN: return {8, 3, 7, NarrowFormat::kFiniteNaNAllOnes, 448.0};
    case DType::kFloat8E4M3FNUZ: return {8, 3, 8, NarrowFormat::kFiniteNaNNegativeZero, 240.0};
    case DType::kFloat8E5M2: return {8, 2, 15, NarrowFormat::kIeee, 57344.0};
    case DType::kFloat8E5M2FNUZ: return {8, 2, 16, NarrowFormat::kFiniteNaNNegativeZero, 57344.0};
    case DType::kFloat4E2M1: return {4, 1, 1, NarrowFormat::kNone, 6.0};
    default: break;
  }
  return {8, 3, 7, NarrowFormat::kFiniteNaNAllOnes, 448.0};  // callers pass narrow floats only
}

}  // namespace

std::optional<E8M0Rounding> parse_e8m0_rounding(std::string_view round_mode) {
  if (round_mode == "up") return E8M0Rounding::kUp;
  if (round_mode == "down") return E8M0Rounding::kDown;
  if (round_mode == "nearest") return E8M0Rounding::kNearest;
  return std::nullopt;
}

uint8_t float_to_float8e8m0(float value, bool saturate, E8M0Rounding rounding) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  uint32_t exponent = (bits >> 23) & 0xff, fraction = bits & 0x7fffff;
  if (exponent == 0xff) return 0xff;
  bool up = false;
  switch (rounding) {
    case E8M0Rounding::kUp: up = fraction != 0; break;
    case E8M0Rounding::kDown: break;
    case E8M0Rounding::kNearest: {
      // ONNX's guard, round and sticky bits, and a least significant bit of 1 for normal values: their ties go up.
      bool guard = (bits & 0x400000) != 0, round_bit = (bits & 0x200000) != 0, sticky = (bits & 0x1fffff) != 0;
      up = guard && (round_bit || sticky || exponent > 0);
      break;
    }
  }
  if (up && exponent == 0xfe && saturate) up = false;
  return uint8_t(exponent + (up ? 1 : 0));  // 0xfe + 1 is NaN: unsaturated overflow
}

double narrow_float_to_double(DType dtype, uint8_t bits) {
  if (dtype == DType::kFloat8E8M0) return bits == 0xff ? NAN : std::ldexp(1.0, int(bits) - 127);
  NarrowFormat f = narrow_format(dtype);
  int exponent_bits = f.bits - 1 - f.mantissa;
  uint8_t sign = uint8_t(bits >> (f.bits - 1)) & 1, exponent = uint8_t(bits >> f.mantissa) & ((1 << exponent_bits) - 1);
  uint8_t mantissa = bits & ((1 << f.mantissa) - 1), all_ones = uint8_t((1 << exponent_bits) - 1);
  if (f.specials == NarrowFormat::kFiniteNaNNegativeZero && sign && exponent == 0 && mantissa == 0) return NAN;
  if (f.specials == NarrowFormat::kFiniteNaNAllOnes && exponent == all_ones && mantissa == (1 << f.mantissa) - 1) return NAN;
  if (f.specials == NarrowFormat::kIeee && exponent == all_ones) return mantissa ? NAN : sign ? -INFINITY : INFINITY;
  double magnitude = exponent == 0 ? std::ldexp(double(mantissa), 1 - f.bias - f.mantissa)
                                   : std::ldexp(double(mantissa | (1 << f.mantissa)), exponent - f.bias - f.mantissa);
  return sign ? -magnitude : magnitude;
}

uint8_t narrow_float_from_double(DType dtype, double value, bool saturate) {
  if (dtype == DType::kFloat8E8M0) return float_to_float8e8m0(float(value), saturate, E8M0Rounding::kUp);
  NarrowFormat f = narrow_format(dtype);
  uint8_t sign_bit = uint8_t(1 << (f.bits - 1)), sign = std::signbit(value) ? sign_bit : 0;
  bool unsigned_zero = f.specials == NarrowFormat::kFiniteNaNNegativeZero;
  int exponent_bits = f.bits - 1 - f.mantissa;
  uint8_t all_ones = uint8_t((1 << exponent_bits) - 1);
  auto encode = [&](double magnitude) -> uint8_t {  // a representable magnitude's bits, without the sign
    int e;
    std::frexp(magnitude, &e);  // magnitude = m * 2^e, m in [0.5, 1)
    if (magnitude == 0) return 0;
    if (e - 1 < 1 - f.bias) return uint8_t(std::ldexp(magnitude, f.bias - 1 + f.mantissa));  // subnormal
    uint8_t fraction = uint8_t(std::ldexp(magnitude, f.mantissa - (e - 1)) - double(1 << f.mantissa));
    return uint8_t(((e - 1 + f.bias) << f.mantissa) | fraction);
  };
  auto nan = [&]() -> uint8_t {
    switch (f.specials) {
      case NarrowFormat::kIeee: return uint8_t(sign | (all_ones << f.mantissa) | (1 << (f.mantissa - 1)));
      case NarrowFormat::kFiniteNaNAllOnes: return uint8_t(sign | (sign_bit - 1));
      case NarrowFormat::kFiniteNaNNegativeZero: return sign_bit;
      case NarrowFormat::kNone: return sign_bit;  // ONNX's reference (ml_dtypes) makes it -0
    }
    return sign_bit;
  };
  auto overflow = [&]() -> uint8_t {
    if (saturate || f.specials == NarrowFormat::kNone) return uint8_t(sign | encode(f.max));
    if (f.specials == NarrowFormat::kIeee) return uint8_t(sign | (all_ones << f.mantissa));
    return f.specials == NarrowFormat::kFiniteNaNNegativeZero ? sign_bit : uint8_t(sign | (sign_bit - 1));
  };
  if (std::isnan(value)) return nan();
  double magnitude = std::fabs(value);
  if (magnitude > f.max && (saturate || std::isinf(value))) return overflow();
  // Round to nearest even at the value's quantum: its binade's, or the subnormals' below the smallest normal.
  int e;
  std::frexp(magnitude, &e);
  int quantum_exponent = std::max(e - 1, 1 - f.bias) - f.mantissa;
  double rounded = std::ldexp(std::nearbyint(std::ldexp(magnitude, -quantum_exponent)), quantum_exponent);
  if (rounded > f.max) return overflow();
  if (rounded == 0 && unsigned_zero) return 0;
  return uint8_t(sign | encode(rounded));
}

int8_t narrow_integer_wrap(DType dtype, int64_t value) {
  int bits = packed_bits(dtype);
  uint64_t low = uint64_t(value) & ((uint64_t(1) << bits) - 1);
  bool negative = (dtype == DType::kInt4 || dtype == DType::kInt2) && (low >> (bits - 1)) != 0;
  return int8_t(negative ? int64_t(low) - (int64_t(1) << bits) : int64_t(low));
}

}  // namespace kiln
