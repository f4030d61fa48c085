#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kiln/dtype.h"

namespace kiln {
namespace {

TEST(DType, NamesRoundTrip) {
  for (DType d : kAllDTypes) {
    auto parsed = parse_dtype(dtype_name(d));
    ASSERT_TRUE(parsed.has_value()) << dtype_name(d);
    EXPECT_EQ(*parsed, d);
  }
  EXPECT_EQ(parse_dtype("fp16"), DType::kFloat16);
  EXPECT_FALSE(parse_dtype("complex64").has_value());
}

TEST(DType, Sizes) {
  EXPECT_EQ(dtype_size(DType::kFloat32), 4u);
  EXPECT_EQ(dtype_size(DType::kBFloat16), 2u);
  EXPECT_EQ(dtype_size(DType::kInt64), 8u);
  EXPECT_EQ(dtype_size(DType::kBool), 1u);
}

TEST(Half, ExactValuesRoundTrip) {
  for (float v : {0.0f, 1.0f, -2.0f, 0.5f, 65504.0f, -65504.0f, 6.103515625e-05f, 5.960464477539063e-08f}) {
    EXPECT_EQ(half_to_float(float_to_half(v)), v) << v;
  }
}

TEST(Half, EveryBitPatternRoundTrips) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    float f = half_to_float(uint16_t(bits));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f))));
      continue;
    }
    EXPECT_EQ(float_to_half(f), uint16_t(bits)) << "bits " << bits;
  }
}

TEST(Half, RoundsToNearestEvenAndOverflows) {
  EXPECT_EQ(half_to_float(float_to_half(1.0f + 1.0f / 2048)), 1.0f);                // tie -> even
  EXPECT_EQ(half_to_float(float_to_half(1.0f + 3.0f / 2048)), 1.0f + 2.0f / 1024);  // tie -> even (up)
  EXPECT_TRUE(std::isinf(half_to_float(float_to_half(70000.0f))));
  EXPECT_EQ(half_to_float(float_to_half(1e-9f)), 0.0f);
}

TEST(BFloat16, RoundTripAndRounding) {
  EXPECT_EQ(bfloat16_to_float(float_to_bfloat16(1.5f)), 1.5f);
  EXPECT_EQ(bfloat16_to_float(float_to_bfloat16(-3.0f)), -3.0f);
  EXPECT_NEAR(bfloat16_to_float(float_to_bfloat16(3.14159f)), 3.14159f, 0.02f);
  EXPECT_TRUE(std::isnan(bfloat16_to_float(float_to_bfloat16(std::numeric_limits<float>::quiet_NaN()))));
}

