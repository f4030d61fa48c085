// The GPU kernels of InstanceNormalization, GroupNormalization and LRN, and of
// BitShift, the Bitwise ops and Mod, against the reference interpreter on
// seeded random non-zero data: every float precision (fp32, fp16, bf16) or
// every integer dtype, with the generic kernels and with shape-specialized ones.
#include "gpu_test_util.h"
#include "kiln/error.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using P = plan::Precision;
using S = runtime::KernelSpecialization;

// The values an integer dtype holds, as far as the random data goes.
std::pair<int64_t, int64_t> int_range(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return {0, 255};
    case DType::kInt8: return {-128, 127};
    case DType::kInt32: return {-2147483648LL, 2147483647LL};
    default: return {-(int64_t(1) << 62), int64_t(1) << 62};
  }
}

// Integer outputs must match the reference exactly (doubles would hide the low bits of int64).
void expect_ints_match_reference(const ir::Network& net, const std::map<std::string, ir::TensorData>& inputs, S strategy,
                                 const std::string& label) {
  SCOPED_TRACE(label);
  std::vector<ir::TensorData> got = run_on_gpu(net, inputs, plan::Precision::kFloat32, strategy),
                              want = reference::run(net, inputs);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].dtype, want[i].dtype) << "output " << i;
    ASSERT_EQ(got[i].dims, want[i].dims) << "output " << i;
    std::vector<int64_t> a = ir::read_ints(got[i]), b = ir::read_ints(want[i]);
    for (size_t k = 0; k < a.size(); ++k) ASSERT_EQ(a[k], b[k]) << "output " << i << " element " << k;
  }
}

class GpuNormalization : public ::testing::TestWithParam<std::tuple<P, S>> {};

// x[2, 6, 5, 7] through instance norm, group norm (3 groups; and 1 group of
// 3 * 400 elements, more than a block's threads) and LRN (an odd and an even window).
TEST_P(GpuNormalization, MatchReference) {
  KILN_REQUIRE_GPU();
  auto [precision, strategy] = GetParam();
  double tol = precision == P::kFloat32 ? 2e-5 : precision == P::kFloat16 ? 2e-2 : 6e-2;
  const uint32_t seed = 4321;
  std::mt19937 rng(seed);
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(6), Dim(5), Dim(7)});
  ValueId big = net.add_input("big", DType::kFloat32, {Dim(1), Dim(3), Dim(20), Dim(20)});
  auto weight = [&](const std::string& name, int64_t n) { return net.add_weight(name, random_tensor(DType::kFloat32, {n}, rng)); };
  net.add_output(net.add_op1(OpKind::kInstanceNormalization, {x, weight("in_scale", 6), weight("in_bias", 6)},
                             attrs({{"epsilon", 1e-3}})));
  net.add_output(net.add_op1(OpKind::kGroupNormalization, {x, weight("gn_scale", 6), weight("gn_bias", 6)},
                             attrs({{"num_groups", int64_t(3)}, {"epsilon", 1e-5}})));
  net.add_output(net.add_op1(OpKind::kGroupNormalization, {big, weight("one_scale", 3), weight("one_bias", 3)},
                             attrs({{"num_groups", int64_t(1)}})));
  net.add_output(net.add_op1(OpKind::kLRN, {x}, attrs({{"size", int64_t(3)}, {"alpha", 0.5}, {"beta", 0.75}, {"bias", 1.0}})));
  net.add_output(net.add_op1(OpKind::kLRN, {x}, attrs({{"size", int64_t(4)}, {"alpha", 2.0}, {"beta", 0.6}, {"bias", 2.0}})));
  net.finalize();
  // `big` far from zero on average: the kernel's two passes keep its variance exact.
  std::uniform_real_distribution<double> positive(2.0, 4.0);
  std::vector<double> big_values(1200);
  for (double& v : big_values) v = positive(rng);
  std::map<std::string, ir::TensorData> inputs = {{"x", random_tensor(DType::kFloat32, {2, 6, 5, 7}, rng)},
                                                  {"big", reference::make_tensor(DType::kFloat32, {1, 3, 20, 20}, big_values)}};
  expect_gpu_matches_reference(net, inputs, precision, tol, str("normalization seed ", seed, " ", spec_name(strategy)), strategy);
}

INSTANTIATE_TEST_SUITE_P(
    PrecisionsAndSpecialization, GpuNormalization,
    ::testing::Combine(::testing::Values(P::kFloat32, P::kFloat16, P::kBFloat16), ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) {
      return std::string(plan::precision_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param));
    });

