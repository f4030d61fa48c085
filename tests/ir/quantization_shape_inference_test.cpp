// Shape and dtype inference of the quantized ops, and the errors for
// parameters that do not fit: each names the node and what was expected.
#include <gtest/gtest.h>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"
#include "inference_test_util.h"

namespace kiln::ir {
namespace {

using inference_test::attrs;

const Dim N = Dim::symbol("N");
constexpr DType f32 = DType::kFloat32, i8 = DType::kInt8, u8 = DType::kUInt8;

// A network of one node over inputs of these dtypes and shapes; returns its output.
struct OneNode {
  Network net;
  ValueId out = kNoValue;
  OneNode(OpKind op, const std::vector<std::pair<DType, Shape>>& inputs, Attributes a = {}) {
    std::vector<ValueId> ids;
    for (size_t i = 0; i < inputs.size(); ++i) ids.push_back(net.add_input(str("in", i), inputs[i].first, inputs[i].second));
    out = net.add_op1(op, ids, std::move(a), "q");
    net.add_output(out);
  }
  const Value& finalized() {
    net.finalize();
    return net.value(out);
  }
};

void expect_error(OneNode&& n, const std::string& text) {
  try {
    n.net.finalize();
    ADD_FAILURE() << "no error; expected one saying " << text;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("node 'q'"), std::string::npos) << e.what();
  }
}

TEST(QuantizationInference, QuantizeTakesTheZeroPointsTypeElseOutputDtypeElseUint8) {
  EXPECT_EQ(OneNode(OpKind::kQuantizeLinear, {{f32, {N, Dim(3)}}, {f32, {Dim(3)}}, {i8, {Dim(3)}}}).finalized().dtype, i8);
  EXPECT_EQ(OneNode(OpKind::kQuantizeLinear, {{f32, {N}}, {f32, {}}}, attrs({{"output_dtype", int64_t(i8)}})).finalized().dtype, i8);
  EXPECT_EQ(OneNode(OpKind::kQuantizeLinear, {{f32, {N}}, {f32, {}}, {DType::kUInt16, {}}}).finalized().dtype, DType::kUInt16);
  OneNode half(OpKind::kQuantizeLinear, {{DType::kFloat16, {N, Dim(5)}}, {DType::kFloat16, {}}});
  const Value& y = half.finalized();
  EXPECT_EQ(y.dtype, u8);
  EXPECT_EQ(shape_to_string(y.shape), "[N,5]");
  expect_error(OneNode(OpKind::kQuantizeLinear, {{f32, {N}}, {f32, {}}, {u8, {}}}, attrs({{"output_dtype", int64_t(i8)}})),
               "differs from the zero point's dtype uint8");
  expect_error(OneNode(OpKind::kQuantizeLinear, {{f32, {N}}, {f32, {}}}, attrs({{"output_dtype", int64_t(DType::kInt32)}})),
               "kiln quantizes to int8, uint8, int16, uint16, the 4- and 2-bit integers");
}

TEST(QuantizationInference, DequantizeTakesTheScalesTypeElseOutputDtype) {
  EXPECT_EQ(OneNode(OpKind::kDequantizeLinear, {{i8, {N, Dim(2)}}, {DType::kBFloat16, {}}}).finalized().dtype, DType::kBFloat16);
  EXPECT_EQ(OneNode(OpKind::kDequantizeLinear, {{u8, {N}}, {DType::kFloat16, {}}}, attrs({{"output_dtype", int64_t(f32)}}))
                .finalized()
                .dtype,
            f32);
  expect_error(OneNode(OpKind::kDequantizeLinear, {{f32, {N}}, {f32, {}}}), "input 0 has dtype float32");
  expect_error(OneNode(OpKind::kDequantizeLinear, {{i8, {N}}, {f32, {}}, {u8, {}}}), "have dtypes int8 and uint8");
}

TEST(QuantizationInference, ScalesArePerTensorPerAxisOrBlocked) {
  Shape x{Dim(2), Dim(6), Dim(5)};
  EXPECT_NO_THROW(OneNode(OpKind::kQuantizeLinear, {{f32, x}, {f32, {Dim(6)}}, {u8, {Dim(6)}}}).finalized());
  EXPECT_NO_THROW(OneNode(OpKind::kQuantizeLinear, {{f32, x}, {f32, {Dim(5)}}}, attrs({{"axis", int64_t(-1)}})).finalized());
  EXPECT_NO_THROW(OneNode(OpKind::kQuantizeLinear, {{f32, x}, {f32, {Dim(2), Dim(2), Dim(5)}}},
                          attrs({{"axis", int64_t(1)}, {"block_size", int64_t(4)}}))
                      .finalized());
  expect_error(OneNode(OpKind::kQuantizeLinear, {{f32, x}, {f32, {Dim(5)}}}), "the scale's length and x's dim along axis do not match");
  expect_error(OneNode(OpKind::kDequantizeLinear, {{i8, x}, {f32, {Dim(6)}}, {i8, {Dim(3)}}}),
               "the zero point's and the scale's dims do not match");
  expect_error(OneNode(OpKind::kQuantizeLinear, {{f32, x}, {f32, {Dim(2), Dim(3), Dim(5)}}},
                       attrs({{"axis", int64_t(1)}, {"block_size", int64_t(4)}})),
               "is not ceil(6 / block_size 4)");
  expect_error(OneNode(OpKind::kQuantizeLinear, {{f32, x}, {f32, {Dim(6), Dim(5)}}}), "blocked quantization needs block_size");
  expect_error(OneNode(OpKind::kQuantizeLinear, {{f32, x}, {f32, {Dim(6)}}}, attrs({{"axis", int64_t(3)}})), "axis 3 is out of range");
}

TEST(QuantizationInference, MatMulIntegerIsInt32WithBroadcastBatch) {
  OneNode batched(OpKind::kMatMulInteger, {{u8, {Dim(2), Dim(1), N, Dim(4)}}, {i8, {Dim(3), Dim(4), Dim(5)}}});
  const Value& y = batched.finalized();
  EXPECT_EQ(y.dtype, DType::kInt32);
  EXPECT_EQ(shape_to_string(y.shape), "[2,3,N,5]");
  // Zero points per row of A (ONNX's M vector for a 2-D A) and per column of B.
  EXPECT_NO_THROW(
      OneNode(OpKind::kMatMulInteger, {{u8, {Dim(7), Dim(4)}}, {i8, {Dim(4), Dim(5)}}, {u8, {Dim(7)}}, {i8, {Dim(5)}}}).finalized());
  EXPECT_NO_THROW(OneNode(OpKind::kMatMulInteger,
                          {{u8, {Dim(2), Dim(7), Dim(4)}}, {i8, {Dim(4), Dim(5)}}, {u8, {Dim(2), Dim(7), Dim(1)}}, {i8, {Dim(1), Dim(5)}}})
                      .finalized());
  expect_error(OneNode(OpKind::kMatMulInteger, {{u8, {Dim(7), Dim(4)}}, {i8, {Dim(4), Dim(5)}}, {u8, {Dim(4)}}}), "per row of A");
  expect_error(OneNode(OpKind::kMatMulInteger, {{u8, {Dim(7), Dim(4)}}, {i8, {Dim(4), Dim(5)}}, {u8, {}}, {i8, {Dim(4), Dim(1)}}}),
               "one value or one per column of B");
  expect_error(OneNode(OpKind::kMatMulInteger, {{f32, {Dim(7), Dim(4)}}, {i8, {Dim(4), Dim(5)}}}), "input 0 has dtype float32");
}

TEST(QuantizationInference, QLinearMatMulTakesYsTypeAndOneYScale) {
  Shape a{Dim(3), Dim(4)}, b{Dim(4), Dim(2)};
  std::vector<std::pair<DType, Shape>> in{{i8, a}, {f32, {}}, {i8, {}}, {u8, b}, {f32, {Dim(2)}}, {u8, {Dim(2)}}, {f32, {}}, {u8, {}}};
  OneNode product(OpKind::kQLinearMatMul, in);
  const Value& y = product.finalized();
  EXPECT_EQ(y.dtype, u8);
  EXPECT_EQ(shape_to_string(y.shape), "[3,2]");
  in[6].second = {Dim(2)};
  expect_error(OneNode(OpKind::kQLinearMatMul, in), "expected a single value");
  in[6].second = {};
  in[4].first = DType::kFloat16;
  expect_error(OneNode(OpKind::kQLinearMatMul, in), "they must match");
}

TEST(QuantizationInference, IntegerConvsFollowConvGeometry) {
  Attributes a = attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"strides", std::vector<int64_t>{2, 2}}});
  Shape x{N, Dim(4), Dim(7), Dim(9)}, w{Dim(6), Dim(4), Dim(3), Dim(3)};
  OneNode conv(OpKind::kConvInteger, {{u8, x}, {i8, w}, {u8, {}}, {i8, {Dim(6)}}}, a);
  const Value& y = conv.finalized();
  EXPECT_EQ(y.dtype, DType::kInt32);
  EXPECT_EQ(shape_to_string(y.shape), "[N,6,4,5]");
  expect_error(OneNode(OpKind::kConvInteger, {{u8, x}, {i8, w}, {u8, {Dim(4)}}}, a), "expected one value");
  std::vector<std::pair<DType, Shape>> q{{u8, x}, {f32, {}}, {u8, {}}, {i8, w}, {f32, {Dim(6)}}, {i8, {Dim(6)}}, {f32, {}}, {i8, {}},
                                         {DType::kInt32, {Dim(6)}}};
  EXPECT_EQ(OneNode(OpKind::kQLinearConv, q, a).finalized().dtype, i8);
  q[4].second = {Dim(5)};
  expect_error(OneNode(OpKind::kQLinearConv, q, a), "the per-channel parameter's length and the output channels do not match");
  q[4].second = {};
  q[8].first = f32;
  expect_error(OneNode(OpKind::kQLinearConv, q, a), "input 8 has dtype float32");
}

}  // namespace
}  // namespace kiln::ir