// Every narrow float format against known bit patterns (ONNX's reference,
// ml_dtypes, converts to the same): zeros and -0 (none in the FNUZ formats),
// the largest finite value and beyond it with and without saturation,
// infinities, NaN, the smallest subnormal, half of it (ties to the even 0),
// a subnormal tie and ties at 1.
TEST(DType, NarrowFloatsConvertAsOnnxDoes) {
  struct Case {
    double value;
    int saturated, unsaturated;  // the bits with saturate = 1 and 0
  };
  const std::pair<DType, std::vector<Case>> formats[] = {
      {DType::kFloat8E4M3FN,
       {{0.0, 0x00, 0x00}, {-0.0, 0x80, 0x80}, {1.0, 0x38, 0x38}, {-1.5, 0xbc, 0xbc}, {448.0, 0x7e, 0x7e}, {672.0, 0x7e, 0x7f}, {INFINITY, 0x7e, 0x7f}, {-INFINITY, 0xfe, 0xff}, {NAN, 0x7f, 0x7f}, {0.001953125, 0x01, 0x01}, {0.0009765625, 0x00, 0x00}, {-0.0009765625, 0x80, 0x80}, {0.0029296875, 0x02, 0x02}, {1e-30, 0x00, 0x00}, {1.0625, 0x38, 0x38}, {1.1875, 0x3a, 0x3a}}},
      {DType::kFloat8E4M3FNUZ,
       {{0.0, 0x00, 0x00}, {-0.0, 0x00, 0x00}, {1.0, 0x40, 0x40}, {-1.5, 0xc4, 0xc4}, {240.0, 0x7f, 0x7f}, {360.0, 0x7f, 0x80}, {INFINITY, 0x7f, 0x80}, {-INFINITY, 0xff, 0x80}, {NAN, 0x80, 0x80}, {0.0009765625, 0x01, 0x01}, {0.00048828125, 0x00, 0x00}, {-0.00048828125, 0x00, 0x00}, {0.00146484375, 0x02, 0x02}, {1e-30, 0x00, 0x00}, {1.0625, 0x40, 0x40}, {1.1875, 0x42, 0x42}}},
      {DType::kFloat8E5M2,
       {{0.0, 0x00, 0x00}, {-0.0, 0x80, 0x80}, {1.0, 0x3c, 0x3c}, {-1.5, 0xbe, 0xbe}, {57344.0, 0x7b, 0x7b}, {86016.0, 0x7b, 0x7c}, {INFINITY, 0x7b, 0x7c}, {-INFINITY, 0xfb, 0xfc}, {NAN, 0x7e, 0x7e}, {1.52587890625e-05, 0x01, 0x01}, {7.62939453125e-06, 0x00, 0x00}, {-7.62939453125e-06, 0x80, 0x80}, {2.288818359375e-05, 0x02, 0x02}, {1e-30, 0x00, 0x00}, {1.125, 0x3c, 0x3c}, {1.375, 0x3e, 0x3e}}},
      {DType::kFloat8E5M2FNUZ,
       {{0.0, 0x00, 0x00}, {-0.0, 0x00, 0x00}, {1.0, 0x40, 0x40}, {-1.5, 0xc2, 0xc2}, {57344.0, 0x7f, 0x7f}, {86016.0, 0x7f, 0x80}, {INFINITY, 0x7f, 0x80}, {-INFINITY, 0xff, 0x80}, {NAN, 0x80, 0x80}, {7.62939453125e-06, 0x01, 0x01}, {3.814697265625e-06, 0x00, 0x00}, {-3.814697265625e-06, 0x00, 0x00}, {1.1444091796875e-05, 0x02, 0x02}, {1e-30, 0x00, 0x00}, {1.125, 0x40, 0x40}, {1.375, 0x42, 0x42}}},
      {DType::kFloat4E2M1,
       {{0.0, 0x00, 0x00}, {-0.0, 0x08, 0x08}, {1.0, 0x02, 0x02}, {-1.5, 0x0b, 0x0b}, {6.0, 0x07, 0x07}, {9.0, 0x07, 0x07}, {INFINITY, 0x07, 0x07}, {-INFINITY, 0x0f, 0x0f}, {NAN, 0x08, 0x08}, {0.5, 0x01, 0x01}, {0.25, 0x00, 0x00}, {-0.25, 0x08, 0x08}, {0.75, 0x02, 0x02}, {1e-30, 0x00, 0x00}, {1.25, 0x02, 0x02}, {1.75, 0x04, 0x04}}},
  };
  for (const auto& [dtype, cases] : formats)
    for (const Case& c : cases) {
      EXPECT_EQ(narrow_float_from_double(dtype, c.value, true), c.saturated) << dtype_name(dtype) << " " << c.value;
      EXPECT_EQ(narrow_float_from_double(dtype, c.value, false), c.unsaturated) << dtype_name(dtype) << " unsaturated " << c.value;
      double back = narrow_float_to_double(dtype, uint8_t(c.unsaturated));
      bool becomes_nan = std::isnan(c.value) || (std::isinf(c.value) && dtype != DType::kFloat8E5M2);  // no infinity: NaN
      if (dtype != DType::kFloat4E2M1 && becomes_nan) EXPECT_TRUE(std::isnan(back)) << dtype_name(dtype) << " " << c.value;
    }
}

