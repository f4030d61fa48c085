// MaxPool with its Indices output and of integers, reductions of integers and
// bools and over empty sets, Dropout's mask, MatMuls that `kiln build` leaves
// (vector operands, integers) and FusedMatMuls whose batch dims broadcast
// partially, on the GPU against the reference interpreter (float64
// accumulation; integer products exact): seeded random non-zero data, float32,
// float16 and bfloat16 models, generic kernels and kernels specialized for the
// shapes, odd sizes (1, 7, 33, 1000 and more) and empty tensors. Integer and
// bool outputs (indices, masks, integer results) must equal the reference's.
#include <functional>

#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::OpKind;
using ir::ValueId;
using P = plan::Precision;
using S = runtime::KernelSpecialization;
using V = std::vector<int64_t>;

const DType kIntegers[] = {DType::kInt64, DType::kInt32, DType::kInt8, DType::kUInt8};

// Integer outputs (MaxPool's Indices) compare exactly.
class GpuPoolReduceMatMul : public GpuDTypeAndStrategyTest {
 protected:
  void expect_matches(OpNetwork& m, OpKind op, const std::string& what) { GpuDTypeAndStrategyTest::expect_matches(m, op, what, true); }
};

// Y and Indices of each window over 1-D, 2-D and 3-D inputs (pads, strides,
// dilations, ceil_mode), storage_order 0 and 1, and an empty batch.
void add_max_pools(OpNetwork& m, const std::function<ir::TensorData(const V&)>& data) {
  ValueId x1 = m.input("x1", data({1, 2, 1025})), x2 = m.input("x2", data({2, 3, 7, 33})), x3 = m.input("x3", data({1, 2, 3, 7, 5}));
  ValueId small = m.input("small", data({1, 1, 5, 5})), empty = m.input("empty", data({0, 3, 7, 7}));
  std::vector<std::pair<ValueId, ir::Attributes>> cases = {
      {x1, attrs({{"kernel_shape", V{4}}, {"strides", V{3}}, {"dilations", V{2}}, {"ceil_mode", int64_t(1)}})},
      {x2, attrs({{"kernel_shape", V{3, 2}}, {"strides", V{2, 1}}, {"pads", V{1, 0, 2, 1}}})},
      {x2, attrs({{"kernel_shape", V{2, 3}}, {"auto_pad", std::string("SAME_UPPER")}, {"strides", V{2, 2}}})},
      {x3, attrs({{"kernel_shape", V{2, 3, 2}}})},
      {small, attrs({{"kernel_shape", V{5, 5}}, {"pads", V{2, 2, 2, 2}}})},
      {small, attrs({{"kernel_shape", V{2, 2}}, {"strides", V{2, 2}}})},
      {empty, attrs({{"kernel_shape", V{3, 3}}})}};
  for (auto& [x, a] : cases)
    for (int64_t order : {0, 1}) {
      ir::Attributes with_order = a;
      with_order.set("storage_order", order);
      auto outs = m.net.add_op(OpKind::kMaxPool, {x}, with_order, 2);
      m.net.add_output(outs[0]);
      m.net.add_output(outs[1]);
    }
}

TEST_P(GpuPoolReduceMatMul, MaxPoolIndicesMatchReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3401);
  OpNetwork m;
  add_max_pools(m, [&](const V& dims) { return random_tensor(dtype, dims, rng); });
  expect_matches(m, OpKind::kMaxPool, "maxpool indices");
}

// Integer MaxPool (uint8 and int8, the integers ONNX's MaxPool takes), with
// many equal values: the first maximum's index, as the reference.
TEST(GpuPoolReduceMatMulIntegers, MaxPoolOfIntegers) {
  KILN_REQUIRE_GPU();
  for (DType dtype : {DType::kInt8, DType::kUInt8})
    for (S strategy : {S::kNone, S::kEager}) {
      SCOPED_TRACE(str(dtype_name(dtype), " ", spec_name(strategy)));
      std::mt19937 rng(3402);
      OpNetwork m;
      int64_t lo = dtype == DType::kUInt8 ? 0 : -100, hi = 100;
      add_max_pools(m, [&](const V& dims) { return random_ints(dtype, dims, rng, lo, hi); });
      m.net.finalize();
      expect_op_matches_reference(m.net, OpKind::kMaxPool, {m.feeds}, P::kFloat32, strategy, 0, -1, true);
    }
}

