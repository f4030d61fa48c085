// The strided remap kernel's paths against the reference interpreter: plain
// copies over merged dims in vectors of 16, 8, 4 or 2 bytes, tiled transposes
// (sizes not multiples of the tile, outer dims, the unit-stride source dim
// moved next to the last), and the element loop for pads, tiles and reversed
// slices; every float precision and 1- and 8-byte types, generic and
// shape-specialized kernels, and inputs bound at addresses vectors cannot use.
#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using P = plan::Precision;
using S = runtime::KernelSpecialization;

ValueId ints(ir::Network& n, const std::string& name, std::vector<double> v) {
  return n.add_weight(name, reference::make_tensor(DType::kInt64, {int64_t(v.size())}, v));
}

ir::Attributes perm(std::vector<int64_t> p) { return attrs({{"perm", p}}); }

// Every output is a graph output, so every remap materializes.
ir::Network remap_network(DType dtype) {
  ir::Network n;
  ValueId a = n.add_input("a", dtype, ir::shape_of({2, 3, 40, 36}));
  ValueId b = n.add_input("b", dtype, ir::shape_of({2, 5, 33, 70}));
  ValueId c = n.add_input("c", dtype, ir::shape_of({3, 50, 17}));
  n.add_output(n.add_op1(OpKind::kTranspose, {a}, perm({0, 2, 1, 3})));  // rows of 36 move whole: vectors
  n.add_output(n.add_op1(OpKind::kTranspose, {b}, perm({0, 1, 3, 2})));  // 33 x 70 tiles under 10 outer pairs
  n.add_output(n.add_op1(OpKind::kTranspose, {c}, perm({2, 0, 1})));     // the unit-stride dim moves next to the last
  n.add_output(n.add_op1(OpKind::kTranspose, {a}, perm({3, 1, 0, 2})));  // 36 x 40 with a strided middle dim
  auto parts = n.add_op(OpKind::kSplit, {a, ints(n, "split", {8, 4, 24})}, attrs({{"axis", int64_t(3)}}), 3);
  n.add_output(n.add_op1(OpKind::kConcat, {parts[2], parts[0], parts[1]}, attrs({{"axis", int64_t(3)}})));
  n.add_output(n.add_op1(OpKind::kSlice, {b, ints(n, "st", {1}), ints(n, "en", {69}), ints(n, "ax", {3})}));  // odd start
  n.add_output(n.add_op1(OpKind::kSlice, {b, ints(n, "st2", {-1, 2}), ints(n, "en2", {-34, 66}), ints(n, "ax2", {2, 3}),
                                          ints(n, "sp2", {-1, 2})}));
  n.add_output(n.add_op1(OpKind::kExpand, {n.add_op1(OpKind::kSlice, {c, ints(n, "st3", {0}), ints(n, "en3", {1}), ints(n, "ax3", {0})}),
                                           ints(n, "shape", {4, 50, 17})}));
  n.add_output(n.add_op1(OpKind::kTile, {c, ints(n, "reps", {1, 2, 3})}));
  n.add_output(n.add_op1(OpKind::kPad, {c, ints(n, "pads", {0, 1, 2, 0, 3, 1})}, attrs({{"mode", std::string("reflect")}})));
  return n;
}

std::map<std::string, ir::TensorData> remap_inputs(DType dtype, std::mt19937& rng) {
  std::map<std::string, ir::TensorData> in;
  for (auto& [name, dims] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"a", {2, 3, 40, 36}}, {"b", {2, 5, 33, 70}}, {"c", {3, 50, 17}}}) {
    ir::TensorData t = random_tensor(DType::kFloat32, dims, rng, 1, 100);
    in[name] = dtype == DType::kFloat32 ? t : reference::make_tensor(dtype, dims, ir::read_doubles(t));  // integers truncate
  }
  return in;
}

class GpuRemap : public ::testing::TestWithParam<std::tuple<P, S>> {};

TEST_P(GpuRemap, EveryPathMatchesReference) {
  KILN_REQUIRE_GPU();
  auto [precision, strategy] = GetParam();
  std::mt19937 rng(31);
  ir::Network net = remap_network(DType::kFloat32);
  net.finalize();
  // Half types hold the random values' 3 significant digits only.
  expect_gpu_matches_reference(net, remap_inputs(DType::kFloat32, rng), precision, precision == P::kFloat32 ? 0 : 4e-3,
                               "float network", strategy);
}

// 1- and 8-byte elements take other vector widths (16 bytes is 16 int8s, 2 doubles).
TEST_P(GpuRemap, OneAndEightByteTypesMatchReference) {
  KILN_REQUIRE_GPU();
  auto [precision, strategy] = GetParam();
  if (precision != P::kFloat32) GTEST_SKIP() << "the network's own types";
  for (DType dtype : {DType::kInt8, DType::kFloat64, DType::kInt64}) {
    std::mt19937 rng(32);
    ir::Network net = remap_network(dtype);
    net.finalize();
    expect_gpu_matches_reference(net, remap_inputs(dtype, rng), precision, 0, std::string(dtype_name(dtype)), strategy);
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, GpuRemap,
                         ::testing::Combine(::testing::Values(P::kFloat32, P::kFloat16, P::kBFloat16),
                                            ::testing::Values(S::kNone, S::kEager)),
                         [](const auto& info) {
                           return str(plan::precision_name(std::get<0>(info.param)),
                                      std::get<1>(info.param) == S::kNone ? "_generic" : "_specialized");
                         });

// A caller's buffer may start anywhere: vectors fall back to elements when the
// bound input or output is not aligned to the vector, with the same results.
TEST(GpuRemapAlignment, InputsAndOutputsBoundOffTheVectorGridMatchReference) {
  KILN_REQUIRE_GPU();
  for (S strategy : {S::kNone, S::kEager}) {
    ir::Network net;
    ValueId x = net.add_input("x", DType::kFloat32, ir::shape_of({4, 6, 32}));
    net.add_output(net.add_op1(OpKind::kTranspose, {x}, perm({1, 0, 2})));  // rows of 32 floats: 16-byte vectors
    net.finalize();
    std::mt19937 rng(33);
    std::map<std::string, ir::TensorData> inputs{{"x", random_tensor(DType::kFloat32, {4, 6, 32}, rng)}};
    std::vector<ir::TensorData> want = reference::run(net, inputs);
    runtime::RuntimeConfig config;
    config.dynamic_shapes_kernel_specialization_strategy = strategy;
    auto engine = runtime::Engine::create(builder::build(net, {}), config);
    auto context = engine->create_context();
    for (int64_t shift : {1, 2, 3}) {  // floats off a 16-byte boundary
      SCOPED_TRACE(str(spec_name(strategy), " shift ", shift));
      expect_outputs_close(run_on_shifted_buffers(*context, net, inputs, shift, 4 - shift), want, 0);
    }
  }
}

}  // namespace
}  // namespace kiln::testing