// Decoding then encoding any code gives it back, but NaNs (any NaN code) and
// float4e2m1's (4-bit) codes past 15; float8e8m0, unsigned, has tests of its own.
TEST(DType, NarrowFloatCodesRoundTrip) {
  for (DType dtype : kAllDTypes) {
    if (!is_narrow_float(dtype) || dtype == DType::kFloat8E8M0) continue;
    for (int code = 0; code < (1 << packed_bits(dtype)); ++code) {
      double v = narrow_float_to_double(dtype, uint8_t(code));
      if (std::isnan(v)) continue;
      EXPECT_EQ(narrow_float_from_double(dtype, v, false), code) << dtype_name(dtype) << " code " << code;
      EXPECT_EQ(std::signbit(v), (code >> (packed_bits(dtype) - 1)) != 0) << dtype_name(dtype) << " code " << code;
    }
  }
  EXPECT_EQ(narrow_float_to_double(DType::kFloat8E4M3FN, 0x7e), 448.0);
  EXPECT_EQ(narrow_float_to_double(DType::kFloat8E4M3FNUZ, 0x7f), 240.0);
  EXPECT_EQ(narrow_float_to_double(DType::kFloat8E5M2, 0x7c), INFINITY);
  EXPECT_EQ(narrow_float_to_double(DType::kFloat8E5M2FNUZ, 0x01), std::ldexp(1.0, -17));
  EXPECT_EQ(narrow_float_to_double(DType::kFloat4E2M1, 0x0f), -6.0);
}

// float8e8m0 against ONNX's reference (onnx.numpy_helper.to_float8e8m0,
// onnx 1.23.2) per round_mode, saturating and not: zeros and float32
// subnormals (their own rules), values between powers of two and ties,
// the sign dropped, the largest finite code 0xFE and past it, infinities and NaN.
TEST(DType, Float8E8M0ConvertsAsOnnxDoes) {
  struct Case {
    float value;
    int up, up_unsaturated, down, nearest, nearest_unsaturated;  // down never overflows
  };
  const float largest = std::ldexp(1.0f, 127), max_float = std::numeric_limits<float>::max();
  const Case cases[] = {{0.0f, 0x00, 0x00, 0x00, 0x00, 0x00},
                        {-0.0f, 0x00, 0x00, 0x00, 0x00, 0x00},
                        {std::ldexp(1.0f, -127), 0x01, 0x01, 0x00, 0x00, 0x00},
                        {std::ldexp(0.75f, -126), 0x01, 0x01, 0x00, 0x01, 0x01},
                        {std::ldexp(1.0f, -149), 0x01, 0x01, 0x00, 0x00, 0x00},
                        {std::ldexp(1.0f, -126), 0x01, 0x01, 0x01, 0x01, 0x01},
                        {1.0f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f},
                        {-1.0f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f},
                        {1.25f, 0x80, 0x80, 0x7f, 0x7f, 0x7f},
                        {1.5f, 0x80, 0x80, 0x7f, 0x80, 0x80},
                        {1.75f, 0x80, 0x80, 0x7f, 0x80, 0x80},
                        {-3.0f, 0x81, 0x81, 0x80, 0x81, 0x81},
                        {0.375f, 0x7e, 0x7e, 0x7d, 0x7e, 0x7e},
                        {largest, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe},
                        {1.25f * largest, 0xfe, 0xff, 0xfe, 0xfe, 0xfe},
                        {1.5f * largest, 0xfe, 0xff, 0xfe, 0xfe, 0xff},
                        {max_float, 0xfe, 0xff, 0xfe, 0xfe, 0xff},
                        {INFINITY, 0xff, 0xff, 0xff, 0xff, 0xff},
                        {-INFINITY, 0xff, 0xff, 0xff, 0xff, 0xff},
                        {NAN, 0xff, 0xff, 0xff, 0xff, 0xff}};
  for (const Case& c : cases) {
    EXPECT_EQ(float_to_float8e8m0(c.value, true, E8M0Rounding::kUp), c.up) << c.value;
    EXPECT_EQ(float_to_float8e8m0(c.value, false, E8M0Rounding::kUp), c.up_unsaturated) << c.value;
    EXPECT_EQ(float_to_float8e8m0(c.value, true, E8M0Rounding::kDown), c.down) << c.value;
    EXPECT_EQ(float_to_float8e8m0(c.value, false, E8M0Rounding::kDown), c.down) << c.value;
    EXPECT_EQ(float_to_float8e8m0(c.value, true, E8M0Rounding::kNearest), c.nearest) << c.value;
    EXPECT_EQ(float_to_float8e8m0(c.value, false, E8M0Rounding::kNearest), c.nearest_unsaturated) << c.value;
  }
  // A double is rounded to float32 first, and Cast's default round_mode is "up".
  EXPECT_EQ(narrow_float_from_double(DType::kFloat8E8M0, 1.0 + 1e-12, true), 0x7f);
  EXPECT_EQ(narrow_float_from_double(DType::kFloat8E8M0, 1.0 + 1e-6, true), 0x80);
  EXPECT_EQ(parse_e8m0_rounding("nearest"), E8M0Rounding::kNearest);
  EXPECT_EQ(parse_e8m0_rounding("up"), E8M0Rounding::kUp);
  EXPECT_EQ(parse_e8m0_rounding("down"), E8M0Rounding::kDown);
  EXPECT_FALSE(parse_e8m0_rounding("Up").has_value());
  EXPECT_FALSE(parse_e8m0_rounding("").has_value());
}

