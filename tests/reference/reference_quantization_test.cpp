// The reference kernels of the quantized ops on small cases checked by hand:
// rounding half to even, saturation, per-axis and blocked parameters, zero
// points per row and column, padding that reads the zero point, int32 sums;
// float8e8m0, the MX formats' power-of-two scales: Cast to and from it on
// every code and per round_mode, and as QuantizeLinear's and DequantizeLinear's scale.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::reference {
namespace {

using ir::OpKind;
using ir::ValueId;
constexpr DType f32 = DType::kFloat32, i8 = DType::kInt8, u8 = DType::kUInt8, i32 = DType::kInt32;

ir::Attributes attrs(std::initializer_list<std::pair<const char*, ir::AttrValue>> list) {
  ir::Attributes a;
  for (auto& [name, value] : list) a.set(name, value);
  return a;
}

// One node over weights; its output's values.
struct OneNode {
  ir::Network net;
  std::vector<ValueId> in;
  OneNode& w(DType dtype, std::vector<int64_t> dims, std::vector<double> v) {
    in.push_back(net.add_weight(str("w", in.size()), make_tensor(dtype, std::move(dims), v)));
    return *this;
  }
  // A vector of `count` elements stored as they are (float8e8m0 codes, int64 values past 2^53).
  OneNode& raw(DType dtype, const void* elements, size_t count) {
    Tensor t;
    t.dtype = dtype;
    t.dims = {int64_t(count)};
    t.data = Buffer::copy_of(elements, count * dtype_size(dtype));
    in.push_back(net.add_weight(str("w", in.size()), std::move(t)));
    return *this;
  }
  OneNode& none() {
    in.push_back(ir::kNoValue);
    return *this;
  }
  Tensor out(OpKind op, ir::Attributes a = {}) {
    net.add_output(net.add_op1(op, in, std::move(a), "q"));
    net.finalize();
    return run(net, {}).at(0);
  }
};

std::vector<double> values(const Tensor& t) { return ir::read_doubles(t); }

TEST(ReferenceQuantization, QuantizeRoundsHalfToEvenAndSaturates) {
  Tensor y = OneNode().w(f32, {8}, {0, 1.5, 2.5, -1.5, -2.5, 1000, -1000, NAN}).w(f32, {}, {1}).w(i8, {}, {1}).out(OpKind::kQuantizeLinear);
  EXPECT_EQ(y.dtype, i8);
  EXPECT_EQ(values(y), (std::vector<double>{1, 3, 3, -1, -1, 127, -128, -128}));
  // uint8 by default; x / scale = 0.5 / 0.25 = 2.
  Tensor u = OneNode().w(f32, {3}, {0.5, -0.5, 70}).w(f32, {}, {0.25}).out(OpKind::kQuantizeLinear);
  EXPECT_EQ(u.dtype, u8);
  EXPECT_EQ(values(u), (std::vector<double>{2, 0, 255}));
}

TEST(ReferenceQuantization, PerAxisAndBlockedParameters) {
  // axis 1: column scales 1 and 2, zero points 0 and 10.
  Tensor y = OneNode().w(f32, {2, 2}, {1, 2, 3, 4}).w(f32, {2}, {1, 2}).w(u8, {2}, {0, 10}).out(OpKind::kQuantizeLinear);
  EXPECT_EQ(values(y), (std::vector<double>{1, 11, 3, 12}));
  // Blocks of 2 along axis 1 (the last one short): scales 1, 2, 4.
  Tensor b = OneNode()
                 .w(f32, {1, 5}, {1, 2, 3, 4, 9})
                 .w(f32, {1, 3}, {1, 2, 4})
                 .out(OpKind::kQuantizeLinear, attrs({{"axis", int64_t(1)}, {"block_size", int64_t(2)}}));
  EXPECT_EQ(values(b), (std::vector<double>{1, 2, 2, 2, 2}));
  // Dequantize per row (axis 0).
  Tensor d = OneNode().w(i8, {2, 2}, {1, 2, 3, 4}).w(f32, {2}, {0.5, 2}).w(i8, {2}, {1, 0}).out(OpKind::kDequantizeLinear,
                                                                                         attrs({{"axis", int64_t(0)}}));
  EXPECT_EQ(d.dtype, f32);
  EXPECT_EQ(values(d), (std::vector<double>{0, 0.5, 6, 8}));
}

TEST(ReferenceQuantization, DequantizeRoundsToItsOutputType) {
  // (100 - 0) * float16(0.1) is 9.9975... in float32; as float16, 10.
  Tensor d = OneNode().w(u8, {1}, {100}).w(DType::kFloat16, {}, {0.1}).out(OpKind::kDequantizeLinear);
  EXPECT_EQ(d.dtype, DType::kFloat16);
  EXPECT_EQ(values(d), (std::vector<double>{10}));
  Tensor f = OneNode().w(u8, {1}, {100}).w(f32, {}, {0.1}).out(OpKind::kDequantizeLinear);
  EXPECT_EQ(values(f)[0], double(100.0f * 0.1f));
}

TEST(ReferenceQuantization, MatMulIntegerSubtractsZeroPointsPerRowAndColumn) {
  // A - [1, 2] per row = [[0,1,2],[2,3,4]]; B - 1 = [[0,-2],[1,-1],[-1,2]].
  Tensor y = OneNode()
                 .w(u8, {2, 3}, {1, 2, 3, 4, 5, 6})
                 .w(i8, {3, 2}, {1, -1, 2, 0, 0, 3})
                 .w(u8, {2}, {1, 2})
                 .w(i8, {}, {1})
                 .out(OpKind::kMatMulInteger);
  EXPECT_EQ(y.dtype, i32);
  EXPECT_EQ(values(y), (std::vector<double>{-1, 3, -1, 1}));
  // Per column of B: B - [0, 1].
  Tensor c = OneNode().w(u8, {1, 2}, {1, 1}).w(u8, {2, 2}, {3, 3, 4, 4}).none().w(u8, {2}, {0, 1}).out(OpKind::kMatMulInteger);
  EXPECT_EQ(values(c), (std::vector<double>{7, 5}));
}

TEST(ReferenceQuantization, QLinearMatMulRequantizes) {
  // The product above times 0.5 * 2 / 0.25 = 4, plus 1; and one that saturates.
  Tensor y = OneNode()
                 .w(u8, {2, 3}, {1, 2, 3, 4, 5, 6})
                 .w(f32, {}, {0.5})
                 .w(u8, {2}, {1, 2})
                 .w(i8, {3, 2}, {1, -1, 2, 0, 0, 100})
                 .w(f32, {}, {2})
                 .w(i8, {}, {1})
                 .w(f32, {}, {0.25})
                 .w(i8, {}, {1})
                 .out(OpKind::kQLinearMatMul);
  EXPECT_EQ(y.dtype, i8);
  // Column 1 with B[2][1] = 100: row 0 0*-2 + 1*-1 + 2*99 = 197 -> 789, saturated; row 1 -4 - 3 + 396 = 389 -> saturated.
  EXPECT_EQ(values(y), (std::vector<double>{-3, 127, -3, 127}));
}

TEST(ReferenceQuantization, ConvIntegerPadsWithTheZeroPoint) {
  // x - 1 = 0..8 (3x3), w = [[1, 0], [0, -1]], pad 1: out[i][j] = x'[i-1][j-1] - x'[i][j], 0 outside.
  std::vector<double> x;
  for (int i = 1; i <= 9; ++i) x.push_back(i);
  Tensor y = OneNode()
                 .w(u8, {1, 1, 3, 3}, x)
                 .w(i8, {1, 1, 2, 2}, {1, 0, 0, -1})
                 .w(u8, {}, {1})
                 .out(OpKind::kConvInteger, attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
  EXPECT_EQ(y.dtype, i32);
  EXPECT_EQ(y.dims, (std::vector<int64_t>{1, 1, 4, 4}));
  EXPECT_EQ(values(y), (std::vector<double>{0, -1, -2, 0, -3, -4, -4, 2, -6, -4, -4, 5, 0, 6, 7, 8}));
}

TEST(ReferenceQuantization, QLinearConvPerChannelScalesAndBias) {
  // Two output channels of a 1x1 kernel: w - [0, 2] = [1, 1]; sums x' = x - 3 = [-3, 0, 3, 10].
  Tensor y = OneNode()
                 .w(u8, {1, 1, 2, 2}, {0, 3, 6, 13})
                 .w(f32, {}, {0.5})
                 .w(u8, {}, {3})
                 .w(i8, {2, 1, 1, 1}, {1, 3})
                 .w(f32, {2}, {1, 4})
                 .w(i8, {2}, {0, 2})
                 .w(f32, {}, {1})
                 .w(u8, {}, {100})
                 .w(i32, {2}, {1, -1})
                 .out(OpKind::kQLinearConv);
  EXPECT_EQ(y.dtype, u8);
  // Channel 0: (x' + 1) * 0.5 + 100 = [99, 100.5 -> 100, 102, 105.5 -> 106];
  // channel 1: (x' - 1) * 2 + 100 = [92, 98, 104, 118].
  EXPECT_EQ(values(y), (std::vector<double>{99, 100, 102, 106, 92, 98, 104, 118}));
}

std::vector<uint8_t> codes(const Tensor& t) {
  const uint8_t* p = t.data.as<uint8_t>();
  return std::vector<uint8_t>(p, p + t.numel());
}

// Every code to float32 (2^(code - 127), NaN for 0xFF) and float16 (0 below
// its smallest subnormal 2^-24, infinity past 65504), and back from float32 per round_mode.
TEST(ReferenceFloat8E8M0, CastsEveryCodeBothWays) {
  std::vector<uint8_t> all(256);
  for (int c = 0; c < 256; ++c) all[size_t(c)] = uint8_t(c);
  const DType e8m0 = DType::kFloat8E8M0;
  Tensor f = OneNode().raw(e8m0, all.data(), all.size()).out(OpKind::kCast, attrs({{"to", int64_t(f32)}}));
  Tensor h = OneNode().raw(e8m0, all.data(), all.size()).out(OpKind::kCast, attrs({{"to", int64_t(DType::kFloat16)}}));
  std::vector<double> fv = values(f), hv = values(h);
  for (int c = 0; c < 255; ++c) {
    EXPECT_EQ(fv[size_t(c)], std::ldexp(1.0, c - 127)) << c;
    EXPECT_EQ(hv[size_t(c)], c < 127 - 24 ? 0.0 : c > 127 + 15 ? INFINITY : std::ldexp(1.0, c - 127)) << c;
  }
  EXPECT_TRUE(std::isnan(fv[255]) && std::isnan(hv[255]));
  std::vector<double> powers(fv.begin(), fv.end() - 1);
  for (const char* mode : {"up", "down", "nearest"}) {
    std::vector<uint8_t> back = codes(OneNode().w(f32, {255}, powers).out(OpKind::kCast, attrs({{"to", int64_t(e8m0)}, {"round_mode", std::string(mode)}})));
    for (int c = 0; c < 255; ++c) EXPECT_EQ(back[size_t(c)], c == 0 && std::string(mode) == "up" ? 1 : c) << mode << " " << c;  // 2^-127 is a subnormal
  }
}

// round_mode and saturate through Cast and CastLike (ONNX's reference gives
// the same codes); integers converted to float32 once (a double rounds
// 2^62 + 2^38 + 1 to the tie 2^62 + 2^38, float32 then to 2^62 and down).
TEST(ReferenceFloat8E8M0, CastRoundsPerRoundModeAndSaturate) {
  const DType e8m0 = DType::kFloat8E8M0;
  const std::vector<double> x{1.25, 1.5, -3.0, 0.375, 3e38, INFINITY, NAN, 0.0};
  auto cast = [&](const char* mode, int64_t saturate) {
    return codes(OneNode().w(f32, {8}, x).out(OpKind::kCast, attrs({{"to", int64_t(e8m0)}, {"round_mode", std::string(mode)}, {"saturate", saturate}})));
  };
  EXPECT_EQ(cast("up", 1), (std::vector<uint8_t>{0x80, 0x80, 0x81, 0x7e, 0xfe, 0xff, 0xff, 0x00}));
  EXPECT_EQ(cast("up", 0), (std::vector<uint8_t>{0x80, 0x80, 0x81, 0x7e, 0xff, 0xff, 0xff, 0x00}));
  EXPECT_EQ(cast("down", 0), (std::vector<uint8_t>{0x7f, 0x7f, 0x80, 0x7d, 0xfe, 0xff, 0xff, 0x00}));
  EXPECT_EQ(cast("nearest", 1), (std::vector<uint8_t>{0x7f, 0x80, 0x81, 0x7e, 0xfe, 0xff, 0xff, 0x00}));
  EXPECT_EQ(cast("nearest", 0), (std::vector<uint8_t>{0x7f, 0x80, 0x81, 0x7e, 0xff, 0xff, 0xff, 0x00}));
  const uint8_t one = 0x7f;
  Tensor like = OneNode().w(DType::kFloat16, {2}, {1.25, 6.0}).raw(e8m0, &one, 1).out(OpKind::kCastLike, attrs({{"round_mode", std::string("down")}}));
  EXPECT_EQ(codes(like), (std::vector<uint8_t>{0x7f, 0x81}));
  const int64_t ints[] = {(int64_t(1) << 62) + (int64_t(1) << 38) + 1, -5};
  EXPECT_EQ(codes(OneNode().raw(DType::kInt64, ints, 2).out(OpKind::kCast, attrs({{"to", int64_t(e8m0)}}))), (std::vector<uint8_t>{190, 130}));
}

// Power-of-two scales: x / 2^-3 divides in float32, rounds half to even and
// saturates; DequantizeLinear multiplies back into output_dtype (needed: a
// float8e8m0 scale names no output type). float8e8m0 is no quantized type.
TEST(ReferenceFloat8E8M0, ScalesQuantizeAndDequantize) {
  const DType e8m0 = DType::kFloat8E8M0;
  Tensor q = OneNode().w(f32, {5}, {1.0, -3.3, 100, 0.1, 0.0625}).w(e8m0, {}, {0.125}).w(i8, {}, {0}).out(OpKind::kQuantizeLinear);
  EXPECT_EQ(values(q), (std::vector<double>{8, -26, 127, 1, 0}));
  Tensor per_axis = OneNode().w(f32, {2, 2}, {1, 1, 3, 3}).w(e8m0, {2}, {0.5, 4}).out(OpKind::kQuantizeLinear, attrs({{"axis", int64_t(1)}}));
  EXPECT_EQ(values(per_axis), (std::vector<double>{2, 0, 6, 1}));
  Tensor d = OneNode().w(i8, {4}, {8, -26, 127, 1}).w(e8m0, {}, {0.125}).out(OpKind::kDequantizeLinear, attrs({{"output_dtype", int64_t(f32)}}));
  EXPECT_EQ(d.dtype, f32);
  EXPECT_EQ(values(d), (std::vector<double>{1, -3.25, 15.875, 0.125}));
  const uint8_t smallest = 0x00;
  Tensor tiny = OneNode().w(i8, {1}, {3}).raw(e8m0, &smallest, 1).out(OpKind::kDequantizeLinear, attrs({{"output_dtype", int64_t(f32)}}));
  EXPECT_EQ(values(tiny)[0], double(3.0f * std::ldexp(1.0f, -127)));  // code 0: 2^-127, a float32 subnormal
  EXPECT_THROW(OneNode().w(i8, {1}, {3}).w(e8m0, {}, {1}).out(OpKind::kDequantizeLinear), Error);
  EXPECT_THROW(OneNode().w(f32, {1}, {3}).w(f32, {}, {1}).out(OpKind::kQuantizeLinear, attrs({{"output_dtype", int64_t(e8m0)}})), Error);
  EXPECT_THROW(OneNode().w(f32, {1}, {3}).out(OpKind::kCast, attrs({{"to", int64_t(e8m0)}, {"round_mode", std::string("zero")}})), Error);
}

}  // namespace
}  // namespace kiln::reference
