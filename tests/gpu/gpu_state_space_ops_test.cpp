// The GPU kernels of the state-space and linear-attention ops (CausalConvWithState,
// LinearAttention) and BitCast against the reference interpreter (float64) on
// seeded random non-zero data, in models of float32, float16 and bfloat16
// (both sides read the same low-precision inputs and differ by float32 sums
// and the outputs' rounding), with the generic kernels and with
// shape-specialized ones: odd sizes (1, 7, 33, 1000+), every update rule,
// grouped query heads, decay and beta of each width, with and without
// past_state and bias, a state type of its own, empty tensors.
#include "gpu_test_util.h"
#include "kiln/error.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using S = runtime::KernelSpecialization;

// Values uniform in [lo, hi].
ir::TensorData uniform(DType dtype, const std::vector<int64_t>& dims, std::mt19937& rng, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (auto& x : v) x = u(rng);
  return reference::make_tensor(dtype, dims, v);
}

// A network under construction with the inputs' values beside it.
struct Model {
  ir::Network net;
  std::map<std::string, ir::TensorData> inputs;
  ValueId input(const std::string& name, ir::TensorData value) {
    ValueId v = net.add_input(name, value.dtype, ir::shape_of(value.dims));
    inputs[name] = std::move(value);
    return v;
  }
  void outputs(const std::vector<ValueId>& values) {
    for (ValueId v : values) net.add_output(v);
  }
};

// Relative to each output's largest magnitude: the outputs' rounding, and
// float32 sums over up to 129 rows and 33 steps of a recurrence.
double tolerance(DType dtype) { return dtype == DType::kFloat32 ? 2e-5 : dtype == DType::kFloat16 ? 2e-3 : 1.6e-2; }

class GpuStateSpace : public ::testing::TestWithParam<std::tuple<DType, S>> {};

// [batch, channels, length] with k taps: a decode step (length 1), an input
// shorter than k - 1 without past_state, a long one (1000+), k = 1 (an empty
// present_state), an empty input whose state passes through; with and
// without bias and SiLU.
TEST_P(GpuStateSpace, CausalConvWithStateMatchesReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 2027;
  std::mt19937 rng(seed);
  struct Case {
    int64_t batch, channels, length, taps;
    bool bias, past;
    const char* activation;
  };
  const Case cases[] = {{2, 33, 7, 4, true, true, "silu"},   {1, 1, 1, 4, false, true, "none"},  {1, 7, 2, 4, true, false, "swish"},
                        {3, 7, 1031, 3, false, true, "none"}, {2, 5, 9, 1, true, false, "silu"}, {2, 3, 0, 4, false, true, "none"}};
  Model m;
  for (size_t c = 0; c < std::size(cases); ++c) {
    const Case& k = cases[c];
    std::vector<ValueId> in{m.input(str("x", c), random_tensor(dtype, {k.batch, k.channels, k.length}, rng)),
                            m.input(str("w", c), random_tensor(dtype, {k.channels, 1, k.taps}, rng)),
                            k.bias ? m.input(str("b", c), random_tensor(dtype, {k.channels}, rng)) : ir::kNoValue};
    if (k.past) in.push_back(m.input(str("past", c), random_tensor(dtype, {k.batch, k.channels, k.taps - 1}, rng)));
    m.outputs(m.net.add_op(OpKind::kCausalConvWithState, in, attrs({{"activation", std::string(k.activation)}}), 2));
  }
  m.net.finalize();
  expect_gpu_matches_reference(m.net, m.inputs, plan::Precision::kFloat32, tolerance(dtype),
                               str("causal conv ", dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)), strategy);
}

// One LinearAttention case: B, T, query and kv heads, d_k, d_v, the rule,
// decay and beta widths (0: as the rule has it, per head), past_state's type
// (nullopt: none).
struct AttentionCase {
  int64_t batch, steps, q_heads, kv_heads, key_dim, value_dim;
  const char* rule;
  bool decay_per_key, beta_shared;
  std::optional<DType> past;
};

// Keys of unit length per head (as the delta rules expect: their state then
// stays bounded), decay in log space (negative), beta in (0, 1).
void add_linear_attention(Model& m, const AttentionCase& c, DType dtype, size_t index, std::mt19937& rng) {
  std::string rule = c.rule;
  bool gated = rule == "gated" || rule == "gated_delta", delta = rule == "delta" || rule == "gated_delta";
  auto name = [&](const char* what) { return str(what, index); };
  std::vector<double> keys(size_t(c.batch * c.steps * c.kv_heads * c.key_dim));
  std::normal_distribution<double> normal;
  for (size_t head = 0; head < keys.size() / size_t(std::max<int64_t>(c.key_dim, 1)); ++head) {
    double norm = 0;
    for (int64_t d = 0; d < c.key_dim; ++d) norm += std::pow(keys[head * size_t(c.key_dim) + size_t(d)] = normal(rng), 2);
    for (int64_t d = 0; d < c.key_dim; ++d) keys[head * size_t(c.key_dim) + size_t(d)] /= std::sqrt(norm);
  }
  std::vector<ValueId> in{
      m.input(name("q"), random_tensor(dtype, {c.batch, c.steps, c.q_heads * c.key_dim}, rng)),
      m.input(name("k"), reference::make_tensor(dtype, {c.batch, c.steps, c.kv_heads * c.key_dim}, keys)),
      m.input(name("v"), random_tensor(dtype, {c.batch, c.steps, c.kv_heads * c.value_dim}, rng)),
      c.past ? m.input(name("past"), random_tensor(*c.past, {c.batch, c.kv_heads, c.key_dim, c.value_dim}, rng)) : ir::kNoValue,
      gated ? m.input(name("decay"), uniform(dtype, {c.batch, c.steps, c.kv_heads * (c.decay_per_key ? c.key_dim : 1)}, rng, -1, -0.01))
            : ir::kNoValue};
  if (delta) in.push_back(m.input(name("beta"), uniform(dtype, {c.batch, c.steps, c.beta_shared ? 1 : c.kv_heads}, rng, 0.1, 0.9)));
  m.outputs(m.net.add_op(OpKind::kLinearAttention, in,
                         attrs({{"q_num_heads", c.q_heads}, {"kv_num_heads", c.kv_heads}, {"update_rule", rule}}), 2));
}