// A float64 model keeps its type at fp32 precision: the kernels' double path.
TEST(GpuNormalizationFloat64, MatchesReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(99);
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat64, {Dim(2), Dim(4), Dim(9)});
  auto weight = [&](const std::string& name) { return net.add_weight(name, random_tensor(DType::kFloat64, {4}, rng)); };
  net.add_output(net.add_op1(OpKind::kGroupNormalization, {x, weight("s"), weight("b")}, attrs({{"num_groups", int64_t(2)}})));
  net.add_output(net.add_op1(OpKind::kInstanceNormalization, {x, weight("s2"), weight("b2")}));
  net.add_output(net.add_op1(OpKind::kLRN, {x}, attrs({{"size", int64_t(5)}})));
  net.finalize();
  expect_gpu_matches_reference(net, {{"x", random_tensor(DType::kFloat64, {2, 4, 9}, rng)}}, P::kFloat32, 1e-12, "float64");
}

class GpuIntegerOps : public ::testing::TestWithParam<std::tuple<DType, S>> {};

// BitShift both ways (amounts from -2 to past the width), the Bitwise ops with
// broadcasting, and Mod with fmod 0 and 1 (mixed signs, non-zero divisors).
TEST_P(GpuIntegerOps, MatchReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 777;
  std::mt19937 rng(seed);
  int64_t bits = int64_t(dtype_size(dtype)) * 8;
  auto [lo, hi] = int_range(dtype);
  ir::Network net;
  ValueId a = net.add_input("a", dtype, {Dim(3), Dim(4), Dim(5)});
  ValueId b = net.add_input("b", dtype, {Dim(4), Dim(1)});
  ValueId amount = net.add_input("amount", dtype, {Dim(5)});
  for (const char* direction : {"LEFT", "RIGHT"})
    net.add_output(net.add_op1(OpKind::kBitShift, {a, amount}, attrs({{"direction", std::string(direction)}})));
  for (OpKind op : {OpKind::kBitwiseAnd, OpKind::kBitwiseOr, OpKind::kBitwiseXor}) net.add_output(net.add_op1(op, {a, b}));
  net.add_output(net.add_op1(OpKind::kBitwiseNot, {a}));
  for (int64_t fmod : {0, 1}) net.add_output(net.add_op1(OpKind::kMod, {a, b}, attrs({{"fmod", fmod}})));
  net.finalize();
  std::map<std::string, ir::TensorData> inputs = {
      {"a", random_ints(dtype, {3, 4, 5}, rng, lo, hi)},
      {"b", random_ints(dtype, {4, 1}, rng, std::max<int64_t>(lo, -1000), std::min<int64_t>(hi, 1000), true)},
      {"amount", reference::make_tensor(dtype, {5}, {0, 1, double(bits - 1), double(bits + 1), dtype == DType::kUInt8 ? 200 : -2.0})}};
  expect_ints_match_reference(net, inputs, strategy, str(dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)));
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSpecialization, GpuIntegerOps,
    ::testing::Combine(::testing::Values(DType::kInt8, DType::kInt32, DType::kInt64, DType::kUInt8),
                       ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) { return std::string(dtype_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param)); });

// Mod of floats, both forms, in each float type of a model (fmod is exact in
// every precision, so the GPU matches the reference's rounding of the exact result).
TEST(GpuMod, FloatTypesMatchReference) {
  KILN_REQUIRE_GPU();
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kFloat64})
    for (S strategy : {S::kNone, S::kEager}) {
      std::mt19937 rng(31);
      ir::Network net;
      ValueId a = net.add_input("a", dtype, {Dim(6), Dim(8)}), b = net.add_input("b", dtype, {Dim(8)});
      for (int64_t fmod : {0, 1}) net.add_output(net.add_op1(OpKind::kMod, {a, b}, attrs({{"fmod", fmod}})));
      net.finalize();
      std::map<std::string, ir::TensorData> inputs = {{"a", random_tensor(dtype, {6, 8}, rng, 0.5, 8.0)},
                                                      {"b", random_tensor(dtype, {8}, rng, 0.3, 2.0)}};
      expect_gpu_matches_reference(net, inputs, P::kFloat32, 1e-6, str("mod ", dtype_name(dtype), " ", spec_name(strategy)), strategy);
    }
}

}  // namespace
}  // namespace kiln::testing