// The code a positive normal float32 `v` takes, from its value: 2^e <= v < 2^(e+1) is code e + 127, one more
// when rounding goes up (up: any excess over 2^e; nearest: half of 2^e or more); past 0xFE, 0xFE or NaN.
int expected_e8m0(float v, bool saturate, E8M0Rounding rounding) {
  int e = std::ilogb(v);
  float excess = std::ldexp(v, -e) - 1.0f;
  int code = e + 127 + (rounding == E8M0Rounding::kUp ? excess > 0 : rounding == E8M0Rounding::kNearest ? excess >= 0.5f : 0);
  return code > 0xfe ? (saturate ? 0xfe : 0xff) : code;
}

// Every code decodes to its power of two (0xFF to NaN), and encodes from it
// (code 0, 2^-127, is a float32 subnormal: rounding up makes it 1); values
// between codes (a quarter, a half, three quarters of the way, and just
// below the next power) round per round_mode.
TEST(DType, Float8E8M0EveryCodeBothWays) {
  const E8M0Rounding modes[] = {E8M0Rounding::kUp, E8M0Rounding::kDown, E8M0Rounding::kNearest};
  EXPECT_TRUE(std::isnan(narrow_float_to_double(DType::kFloat8E8M0, 0xff)));
  for (int code = 0; code < 0xff; ++code) {
    double power = narrow_float_to_double(DType::kFloat8E8M0, uint8_t(code));
    ASSERT_EQ(power, std::ldexp(1.0, code - 127)) << code;
    float p = float(power);
    for (E8M0Rounding mode : modes)
      for (bool saturate : {true, false}) {
        int back = code == 0 && mode == E8M0Rounding::kUp ? 1 : code;
        EXPECT_EQ(float_to_float8e8m0(p, saturate, mode), back) << code;
        if (code == 0) continue;  // the values above 2^-127 are subnormals: Float8E8M0ConvertsAsOnnxDoes
        for (float v : {1.25f * p, 1.5f * p, 1.75f * p, std::nextafter(2.0f * p, 0.0f)}) {
          if (std::isinf(v)) continue;
          EXPECT_EQ(float_to_float8e8m0(v, saturate, mode), expected_e8m0(v, saturate, mode)) << code << " " << v;
          EXPECT_EQ(float_to_float8e8m0(-v, saturate, mode), expected_e8m0(v, saturate, mode)) << code << " " << -v;
        }
      }
  }
}

TEST(DType, NarrowIntegersWrapAndTakeOneByte) {
  EXPECT_EQ(narrow_integer_wrap(DType::kInt4, -9), 7);
  EXPECT_EQ(narrow_integer_wrap(DType::kInt4, 8), -8);
  EXPECT_EQ(narrow_integer_wrap(DType::kUInt4, -1), 15);
  EXPECT_EQ(narrow_integer_wrap(DType::kUInt4, 100), 4);
  EXPECT_EQ(narrow_integer_wrap(DType::kInt2, 2), -2);
  EXPECT_EQ(narrow_integer_wrap(DType::kInt2, -3), 1);
  EXPECT_EQ(narrow_integer_wrap(DType::kUInt2, 7), 3);
  for (DType d : kAllDTypes)
    if (is_narrow(d)) {
      EXPECT_EQ(dtype_size(d), 1u) << dtype_name(d);
      EXPECT_FALSE(is_floating(d) || is_integer(d)) << dtype_name(d);
    }
  EXPECT_EQ(packed_bits(DType::kInt4), 4);
  EXPECT_EQ(packed_bits(DType::kUInt2), 2);
  EXPECT_EQ(packed_bits(DType::kFloat4E2M1), 4);
  EXPECT_EQ(packed_bits(DType::kFloat8E5M2), 8);
  EXPECT_EQ(packed_bits(DType::kInt16), 16);
}

}  // namespace
}  // namespace kiln
