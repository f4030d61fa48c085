// The reference interpreter on int16, uint16, uint32 and uint64: wrap-around
// arithmetic, and uint64 values of 2^63 and more, which travel through the
// interpreter as int64 bit patterns, ordered, divided and shifted as unsigned.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/reference.h"

namespace kiln::reference {
namespace {

using ir::Dim;
using ir::OpKind;

constexpr uint64_t kTop = uint64_t(1) << 63;

template <class T>
Tensor tensor_of(DType dtype, const std::vector<T>& v) {
  Tensor t;
  t.dtype = dtype;
  t.dims = {int64_t(v.size())};
  t.data = Buffer::copy_of(v.data(), v.size() * sizeof(T));
  return t;
}

template <class T>
std::vector<T> elements(const Tensor& t) {
  EXPECT_EQ(dtype_size(t.dtype), sizeof(T)) << dtype_name(t.dtype);
  std::vector<T> v(size_t(t.numel()));
  std::memcpy(v.data(), t.data.data(), v.size() * sizeof(T));
  return v;
}

// Output `output` of one op over the given inputs (named in0, in1, ...).
Tensor run_op(OpKind op, const std::vector<Tensor>& inputs, ir::Attributes attrs = {}, int outputs = 1, int output = 0) {
  ir::Network net;
  std::vector<ir::ValueId> ids;
  std::map<std::string, Tensor> feeds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string name = str("in", i);
    ids.push_back(net.add_input(name, inputs[i].dtype, ir::shape_of(inputs[i].dims)));
    feeds[name] = inputs[i];
  }
  std::vector<ir::ValueId> outs = net.add_op(op, ids, attrs, outputs);
  net.add_output(outs[size_t(output)]);
  net.finalize();
  return run(net, feeds).at(0);
}

TEST(ReferenceIntegerDtypes, Uint64ComparesDividesAndShiftsAsUnsigned) {
  using V = std::vector<uint64_t>;
  Tensor a = tensor_of(DType::kUInt64, V{kTop + 5, 3, ~uint64_t(0), 7});
  Tensor b = tensor_of(DType::kUInt64, V{2, kTop, 16, 7});
  EXPECT_EQ(elements<uint8_t>(run_op(OpKind::kLess, {a, b})), (std::vector<uint8_t>{0, 1, 0, 0}));
  EXPECT_EQ(elements<uint8_t>(run_op(OpKind::kGreaterOrEqual, {a, b})), (std::vector<uint8_t>{1, 0, 1, 1}));
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kDiv, {a, b})), (V{(kTop + 5) / 2, 0, ~uint64_t(0) / 16, 1}));
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kMod, {a, b})), (V{1, 3, 15, 0}));
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kMax, {a, b})), (V{kTop + 5, kTop, ~uint64_t(0), 7}));
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kMin, {a, b})), (V{2, 3, 16, 7}));
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kAbs, {a})), elements<uint64_t>(a));
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kSign, {a})), (V{1, 1, 1, 1}));
  ir::Attributes right;
  right.set("direction", std::string("RIGHT"));
  Tensor amount = tensor_of(DType::kUInt64, V{1, 63, 4, 64});
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kBitShift, {a, amount}, right)), (V{(kTop + 5) >> 1, 0, ~uint64_t(0) >> 4, 0}));
  // Wrap-around: no saturation, no sign.
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kAdd, {a, b})), (V{kTop + 7, kTop + 3, 15, 14}));
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kSub, {b, a})), (V{-(kTop + 3), kTop - 3, 17, 0}));
  Tensor lo = tensor_of(DType::kUInt64, V{4}), hi = tensor_of(DType::kUInt64, V{kTop + 1});
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kClip, {a, lo, hi})), (V{kTop + 1, 4, kTop + 1, 7}));
}

