// The tiled depthwise convolution kernel against the reference interpreter on
// seeded random non-zero data, in fp32, fp16 and bf16 (and float64), with the
// generic kernel and with shape-specialized ones. The shapes pick each tile
// (8 to 64 columns, 1 to 4 rows a thread), tails of partial tiles, strides,
// dilations, asymmetric pads, channel multipliers, a window that only a smaller
// tile fits, and the Convs that must still go elsewhere: a grouped Conv that is
// not depthwise and a window too wide for the kernel's shared memory.
#include <cuda_runtime_api.h>

#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using P = plan::Precision;
using S = runtime::KernelSpecialization;
using Ints = std::vector<int64_t>;

// One Conv over its own input x_<name> [N, C, H, W], group = C unless `group` says otherwise.
struct ConvCase {
  std::string name;
  Ints x;                    // input dims
  Ints kernel;               // kh, kw
  int64_t out_channels = 0;  // 0: C (multiplier 1)
  Ints strides{1, 1}, pads{0, 0, 0, 0}, dilations{1, 1};
  bool bias = true;
  int64_t group = 0;         // 0: C (depthwise)
  bool depthwise = true;     // whether the tiled kernel should run it
};

std::vector<ConvCase> depthwise_cases() {
  return {
      // ConvNeXt: 64-column tiles, 4 rows a thread, a partial tile at the bottom (56 of 64 rows).
      {"convnext_7x7", {2, 96, 56, 56}, {7, 7}, 0, {1, 1}, {3, 3, 3, 3}},
      // MobileNet / EfficientNet: 3x3 stride 2 (16-column tiles), 5x5 stride 1 without bias.
      {"mobilenet_3x3_s2", {2, 16, 28, 28}, {3, 3}, 0, {2, 2}, {1, 1, 1, 1}},
      {"mobilenet_5x5", {2, 24, 14, 14}, {5, 5}, 0, {1, 1}, {2, 2, 2, 2}, {1, 1}, false},
      // H and W not multiples of the tile: 32 columns for 17, 2 rows a thread for 13.
      {"odd_13x17", {1, 8, 13, 17}, {3, 3}, 0, {1, 1}, {1, 1, 1, 1}},
      // 3 rows a thread; three 64-column tiles across 130 (the last 2 wide) and five down 70.
      {"rows_3", {1, 4, 20, 30}, {3, 3}, 0, {1, 1}, {1, 1, 1, 1}},
      {"wide_130", {1, 4, 70, 130}, {3, 3}, 0, {1, 1}, {1, 1, 1, 1}, {1, 1}, false},
      // The last ConvNeXt stage: 8-column tiles of one row a thread over 7x7 planes.
      {"plane_7x7", {2, 32, 7, 7}, {7, 7}, 0, {1, 1}, {3, 3, 3, 3}},
      {"dilation_2", {1, 8, 20, 23}, {3, 3}, 0, {1, 1}, {2, 2, 2, 2}, {2, 2}},
      // Asymmetric pads (top 2, left 0, bottom 1, right 2), a 5x3 window, strides 1 and 2.
      {"asymmetric", {2, 8, 15, 19}, {5, 3}, 0, {1, 2}, {2, 0, 1, 2}, {1, 1}, false},
      {"multiplier_2", {2, 6, 11, 9}, {3, 3}, 12, {1, 1}, {1, 1, 1, 1}},
      {"multiplier_3_no_bias", {1, 4, 9, 12}, {3, 3}, 12, {2, 1}, {0, 1, 1, 0}, {1, 1}, false},
      {"kernel_11x11_s2", {1, 4, 40, 40}, {11, 11}, 0, {2, 2}},
      // 15x15 dilated 4: at 4 (and 3) rows a thread the staged input outgrows shared memory; 2 fit.
      {"wide_window", {1, 2, 70, 70}, {15, 15}, 0, {1, 1}, {28, 28, 28, 28}, {4, 4}},
      // Not for the tiled kernel: 2 groups of 4 channels (cuDNN), and a 25x25
      // window dilated 4 whose staged input fits no tile (cuDNN, symmetric pads).
      {"grouped_2", {2, 8, 10, 10}, {3, 3}, 8, {1, 1}, {1, 1, 1, 1}, {1, 1}, true, 2, false},
      {"window_too_wide", {1, 2, 100, 100}, {25, 25}, 0, {1, 1}, {48, 48, 48, 48}, {4, 4}, true, 0, false},
  };
}

