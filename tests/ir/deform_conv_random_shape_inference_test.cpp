// Shape inference of DeformConv (conv family) and of the random ops
// (generator family): output shapes over symbolic dims, and the errors that
// name the node and what was expected.
#include <gtest/gtest.h>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"
#include "inference_test_util.h"

namespace kiln::ir {
namespace {

using inference_test::attrs;
using inference_test::outcome;

const Dim N = Dim::symbol("N"), H = Dim::symbol("H");

testing::AssertionResult has(const std::string& message, const std::string& part) {
  return message.find(part) != std::string::npos ? testing::AssertionSuccess() : testing::AssertionFailure() << message;
}

// DeformConv of X [x], W [w], offset [offset] and optionally a mask.
std::string deform_conv(Shape x, Shape w, Shape offset, Attributes a = {}, std::optional<Shape> mask = std::nullopt,
                        DType offset_dtype = DType::kFloat32) {
  Network net;
  std::vector<ValueId> in{net.add_input("x", DType::kFloat32, x), net.add_input("w", DType::kFloat32, w),
                          net.add_input("offset", offset_dtype, offset)};
  if (mask) in.insert(in.end(), {kNoValue, net.add_input("mask", DType::kFloat32, *mask)});
  return outcome(net, net.add_op1(OpKind::kDeformConv, in, a, "dc"));
}

TEST(DeformConvShapes, OutputFollowsTheConvWindow) {
  EXPECT_EQ(deform_conv({N, Dim(2), Dim(7), Dim(9)}, {Dim(4), Dim(2), Dim(3), Dim(3)}, {N, Dim(18), Dim(5), Dim(7)}),
            "float32[N,4,5,7]");
  Attributes strided = attrs({{"strides", std::vector<int64_t>{2, 2}}, {"pads", std::vector<int64_t>{1, 1, 1, 1}},
                              {"group", int64_t(2)}, {"offset_group", int64_t(2)}});
  EXPECT_EQ(deform_conv({Dim(1), Dim(4), Dim(7), Dim(8)}, {Dim(6), Dim(2), Dim(3), Dim(3)}, {Dim(1), Dim(36), Dim(4), Dim(4)}, strided,
                        Shape{Dim(1), Dim(18), Dim(4), Dim(4)}),
            "float32[1,6,4,4]");
  EXPECT_EQ(deform_conv({N, Dim(1), H, Dim(5)}, {Dim(1), Dim(1), Dim(2), Dim(2)}, {N, Dim(8), Dim::symbol("OH"), Dim(4)}),
            "float32[N,1,H - 1,4]");
}

TEST(DeformConvShapes, ErrorsNameWhatWasExpected) {
  Shape x{Dim(1), Dim(2), Dim(5), Dim(5)}, w{Dim(3), Dim(2), Dim(2), Dim(2)};
  EXPECT_TRUE(has(deform_conv(x, w, {Dim(1), Dim(6), Dim(4), Dim(4)}),
                  "node 'dc' (DeformConv): input 2 ('offset') has shape [1,6,4,4]; expected [1,8,4,4]"));
  EXPECT_TRUE(has(deform_conv(x, w, {Dim(1), Dim(8), Dim(4), Dim(4)}, {}, Shape{Dim(1), Dim(8), Dim(4), Dim(4)}),
                  "input 4 ('mask') has shape [1,8,4,4]; expected [1,4,4,4]"));
  EXPECT_TRUE(has(deform_conv(x, w, {Dim(1), Dim(8), Dim(4), Dim(4)}, attrs({{"offset_group", int64_t(3)}})),
                  "input channels (2) are not divisible by offset_group 3"));
  EXPECT_TRUE(has(deform_conv({Dim(1), Dim(2), Dim(5)}, {Dim(3), Dim(2), Dim(2)}, {Dim(1), Dim(4), Dim(4)}),
                  "kiln runs DeformConv over 2 spatial dims"));
  EXPECT_TRUE(has(deform_conv(x, w, {Dim(1), Dim(8), Dim(4), Dim(4)}, {}, std::nullopt, DType::kFloat16), "must match"));
}

std::string random_op(OpKind op, std::vector<std::pair<DType, Shape>> inputs, Attributes a) {
  Network net;
  std::vector<ValueId> in;
  for (size_t i = 0; i < inputs.size(); ++i) in.push_back(net.add_input(str("in", i), inputs[i].first, inputs[i].second));
  return outcome(net, net.add_op1(op, in, a, "rnd"));
}

TEST(RandomShapes, OutputsFollowTheShapeTheInputOrTheSamples) {
  EXPECT_EQ(random_op(OpKind::kRandomUniform, {}, attrs({{"shape", std::vector<int64_t>{2, 0, 7}}})), "float32[2,0,7]");
  EXPECT_EQ(random_op(OpKind::kRandomNormal, {}, attrs({{"shape", std::vector<int64_t>{3}}, {"dtype", int64_t(DType::kFloat64)}})),
            "float64[3]");
  EXPECT_EQ(random_op(OpKind::kRandomUniformLike, {{DType::kBFloat16, {N, Dim(3)}}}, {}), "bfloat16[N,3]");
  EXPECT_EQ(random_op(OpKind::kRandomNormalLike, {{DType::kInt64, {N}}}, attrs({{"dtype", int64_t(DType::kFloat16)}})), "float16[N]");
  EXPECT_EQ(random_op(OpKind::kBernoulli, {{DType::kFloat32, {N, H}}}, {}), "float32[N,H]");
  EXPECT_EQ(random_op(OpKind::kBernoulli, {{DType::kFloat64, {Dim(5)}}}, attrs({{"dtype", int64_t(DType::kBool)}})), "bool[5]");
  EXPECT_EQ(random_op(OpKind::kMultinomial, {{DType::kFloat32, {N, Dim(10)}}}, attrs({{"sample_size", int64_t(7)}})), "int32[N,7]");
  EXPECT_EQ(random_op(OpKind::kMultinomial, {{DType::kFloat16, {Dim(2), H}}}, attrs({{"dtype", int64_t(DType::kInt64)}})),
            "int64[2,1]");
}

TEST(RandomShapes, ErrorsNameWhatWasExpected) {
  EXPECT_TRUE(has(random_op(OpKind::kRandomUniform, {}, {}), "node 'rnd' (RandomUniform): attribute 'shape' is required"));
  EXPECT_TRUE(has(random_op(OpKind::kRandomUniform, {}, attrs({{"shape", std::vector<int64_t>{2, -1}}})), "negative dim -1"));
  EXPECT_TRUE(has(random_op(OpKind::kRandomUniform, {}, attrs({{"shape", std::vector<int64_t>{2}}, {"low", 2.0}, {"high", 1.0}})),
                  "low 2 is not below high 1"));
  EXPECT_TRUE(has(random_op(OpKind::kRandomUniformLike, {{DType::kInt32, {Dim(2)}}}, {}),
                  "output dtype int32; expected a float type"));
  EXPECT_TRUE(has(random_op(OpKind::kMultinomial, {{DType::kFloat32, {Dim(2), Dim(3)}}}, attrs({{"dtype", int64_t(DType::kFloat32)}})),
                  "Multinomial makes int32 or int64"));
  EXPECT_TRUE(has(random_op(OpKind::kMultinomial, {{DType::kFloat32, {Dim(2), Dim(0)}}}, {}), "input 0 has no classes"));
  EXPECT_TRUE(has(random_op(OpKind::kBernoulli, {{DType::kInt32, {Dim(2)}}}, {}), "expected a float type"));
}

}  // namespace
}  // namespace kiln::ir