// Every reduction over a zero-sized axis (keepdims 0 and 1), a zero-sized
// kept axis, and all axes of an empty tensor: 0, 1, -inf or +inf as ONNX defines.
TEST_P(GpuPoolReduceMatMul, EmptySetReductionsMatchReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3403);
  OpNetwork m;
  ValueId x = m.input("x", random_tensor(dtype, {2, 0, 33}, rng)), y = m.input("y", random_tensor(dtype, {0, 7}, rng));
  ValueId axis1 = m.net.add_weight("axis1", int64s({1}, {1})), axis0 = m.net.add_weight("axis0", int64s({1}, {0}));
  for (OpKind op : {OpKind::kReduceSum, OpKind::kReduceProd, OpKind::kReduceMax, OpKind::kReduceMin, OpKind::kReduceL1, OpKind::kReduceL2,
                    OpKind::kReduceLogSum, OpKind::kReduceLogSumExp, OpKind::kReduceSumSquare}) {
    for (int64_t keep : {0, 1}) m.net.add_output(m.net.add_op1(op, {x, axis1}, attrs({{"keepdims", keep}})));
    m.net.add_output(m.net.add_op1(op, {y, axis0}));  // a 7-element output
    m.net.add_output(m.net.add_op1(op, {x, axis0}));  // no output element at all
    m.net.add_output(m.net.add_op1(op, {y}, attrs({{"keepdims", int64_t(0)}})));  // a scalar over nothing
  }
  expect_matches(m, OpKind::kReduceSum, "empty-set reductions");
}

// Integer reductions of every op over inner, outer and all axes (odd sizes,
// a zero-sized axis), exact; bools as ReduceMax (any) and ReduceMin (all).
TEST(GpuPoolReduceMatMulIntegers, ReductionsOfIntegersAndBools) {
  KILN_REQUIRE_GPU();
  const OpKind ops[] = {OpKind::kReduceSum, OpKind::kReduceMean, OpKind::kReduceMax, OpKind::kReduceMin, OpKind::kReduceProd,
                        OpKind::kReduceL1, OpKind::kReduceL2, OpKind::kReduceLogSum, OpKind::kReduceLogSumExp, OpKind::kReduceSumSquare};
  for (S strategy : {S::kNone, S::kEager}) {
    std::mt19937 rng(3404);
    OpNetwork m;
    ValueId inner = m.net.add_weight("inner", int64s({1}, {-1})), outer = m.net.add_weight("outer", int64s({2}, {0, 2}));
    ValueId middle = m.net.add_weight("middle", int64s({1}, {1}));
    for (DType dtype : kIntegers) {
      // Small magnitudes keep 21 factors' products within int64; sums past a narrow type saturate, as the reference's.
      int64_t lo = dtype == DType::kUInt8 ? 1 : -3, hi = 3;
      std::string name(dtype_name(dtype));
      ValueId x = m.input(name, random_ints(dtype, {7, 33, 3}, rng, lo, hi, true));
      ValueId row = m.input(name + "_row", random_ints(dtype, {1, 1025}, rng, lo, hi, true));
      ValueId none = m.input(name + "_empty", random_ints(dtype, {3, 0, 5}, rng, lo, hi, true));
      for (OpKind op : ops) {
        m.net.add_output(m.net.add_op1(op, {x, outer}));
        m.net.add_output(m.net.add_op1(op, {none, middle}, attrs({{"keepdims", int64_t(0)}})));
        if (op == OpKind::kReduceProd) continue;  // products of hundreds of factors overflow int64
        m.net.add_output(m.net.add_op1(op, {row, inner}));
        m.net.add_output(m.net.add_op1(op, {x}));
      }
    }
    std::vector<double> bits(7 * 33);
    for (size_t i = 0; i < bits.size(); ++i) bits[i] = double(rng() % 4 == 0);
    for (size_t i = 0; i < 33; ++i) bits[i] = 1;  // a row of all true
    ValueId b = m.input("bools", reference::make_tensor(DType::kBool, {7, 33}, bits));
    ValueId bempty = m.input("bools_empty", reference::make_tensor(DType::kBool, {2, 0, 4}, {}));
    for (OpKind op : {OpKind::kReduceMax, OpKind::kReduceMin}) {
      m.net.add_output(m.net.add_op1(op, {b, inner}));
      m.net.add_output(m.net.add_op1(op, {b, m.net.add_weight(str("rows_", int(op)), int64s({1}, {0}))}));
      m.net.add_output(m.net.add_op1(op, {b}, attrs({{"keepdims", int64_t(0)}})));
      m.net.add_output(m.net.add_op1(op, {bempty, middle}));
    }
    m.net.finalize();
    SCOPED_TRACE(spec_name(strategy));
    expect_op_matches_reference(m.net, OpKind::kReduceMax, {m.feeds}, P::kFloat32, strategy, 0, -1, true);
  }
}

// Dropout in inference with its mask (all true), with and without a ratio, odd sizes and an empty tensor.
TEST_P(GpuPoolReduceMatMul, DropoutMaskMatchesReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3405);
  OpNetwork m;
  ValueId ratio = m.input("ratio", random_tensor(dtype, {}, rng, 0.2, 0.8));
  for (const V& dims : {V{1}, V{7, 33}, V{3, 1025}, V{2, 0, 5}}) {
    ValueId x = m.input(str("x", dims.size(), "_", dims.back()), random_tensor(dtype, dims, rng));
    for (bool with_ratio : {false, true}) {
      auto outs = m.net.add_op(OpKind::kDropout, with_ratio ? std::vector<ValueId>{x, ratio} : std::vector<ValueId>{x}, {}, 2);
      m.net.add_output(outs[0]);
      m.net.add_output(outs[1]);
    }
  }
  expect_matches(m, OpKind::kDropout, "dropout mask");
}