TEST(ReferenceIntegerDtypes, NarrowTypesWrapIntoTheirWidth) {
  Tensor a16 = tensor_of(DType::kInt16, std::vector<int16_t>{32767, -32768, 300});
  Tensor b16 = tensor_of(DType::kInt16, std::vector<int16_t>{1, -1, 300});
  EXPECT_EQ(elements<int16_t>(run_op(OpKind::kAdd, {a16, b16})), (std::vector<int16_t>{-32768, 32767, 600}));
  EXPECT_EQ(elements<int16_t>(run_op(OpKind::kMul, {a16, b16})), (std::vector<int16_t>{32767, -32768, int16_t(90000 - 65536)}));
  Tensor u16 = tensor_of(DType::kUInt16, std::vector<uint16_t>{0, 65535, 40000});
  Tensor one16 = tensor_of(DType::kUInt16, std::vector<uint16_t>{1, 1, 30000});
  EXPECT_EQ(elements<uint16_t>(run_op(OpKind::kSub, {u16, one16})), (std::vector<uint16_t>{65535, 65534, 10000}));
  EXPECT_EQ(elements<uint16_t>(run_op(OpKind::kAdd, {u16, one16})), (std::vector<uint16_t>{1, 0, 4464}));
  Tensor u32 = tensor_of(DType::kUInt32, std::vector<uint32_t>{4000000000u, 3, 0x80000000u});
  Tensor two32 = tensor_of(DType::kUInt32, std::vector<uint32_t>{2, 4000000000u, 1});
  EXPECT_EQ(elements<uint32_t>(run_op(OpKind::kMul, {u32, two32})), (std::vector<uint32_t>{3705032704u, 3410065408u, 0x80000000u}));
  EXPECT_EQ(elements<uint8_t>(run_op(OpKind::kGreater, {u32, two32})), (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(elements<uint32_t>(run_op(OpKind::kBitwiseNot, {u32})), (std::vector<uint32_t>{294967295u, 0xfffffffcu, 0x7fffffffu}));
}

TEST(ReferenceIntegerDtypes, CastsFollowOnnx) {
  auto cast = [](const Tensor& x, DType to) {
    ir::Attributes a;
    a.set("to", int64_t(to));
    return run_op(OpKind::kCast, {x}, a);
  };
  Tensor big = tensor_of(DType::kUInt64, std::vector<uint64_t>{~uint64_t(0), kTop, 70000});
  EXPECT_EQ(elements<float>(cast(big, DType::kFloat32)), (std::vector<float>{18446744073709551616.0f, 9223372036854775808.0f, 70000}));
  EXPECT_EQ(elements<double>(cast(big, DType::kFloat64)), (std::vector<double>{18446744073709551616.0, 9223372036854775808.0, 70000}));
  // Integer to integer keeps the low bits, as C and numpy do.
  EXPECT_EQ(elements<int64_t>(cast(big, DType::kInt64)), (std::vector<int64_t>{-1, INT64_MIN, 70000}));
  EXPECT_EQ(elements<uint16_t>(cast(big, DType::kUInt16)), (std::vector<uint16_t>{65535, 0, 70000 - 65536}));
  Tensor neg = tensor_of(DType::kInt16, std::vector<int16_t>{-1, -32768, 5});
  EXPECT_EQ(elements<uint32_t>(cast(neg, DType::kUInt32)), (std::vector<uint32_t>{0xffffffffu, 0xffff8000u, 5}));
  EXPECT_EQ(elements<uint64_t>(cast(neg, DType::kUInt64)), (std::vector<uint64_t>{~uint64_t(0), ~uint64_t(0) - 32767, 5}));
  // Float to integer truncates toward zero and saturates.
  Tensor f = tensor_of(DType::kFloat32, std::vector<float>{3.9f, 65535.5f, 4e9f});
  EXPECT_EQ(elements<uint16_t>(cast(f, DType::kUInt16)), (std::vector<uint16_t>{3, 65535, 65535}));
  EXPECT_EQ(elements<uint32_t>(cast(f, DType::kUInt32)), (std::vector<uint32_t>{3, 65535, 4000000000u}));
}

TEST(ReferenceIntegerDtypes, ArgMaxTopKAndReduceMaxSeeTheTopBit) {
  Tensor x = tensor_of(DType::kUInt64, std::vector<uint64_t>{5, kTop + 1, kTop, 9, kTop + 1});
  ir::Attributes keep;
  keep.set("keepdims", int64_t(0));
  EXPECT_EQ(elements<int64_t>(run_op(OpKind::kArgMax, {x}, keep)), (std::vector<int64_t>{1}));
  EXPECT_EQ(elements<int64_t>(run_op(OpKind::kArgMin, {x}, keep)), (std::vector<int64_t>{0}));
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kReduceMax, {x}, keep)), (std::vector<uint64_t>{kTop + 1}));
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kReduceMin, {x}, keep)), (std::vector<uint64_t>{5}));
  keep.set("select_last_index", int64_t(1));
  EXPECT_EQ(elements<int64_t>(run_op(OpKind::kArgMax, {x}, keep)), (std::vector<int64_t>{4}));
  Tensor k = tensor_of(DType::kInt64, std::vector<int64_t>{3});
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kTopK, {x, k}, {}, 2, 0)), (std::vector<uint64_t>{kTop + 1, kTop + 1, kTop}));
  EXPECT_EQ(elements<int64_t>(run_op(OpKind::kTopK, {x, k}, {}, 2, 1)), (std::vector<int64_t>{1, 4, 2}));
  ir::Attributes smallest;
  smallest.set("largest", int64_t(0));
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kTopK, {x, k}, smallest, 2, 0)), (std::vector<uint64_t>{5, 9, kTop}));
  EXPECT_EQ(elements<uint64_t>(run_op(OpKind::kUnique, {x}, {}, 4, 0)), (std::vector<uint64_t>{5, 9, kTop, kTop + 1}));
}

TEST(ReferenceIntegerDtypes, QuantizeLinearSaturatesToSixteenBits) {
  Tensor x = tensor_of(DType::kFloat32, std::vector<float>{-1e6f, 2.5f, 1e6f, 3.5f});
  Tensor scale = tensor_of(DType::kFloat32, std::vector<float>{1.0f});
  scale.dims = {};
  Tensor zero16 = tensor_of(DType::kInt16, std::vector<int16_t>{10});
  zero16.dims = {};
  EXPECT_EQ(elements<int16_t>(run_op(OpKind::kQuantizeLinear, {x, scale, zero16})), (std::vector<int16_t>{-32768, 12, 32767, 14}));
  Tensor zero_u16 = tensor_of(DType::kUInt16, std::vector<uint16_t>{0});
  zero_u16.dims = {};
  Tensor q = run_op(OpKind::kQuantizeLinear, {x, scale, zero_u16});
  EXPECT_EQ(elements<uint16_t>(q), (std::vector<uint16_t>{0, 2, 65535, 4}));
  EXPECT_EQ(elements<float>(run_op(OpKind::kDequantizeLinear, {q, scale, zero_u16})), (std::vector<float>{0, 2, 65535, 4}));
}

}  // namespace
}  // namespace kiln::reference