// Every rule; grouped (4 query heads a kv head) and multi-query heads; d_k of
// 1, 7, 33 and 129 (five rows a lane) and d_v of 1, 7 and 65; a decode step
// (T 1) and prefill (T 33) with past_state, also of another type (float32 for
// a half-precision model); and T 0, where present_state is past_state.
TEST_P(GpuStateSpace, LinearAttentionMatchesReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 35;
  std::mt19937 rng(seed);
  const AttentionCase cases[] = {
      {2, 7, 2, 2, 7, 7, "linear", false, false, dtype},
      {1, 33, 4, 1, 33, 7, "gated", true, false, std::nullopt},
      {2, 7, 8, 2, 7, 65, "gated", false, false, DType::kFloat32},
      {1, 33, 3, 3, 33, 1, "delta", false, true, dtype},
      {2, 1, 4, 2, 129, 7, "gated_delta", false, false, dtype},
      {1, 33, 6, 2, 33, 33, "gated_delta", true, true, DType::kFloat32},
      {1, 7, 1, 1, 1, 1, "gated_delta", false, false, std::nullopt},
      {2, 0, 2, 1, 7, 7, "gated_delta", false, false, dtype},
  };
  Model m;
  for (size_t c = 0; c < std::size(cases); ++c) add_linear_attention(m, cases[c], dtype, c, rng);
  m.net.finalize();
  expect_gpu_matches_reference(m.net, m.inputs, plan::Precision::kFloat32, tolerance(dtype),
                               str("linear attention ", dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)), strategy);
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSpecialization, GpuStateSpace,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16), ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) { return std::string(dtype_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param)); });

// BitCast moves bits: the outputs are the reference's byte for byte, NaN
// patterns included (random words read as floats), between every pair of
// kiln's types of one width; to bool, each nonzero byte becomes 1. Sizes 1,
// 7, 1031 and empty; network outputs (copies) and intermediates, which the
// memory plan lets share their source's storage.
TEST(GpuBitCast, MatchesReferenceByteForByte) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(26);
  const std::pair<DType, DType> pairs[] = {
      {DType::kFloat32, DType::kInt32}, {DType::kInt32, DType::kFloat32},  {DType::kFloat16, DType::kBFloat16},
      {DType::kBFloat16, DType::kFloat16}, {DType::kFloat64, DType::kInt64}, {DType::kInt64, DType::kFloat64},
      {DType::kInt8, DType::kUInt8},    {DType::kUInt8, DType::kInt8},     {DType::kUInt8, DType::kBool},
      {DType::kInt8, DType::kBool},     {DType::kBool, DType::kUInt8}};
  for (S strategy : {S::kNone, S::kEager}) {
    Model m;
    size_t index = 0;
    for (auto [from, to] : pairs)
      for (std::vector<int64_t> dims : {std::vector<int64_t>{1}, {7}, {3, 1031}, {0, 3}}) {
        // Floats: random values; bools: 0 or 1; integers: random bytes.
        ir::TensorData x = random_tensor(is_floating(from) ? from : DType::kUInt8, dims, rng);
        x.dtype = from;
        if (!is_floating(from)) {
          std::vector<std::byte> raw(size_t(ir::checked_numel(dims)) * dtype_size(from));
          for (std::byte& b : raw) b = std::byte(from == DType::kBool ? rng() % 2 : rng());
          x.data = Buffer::from_bytes(std::move(raw));
        }
        ValueId v = m.input(str("x", index++), x);
        m.outputs({m.net.add_op1(OpKind::kBitCast, {v}, attrs({{"to", int64_t(to)}}))});
      }
    // An intermediate chain: -x as int32 bits and back, negated again: x itself.
    ValueId x = m.input("chain", random_tensor(DType::kFloat32, {7, 33}, rng));
    ValueId bits = m.net.add_op1(OpKind::kBitCast, {m.net.add_op1(OpKind::kNeg, {x})}, attrs({{"to", int64_t(DType::kInt32)}}));
    ValueId back = m.net.add_op1(OpKind::kBitCast, {bits}, attrs({{"to", int64_t(DType::kFloat32)}}));
    m.outputs({m.net.add_op1(OpKind::kNeg, {back})});
    m.net.finalize();
    std::vector<ir::TensorData> got = run_on_gpu(m.net, m.inputs, plan::Precision::kFloat32, strategy);
    std::vector<ir::TensorData> want = reference::run(m.net, m.inputs);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].dtype, want[i].dtype) << "output " << i;
      EXPECT_EQ(got[i].dims, want[i].dims) << "output " << i;
      auto a = got[i].data.bytes(), b = want[i].data.bytes();
      EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << "output " << i << " " << spec_name(strategy);
    }
    EXPECT_TRUE(std::equal(got.back().data.bytes().begin(), got.back().data.bytes().end(), m.inputs["chain"].data.bytes().begin(),
                           m.inputs["chain"].data.bytes().end()));
  }
}

}  // namespace
}  // namespace kiln::testing