// MatMuls with a vector operand (ONNX's 1d_1d, 1d_3d and 4d_1d among them),
// which `kiln build` leaves to the generic kernel; an empty depth gives zeros.
TEST_P(GpuPoolReduceMatMul, VectorMatMulsMatchReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3406);
  OpNetwork m;
  const std::vector<std::pair<V, V>> cases = {{{3}, {3}},          {{4}, {2, 4, 1}},      {{1, 2, 4, 3}, {3}}, {{1}, {1}},
                                              {{1025}, {1025}},    {{33}, {2, 3, 33, 7}}, {{3, 1, 7, 33}, {33}}, {{0}, {0, 5}},
                                              {{7, 0}, {0}}};
  for (size_t c = 0; c < cases.size(); ++c) {
    ValueId a = m.input(str("a", c), random_tensor(dtype, cases[c].first, rng));
    ValueId b = m.input(str("b", c), random_tensor(dtype, cases[c].second, rng));
    m.net.add_output(m.net.add_op1(OpKind::kMatMul, {a, b}));
  }
  expect_matches(m, OpKind::kMatMul, "vector matmul");
}

// Integer MatMuls: batch dims broadcast per dim, vector operands, odd sizes,
// an empty depth; int64 products past 2^63 wrap as the reference's.
TEST(GpuPoolReduceMatMulIntegers, IntegerMatMuls) {
  KILN_REQUIRE_GPU();
  const std::vector<std::pair<V, V>> cases = {{{7, 33}, {33, 5}}, {{3, 1, 7, 4}, {1, 2, 4, 5}}, {{33}, {2, 33, 3}},
                                              {{2, 1, 9}, {9}},   {{1, 1025}, {1025, 1}},       {{3, 0}, {0, 4}}};
  for (DType dtype : kIntegers)
    for (S strategy : {S::kNone, S::kEager}) {
      SCOPED_TRACE(str(dtype_name(dtype), " ", spec_name(strategy)));
      std::mt19937 rng(3407);
      OpNetwork m;
      int64_t lo = dtype == DType::kUInt8 ? 0 : -9, hi = 9;
      for (size_t c = 0; c < cases.size(); ++c) {
        ValueId a = m.input(str("a", c), random_ints(dtype, cases[c].first, rng, lo, hi, true));
        ValueId b = m.input(str("b", c), random_ints(dtype, cases[c].second, rng, lo, hi, true));
        m.net.add_output(m.net.add_op1(OpKind::kMatMul, {a, b}));
      }
      if (dtype == DType::kInt64) {
        ir::TensorData big = int64s({2, 2}, {int64_t(1) << 62, 3, -(int64_t(1) << 61), 7});
        ValueId a = m.input("big_a", big), b = m.input("big_b", big);
        m.net.add_output(m.net.add_op1(OpKind::kMatMul, {a, b}));
      }
      m.net.finalize();
      expect_op_matches_reference(m.net, OpKind::kMatMul, {m.feeds}, P::kFloat32, strategy, 0, -1, true);
    }
}

// Batched products whose batch dims broadcast per dim ([3,1] with [1,2], and
// a B whose batch covers only the inner dims of A's), with a bias and ReLU
// that `kiln build` fuses, and a residual.
TEST_P(GpuPoolReduceMatMul, PartiallyBroadcastFusedMatMulsMatchReference) {
  KILN_REQUIRE_GPU();
  DType dtype = std::get<0>(GetParam());
  std::mt19937 rng(3408);
  OpNetwork m;
  ValueId a = m.input("a", random_tensor(dtype, {3, 1, 3, 4}, rng)), b = m.input("b", random_tensor(dtype, {1, 2, 4, 2}, rng));
  m.net.add_output(m.net.add_op1(OpKind::kMatMul, {a, b}));
  ValueId a2 = m.input("a2", random_tensor(dtype, {3, 1, 7, 33}, rng)), b2 = m.input("b2", random_tensor(dtype, {1, 2, 33, 5}, rng));
  ValueId bias = m.net.add_weight("bias", random_tensor(dtype, {5}, rng));
  m.net.add_output(m.net.add_op1(OpKind::kRelu, {m.net.add_op1(OpKind::kAdd, {m.net.add_op1(OpKind::kMatMul, {a2, b2}), bias})}));
  ValueId a3 = m.input("a3", random_tensor(dtype, {2, 3, 9, 1025}, rng)), b3 = m.input("b3", random_tensor(dtype, {3, 1025, 7}, rng));
  ValueId res = m.input("res", random_tensor(dtype, {2, 3, 9, 7}, rng));
  m.net.add_output(m.net.add_op1(OpKind::kAdd, {m.net.add_op1(OpKind::kMatMul, {a3, b3}), res}));
  expect_matches(m, OpKind::kFusedMatMul, "partially broadcast fusedmatmul");
}

INSTANTIATE_TEST_SUITE_P(Kernels, GpuPoolReduceMatMul,
                         ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                                            ::testing::Values(S::kNone, S::kEager)),
                         dtype_and_strategy_name);

}  // namespace
}  // namespace kiln::testing