// The cases' Convs in one network (float inputs of `dtype`), and seeded random inputs.
ir::Network conv_network(DType dtype, const std::vector<ConvCase>& cases, std::mt19937& rng,
                         std::map<std::string, ir::TensorData>& inputs) {
  ir::Network net;
  for (const ConvCase& c : cases) {
    int64_t channels = c.x[1], group = c.group ? c.group : channels, out = c.out_channels ? c.out_channels : channels;
    ValueId x = net.add_input("x_" + c.name, dtype, {Dim(c.x[0]), Dim(c.x[1]), Dim(c.x[2]), Dim(c.x[3])});
    inputs["x_" + c.name] = random_tensor(dtype, c.x, rng);
    std::vector<ValueId> operands{x, net.add_weight(c.name + "_w", random_tensor(dtype, {out, channels / group, c.kernel[0], c.kernel[1]}, rng))};
    if (c.bias) operands.push_back(net.add_weight(c.name + "_b", random_tensor(dtype, {out}, rng)));
    net.add_output(net.add_op1(OpKind::kConv, operands,
                               attrs({{"group", group}, {"strides", c.strides}, {"pads", c.pads}, {"dilations", c.dilations}}), c.name));
  }
  net.finalize();
  return net;
}

class GpuDepthwise : public ::testing::TestWithParam<std::tuple<P, S>> {};

TEST_P(GpuDepthwise, MatchesReference) {
  KILN_REQUIRE_GPU();
  auto [precision, strategy] = GetParam();
  double tol = precision == P::kFloat32 ? 2e-5 : precision == P::kFloat16 ? 2e-2 : 6e-2;
  const uint32_t seed = 2026;
  std::mt19937 rng(seed);
  std::map<std::string, ir::TensorData> inputs;
  ir::Network net = conv_network(DType::kFloat32, depthwise_cases(), rng, inputs);
  expect_gpu_matches_reference(net, inputs, precision, tol, str("depthwise seed ", seed, " ", spec_name(strategy)), strategy);
}

INSTANTIATE_TEST_SUITE_P(
    PrecisionsAndSpecialization, GpuDepthwise,
    ::testing::Combine(::testing::Values(P::kFloat32, P::kFloat16, P::kBFloat16), ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) {
      return std::string(plan::precision_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param));
    });

// A float64 model keeps its type: the kernel's double path, whose shared
// memory holds half as many values (no tile of doubles fits the wide window:
// cuDNN runs that one).
TEST(GpuDepthwiseFloat64, MatchesReference) {
  KILN_REQUIRE_GPU();
  std::vector<ConvCase> cases;
  for (const ConvCase& c : depthwise_cases())
    if (c.name == "convnext_7x7" || c.name == "odd_13x17" || c.name == "asymmetric" || c.name == "multiplier_2" ||
        c.name == "wide_window")
      cases.push_back(c);
  for (S strategy : {S::kNone, S::kEager}) {
    std::mt19937 rng(5);
    std::map<std::string, ir::TensorData> inputs;
    ir::Network net = conv_network(DType::kFloat64, cases, rng, inputs);
    expect_gpu_matches_reference(net, inputs, P::kFloat32, 1e-12, str("float64 ", spec_name(strategy)), strategy);
  }
}

// Each Conv runs where it should: the depthwise ones as generated kernels
// (cuDNN took the symmetric-padded ones before), the others through cuDNN.
TEST(GpuDepthwiseSelection, DepthwiseConvsRunTheGeneratedKernel) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(8);
  std::map<std::string, ir::TensorData> inputs;
  std::vector<ConvCase> cases = depthwise_cases();
  ir::Network net = conv_network(DType::kFloat32, cases, rng, inputs);
  builder::BuildOptions options;
  for (auto& [name, tensor] : inputs) builder::add_input_profile(net, name, tensor.dims, tensor.dims, tensor.dims, options);
  auto engine = runtime::Engine::create(builder::build(net, options));
  auto context = engine->create_context();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  runtime::DeviceIo io(*context, *engine, inputs);
  std::map<std::string, std::string> runs;
  for (const auto& step : context->profile(stream, 1)) runs[step.node] = step.runs;
  cudaStreamDestroy(stream);
  for (const ConvCase& c : cases) {
    ASSERT_TRUE(runs.count(c.name)) << c.name << " was not launched under its own name";
    EXPECT_EQ(runs[c.name] == "cuDNN", !c.depthwise) << c.name << " runs " << runs[c.name];
  }
}

}  // namespace
}  // namespace kiln::testing
