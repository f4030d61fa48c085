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
      {"amount", reference::make_tensor(dtype, {5}, {0, 1, double(bits - 1), double(bits + 1), is_unsigned_integer(dtype) ? 200 : -2.0})}};
  expect_gpu_matches_reference_exactly(net, inputs, strategy, str(dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)));
}

// The integer forms of the other ops over a dtype's whole range (uint32 past
// 2^31, uint64 past 2^63): arithmetic that wraps, division, comparisons,
// Max/Min/Clip/Where, casts to and from float32 and int64, ArgMax/ArgMin, TopK,
// Gather and Concat; broadcasting, odd sizes (1, 7, 33, 1031) and an empty tensor.
TEST_P(GpuIntegerOps, ArithmeticOrderAndMovementMatchReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 2024;
  std::mt19937 rng(seed);
  auto [lo, hi] = int_range(dtype);
  ir::Network net;
  ValueId a = net.add_input("a", dtype, {Dim(33), Dim(7)});
  ValueId b = net.add_input("b", dtype, {Dim(7)});
  ValueId one = net.add_input("one", dtype, {Dim(1)});
  ValueId big = net.add_input("big", dtype, {Dim(1031)});
  ValueId empty = net.add_input("empty", dtype, {Dim(0), Dim(7)});
  ValueId f = net.add_input("f", DType::kFloat32, {Dim(1031)});
  ValueId pick = net.add_input("pick", DType::kBool, {Dim(33), Dim(1)});
  for (OpKind op : {OpKind::kAdd, OpKind::kSub, OpKind::kMul, OpKind::kDiv, OpKind::kEqual, OpKind::kLess,
                    OpKind::kLessOrEqual, OpKind::kGreater, OpKind::kGreaterOrEqual, OpKind::kMax, OpKind::kMin})
    net.add_output(net.add_op1(op, {a, b}));
  net.add_output(net.add_op1(OpKind::kMax, {a, b, one}));
  net.add_output(net.add_op1(OpKind::kAdd, {empty, b}));
  net.add_output(net.add_op1(OpKind::kAbs, {big}));
  ValueId top = net.add_input("top", dtype, {Dim(1)});
  net.add_output(net.add_op1(OpKind::kClip, {a, one, top}));
  net.add_output(net.add_op1(OpKind::kWhere, {pick, a, b}));
  for (DType to : {DType::kFloat32, DType::kFloat64, DType::kInt64, DType::kUInt8, DType::kBool})
    net.add_output(net.add_op1(OpKind::kCast, {big}, attrs({{"to", int64_t(to)}})));
  net.add_output(net.add_op1(OpKind::kCast, {f}, attrs({{"to", int64_t(dtype)}})));
  for (OpKind op : {OpKind::kArgMax, OpKind::kArgMin})
    net.add_output(net.add_op1(op, {a}, attrs({{"axis", int64_t(0)}, {"keepdims", int64_t(0)}})));
  ValueId k = net.add_weight("k", reference::make_tensor(DType::kInt64, {1}, {5}));
  for (int64_t largest : {0, 1}) {
    std::vector<ValueId> top = net.add_op(OpKind::kTopK, {big, k}, attrs({{"largest", largest}}), 2);
    net.add_output(top[0]);
    net.add_output(top[1]);
  }
  ValueId rows = net.add_weight("rows", reference::make_tensor(DType::kInt64, {4}, {0, 32, -1, 7}));
  net.add_output(net.add_op1(OpKind::kGather, {a, rows}, attrs({{"axis", int64_t(0)}})));
  net.add_output(net.add_op1(OpKind::kConcat, {a, empty, a}, attrs({{"axis", int64_t(0)}})));
  net.finalize();
  std::vector<double> picks(33), floats(1031);
  for (double& p : picks) p = double(rng() % 2);
  // Floats the dtype holds (a conversion out of range is undefined in C++), past 2^31 for uint32.
  std::uniform_real_distribution<double> in_range(0.5, std::min(0.99 * double(hi), 4e9));
  for (double& v : floats) v = in_range(rng);
  std::map<std::string, ir::TensorData> inputs = {
      {"a", random_ints(dtype, {33, 7}, rng, lo, hi)},
      {"b", random_ints(dtype, {7}, rng, lo, hi, true)},
      {"one", random_ints(dtype, {1}, rng, lo, hi)},
      {"top", random_ints(dtype, {1}, rng, lo, hi)},
      {"big", random_ints(dtype, {1031}, rng, lo, hi)},
      {"empty", random_ints(dtype, {0, 7}, rng, lo, hi)},
      {"f", reference::make_tensor(DType::kFloat32, {1031}, floats)},
      {"pick", reference::make_tensor(DType::kBool, {33, 1}, picks)}};
  expect_gpu_matches_reference_exactly(net, inputs, strategy, str(dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)));
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSpecialization, GpuIntegerOps,
    ::testing::Combine(::testing::Values(DType::kInt8, DType::kInt16, DType::kInt32, DType::kInt64, DType::kUInt8, DType::kUInt16,
                                         DType::kUInt32, DType::kUInt64),
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
