// The row kernels (LayerNormalization, Softmax, LogSoftmax; Hardmax) against the
// reference interpreter on seeded random non-zero data, on every path
// codegen::row_params picks: a group of lanes per row (rows up to 1024, 1 to 32
// lanes), a block per row held in registers (up to 8192), and the strided block
// path (longer rows, inner != 1). Each runs with 16-byte accesses where the row
// length allows and with their element-wise fallback (lengths that are no
// multiple of the vector; the same shapes again with every input and output one
// element past an aligned address). Every float type, generic and
// shape-specialized kernels; row counts that fill no whole block or warp.
#include <cuda_runtime_api.h>

#include <memory>

#include "gpu_test_util.h"
#include "kiln/error.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using S = runtime::KernelSpecialization;

// Row lengths at and around each path's bounds with their row counts: the
// lanes path with 1, 8 (7, 197), 4 (96, 128) and 32 (768, 1024) lanes a row,
// the block path in registers (1025, 4096), the strided path (9000).
const std::pair<int64_t, int64_t> kLengthsAndRows[] = {{1, 515}, {7, 300}, {96, 131}, {128, 77}, {197, 67},
                                                       {768, 19}, {1024, 13}, {1025, 5}, {4096, 6}, {9000, 3}};

class GpuRowKernels : public ::testing::TestWithParam<std::tuple<DType, S>> {};

TEST_P(GpuRowKernels, MatchReferenceOnEveryPath) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  double tol = dtype == DType::kFloat64 ? 1e-12 : dtype == DType::kFloat32 ? 2e-5 : dtype == DType::kFloat16 ? 5e-3 : 2e-2;
  const uint32_t seed = 2024;
  std::mt19937 rng(seed);
  ir::Network net;
  std::map<std::string, ir::TensorData> inputs;
  auto input = [&](const std::string& name, std::vector<int64_t> dims, double lo = 0.1, double hi = 1.0) {
    std::vector<Dim> shape(dims.begin(), dims.end());
    inputs[name] = random_tensor(dtype, dims, rng, lo, hi);
    return net.add_input(name, dtype, shape);
  };
  auto weight = [&](const std::string& name, std::vector<int64_t> dims) {
    return net.add_weight(name, random_tensor(dtype, dims, rng, 0.5, 2.0));
  };
  ValueId x197 = ir::kNoValue;
  for (auto [len, rows] : kLengthsAndRows) {
    ValueId x = input(str("x", len), {rows, len});
    if (len == 197) x197 = x;
    net.add_output(net.add_op1(OpKind::kLayerNormalization, {x, weight(str("g", len), {len}), weight(str("b", len), {len})},
                               attrs({{"epsilon", 1e-3}})));
    for (ValueId v : net.add_op(OpKind::kLayerNormalization, {x, weight(str("s", len), {len})}, {}, 3)) net.add_output(v);
    net.add_output(net.add_op1(OpKind::kSoftmax, {x}));
    net.add_output(net.add_op1(OpKind::kLogSoftmax, {x}));
  }
  net.add_output(net.add_op1(OpKind::kHardmax, {x197}));
  // Rows far from zero: the two passes keep the variance exact.
  ValueId far = input("far", {21, 768}, 2.0, 4.0);
  for (ValueId v : net.add_op(OpKind::kLayerNormalization, {far, weight("far_g", {768}), weight("far_b", {768})}, {}, 3))
    net.add_output(v);
  // A normalized block of two dims (185 contiguous elements), and softmax over a middle axis (inner 5 and 185).
  ValueId cube = input("cube", {3, 37, 5});
  net.add_output(net.add_op1(OpKind::kLayerNormalization, {cube, weight("cube_g", {37, 5}), weight("cube_b", {37, 5})},
                             attrs({{"axis", int64_t(1)}})));
  net.add_output(net.add_op1(OpKind::kSoftmax, {cube}, attrs({{"axis", int64_t(1)}})));
  net.add_output(net.add_op1(OpKind::kLogSoftmax, {cube}, attrs({{"axis", int64_t(0)}})));
  net.finalize();

  builder::BuildOptions options;
  for (const auto& [name, t] : inputs) builder::add_input_profile(net, name, t.dims, t.dims, t.dims, options);
  runtime::RuntimeConfig config;
  config.dynamic_shapes_kernel_specialization_strategy = strategy;
  auto engine = runtime::Engine::create(builder::build(net, options), config);
  auto context = engine->create_context();
  std::vector<ir::TensorData> want = reference::run(net, inputs);
  // One element off 16 bytes: the same kernels fall back to element-wise accesses.
  for (bool shifted : {false, true}) {
    SCOPED_TRACE(str(dtype_name(dtype), " seed ", seed, " ", spec_name(strategy), shifted ? " pointers one element past alignment" : ""));
    expect_outputs_close(run_on_shifted_buffers(*context, net, inputs, shifted, shifted), want, tol);
  }
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSpecialization, GpuRowKernels,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64),
                       ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) { return std::string(dtype_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param)); });

}  // namespace
}  // namespace kiln::testing
