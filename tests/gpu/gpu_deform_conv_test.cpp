// DeformConv's GPU kernel against the reference interpreter on seeded random
// non-zero data, in float32, float16 and bfloat16 models (both sides read the
// same low-precision inputs, so they sample at the same points and differ by
// float sums and the output's rounding), generic and shape-specialized:
// odd sizes (1, 7, 33, outputs of 1000 and more), offsets up to 3 pixels
// either way (taps sampling outside X), mask present and absent, bias, groups
// and offset groups, strides, dilations and pads, an empty batch.
#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::OpKind;
using ir::ValueId;
using S = runtime::KernelSpecialization;

double tolerance(DType dtype) { return dtype == DType::kFloat32 ? 1e-5 : dtype == DType::kFloat16 ? 2e-3 : 1.6e-2; }

class GpuDeformConv : public ::testing::TestWithParam<std::tuple<DType, S>> {};

TEST_P(GpuDeformConv, MatchesReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 1913;
  std::mt19937 rng(seed);
  struct Case {
    std::vector<int64_t> x, w, out;  // out: the output's [oH, oW]
    int64_t group, offset_group;
    std::vector<int64_t> pads, strides, dilations;
    bool bias, mask;
  };
  const Case cases[] = {
      {{2, 4, 7, 33}, {6, 2, 3, 3}, {4, 33}, 2, 2, {1, 1, 1, 1}, {2, 1}, {1, 1}, true, true},
      {{1, 3, 33, 41}, {5, 3, 2, 3}, {32, 37}, 1, 3, {0, 0, 0, 0}, {1, 1}, {1, 2}, false, true},
      {{1, 2, 7, 7}, {3, 2, 3, 3}, {5, 5}, 1, 1, {0, 0, 0, 0}, {1, 1}, {1, 1}, true, false},
      {{1, 1, 1, 1}, {1, 1, 1, 1}, {1, 1}, 1, 1, {0, 0, 0, 0}, {1, 1}, {1, 1}, false, false},
      {{0, 2, 5, 5}, {2, 2, 2, 2}, {4, 4}, 1, 2, {0, 0, 0, 0}, {1, 1}, {1, 1}, true, true},
  };
  OpNetwork on;
  for (size_t k = 0; k < std::size(cases); ++k) {
    const Case& c = cases[k];
    int64_t taps = c.offset_group * c.w[2] * c.w[3];
    std::vector<int64_t> per_tap{c.x[0], taps, c.out[0], c.out[1]}, offsets{c.x[0], 2 * taps, c.out[0], c.out[1]};
    std::vector<ValueId> in{on.input(str("x", k), random_tensor(dtype, c.x, rng)), on.input(str("w", k), random_tensor(dtype, c.w, rng)),
                            on.input(str("offset", k), random_tensor(dtype, offsets, rng, 0.0, 3.0))};
    in.push_back(c.bias ? on.input(str("b", k), random_tensor(dtype, {c.w[0]}, rng)) : ir::kNoValue);
    if (c.mask) in.push_back(on.input(str("mask", k), random_tensor(dtype, per_tap, rng, 0.0, 1.0)));
    ir::Attributes a = attrs({{"group", c.group}, {"offset_group", c.offset_group}, {"pads", c.pads}, {"strides", c.strides},
                              {"dilations", c.dilations}});
    on.net.add_output(on.net.add_op1(OpKind::kDeformConv, in, a, str("deform", k)));
  }
  on.net.finalize();
  expect_gpu_matches_reference(on.net, on.feeds, plan::Precision::kFloat32, tolerance(dtype),
                               str("deform conv ", dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)), strategy);
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSpecialization, GpuDeformConv,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16), ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) { return std::string(dtype_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param)); });

// Offsets of a size inference could not compare (a symbolic output height)
// that the shapes of a run contradict: an error naming the node and input,
// never a read past the offsets.
TEST(GpuDeformConvShapes, OffsetsThatDoNotFitTheOutputAreAnError) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(5);
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {ir::Dim(1), ir::Dim(1), ir::Dim::symbol("h"), ir::Dim(4)});
  ValueId offset = net.add_input("offset", DType::kFloat32, {ir::Dim(1), ir::Dim(8), ir::Dim::symbol("oh"), ir::Dim(3)});
  ValueId w = net.add_weight("w", random_tensor(DType::kFloat32, {1, 1, 2, 2}, rng));
  net.add_output(net.add_op1(OpKind::kDeformConv, {x, w, offset}, {}, "dc"));
  net.finalize();
  Feeds feeds{{"x", random_tensor(DType::kFloat32, {1, 1, 5, 4}, rng)}, {"offset", random_tensor(DType::kFloat32, {1, 8, 3, 3}, rng)}};
  try {
    run_on_gpu(net, feeds, plan::Precision::kFloat32, S::kNone);
    FAIL() << "ran with offsets of 3 rows for an output of 4";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("node 'dc' (DeformConv): input 2"), std::string::npos) << what;
    EXPECT_NE(what.find("has shape [1,8,3,3]; expected [1,8,4,3]"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace kiln::testing
