// The reference kernels of the quantized ops on small cases checked by hand:
// rounding half to even, saturation, per-axis and blocked parameters, zero
// points per row and column, padding that reads the zero point, int32 sums.
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

}  // namespace
}  // namespace kiln::reference
