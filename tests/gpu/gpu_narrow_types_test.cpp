// The narrow types on the GPU against the reference interpreter, bit for bit
// (any NaN for a NaN), with generic and shape-specialized kernels: Cast to
// every float8 format (float8e8m0 in each round_mode), float4e2m1 and the 4-
// and 2-bit integers from float32, float16, bfloat16 and int32 (saturating or
// not; ties, values past the largest, infinities, NaN and -0 among random
// ones) and back to float32; QuantizeLinear to and DequantizeLinear from each
// (per tensor, per axis and blocked), and with float8e8m0 scales; copies of
// them (Identity, Transpose, Reshape). Sizes 1, 7, 33, 1031 and empty.
#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::OpKind;
using ir::ValueId;
using S = runtime::KernelSpecialization;

std::vector<DType> narrow_types() {
  std::vector<DType> out;
  for (DType d : kAllDTypes)
    if (is_narrow(d)) out.push_back(d);
  return out;
}

// Values that exercise `narrow`'s conversion: its codes exactly, midpoints of
// neighbouring codes (ties), random values up to twice its range, and the
// special values, in a random order.
std::vector<double> conversion_values(DType narrow, size_t n, std::mt19937& rng) {
  double largest = 0;
  std::vector<double> codes;
  for (int c = 0; c < (1 << packed_bits(narrow)); ++c) {
    double v = is_narrow_float(narrow) ? narrow_float_to_double(narrow, uint8_t(c)) : double(narrow_integer_wrap(narrow, c));
    if (std::isfinite(v)) codes.push_back(v), largest = std::max(largest, std::fabs(v));
  }
  std::sort(codes.begin(), codes.end());
  const double specials[] = {NAN, INFINITY, -INFINITY, -0.0, 0.0, largest * 1.01, -largest * 3, largest + 1e-3};
  std::uniform_real_distribution<double> wide(-2 * largest, 2 * largest);
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) {
    size_t k = rng() % codes.size();
    switch (rng() % 8) {
      case 0: v[i] = specials[rng() % std::size(specials)]; break;
      case 1: case 2: v[i] = codes[k]; break;
      case 3: case 4: v[i] = k + 1 < codes.size() ? (codes[k] + codes[k + 1]) / 2 : codes[k]; break;
      default: v[i] = wide(rng);
    }
  }
  return v;
}

class GpuNarrowTypes : public ::testing::TestWithParam<S> {};

TEST_P(GpuNarrowTypes, CastsMatchReference) {
  KILN_REQUIRE_GPU();
  S strategy = GetParam();
  std::mt19937 rng(9100);
  OpNetwork m;
  for (DType narrow : narrow_types())
    for (DType from : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt32})
      for (int64_t n : {1, 7, 33, 1031, 0})
        for (int64_t saturate : {1, 0})
          for (const char* round_mode : {"up", "down", "nearest"}) {
            if (!is_narrow_float(narrow) && saturate == 0) continue;  // saturate rules float8 targets only
            if (narrow != DType::kFloat8E8M0 && std::string(round_mode) != "up") continue;  // round_mode float8e8m0's
            std::vector<double> v = conversion_values(narrow, size_t(n), rng);
            if (from == DType::kInt32)
              for (double& e : v) e = std::isfinite(e) ? std::trunc(std::clamp(e, -2e9, 2e9)) : 0;
            std::string name = str("x_", dtype_name(narrow), "_", dtype_name(from), "_", n, "_", saturate, "_", round_mode);
            ValueId x = m.input(name, reference::make_tensor(from, {n}, v));
            ValueId y = m.net.add_op1(OpKind::kCast, {x}, attrs({{"to", int64_t(narrow)}, {"saturate", saturate},
                                                                 {"round_mode", std::string(round_mode)}}));
            m.net.add_output(y);
            m.net.add_output(m.net.add_op1(OpKind::kCast, {y}, attrs({{"to", int64_t(DType::kFloat32)}})));
          }
  m.net.finalize();
  expect_gpu_matches_reference_exactly(m.net, m.feeds, strategy, str("narrow casts ", spec_name(strategy)));
}

// QuantizeLinear of float x to each narrow type and DequantizeLinear back.
TEST_P(GpuNarrowTypes, QuantizeAndDequantizeMatchReference) {
  KILN_REQUIRE_GPU();
  S strategy = GetParam();
  std::mt19937 rng(9200);
  OpNetwork m;
  struct Case {
    std::vector<int64_t> x, scale;
    int64_t axis, block_size;
  };
  const Case cases[] = {{{1}, {}, 1, 0}, {{7, 33}, {33}, 1, 0}, {{2, 1031}, {}, 1, 0}, {{7, 33}, {7, 11}, 1, 3}, {{0, 33}, {33}, 1, 0}};
  int k = 0;
  for (DType narrow : narrow_types())
    for (DType f : {DType::kFloat32, DType::kFloat16, DType::kBFloat16})
      for (const Case& c : cases) {
        if (narrow == DType::kFloat8E8M0) continue;  // a scale type only: QuantizeAndDequantizeWithFloat8E8M0Scales
        for (int64_t saturate : {1, 0}) {
          if (!is_narrow_float(narrow) && saturate == 0) continue;
          ++k;
          std::vector<double> v = conversion_values(narrow, size_t(ir::checked_numel(c.x)), rng);
          ValueId x = m.input(str("x", k), reference::make_tensor(f, c.x, v));
          std::vector<double> s(size_t(ir::checked_numel(c.scale)));
          for (double& e : s) e = 0.5 + 0.25 * double(rng() % 7);
          ValueId scale = m.net.add_weight(str("scale", k), reference::make_tensor(f, c.scale, s));
          ValueId zero = m.net.add_weight(str("zero", k), reference::make_tensor(narrow, c.scale, std::vector<double>(s.size(), 0.0)));
          ValueId q = m.net.add_op1(OpKind::kQuantizeLinear, {x, scale, zero},
                                    attrs({{"axis", c.axis}, {"block_size", c.block_size}, {"saturate", saturate}}));
          m.net.add_output(q);
          m.net.add_output(m.net.add_op1(OpKind::kDequantizeLinear, {q, scale, zero}, attrs({{"axis", c.axis}, {"block_size", c.block_size}})));
        }
      }
  m.net.finalize();
  expect_gpu_matches_reference_exactly(m.net, m.feeds, strategy, str("narrow quantization ", spec_name(strategy)));
}

// Power-of-two scales (every float8e8m0 code but NaN's among them, per tensor,
// per axis and blocked) of int8, float8e4m3fn and float4e2m1 values.
TEST_P(GpuNarrowTypes, QuantizeAndDequantizeWithFloat8E8M0Scales) {
  KILN_REQUIRE_GPU();
  S strategy = GetParam();
  std::mt19937 rng(9400);
  OpNetwork m;
  struct Case {
    std::vector<int64_t> x, scale;
    int64_t axis, block_size;
  };
  const Case cases[] = {{{1}, {}, 1, 0}, {{7, 33}, {33}, 1, 0}, {{2, 1031}, {}, 1, 0}, {{7, 33}, {7, 11}, 1, 3}, {{0, 33}, {33}, 1, 0}};
  const DType e8m0 = DType::kFloat8E8M0;
  int k = 0;
  for (DType q : {DType::kInt8, DType::kFloat8E4M3FN, DType::kFloat4E2M1})
    for (DType f : {DType::kFloat32, DType::kFloat16, DType::kBFloat16})
      for (const Case& c : cases) {
        ++k;
        std::vector<double> s(size_t(ir::checked_numel(c.scale)));
        for (double& e : s) e = std::ldexp(1.0, int(rng() % 255) - 127);
        if (!s.empty()) s[0] = std::ldexp(1.0, -4);  // a scale these values quantize to more than 0 and less than the range
        std::vector<double> v = conversion_values(q, size_t(ir::checked_numel(c.x)), rng);
        for (double& e : v) e *= s.empty() ? 1 : s[0];
        ValueId x = m.input(str("x", k), reference::make_tensor(f, c.x, v));
        ValueId scale = m.net.add_weight(str("scale", k), reference::make_tensor(e8m0, c.scale, s));
        ValueId zero = m.net.add_weight(str("zero", k), reference::make_tensor(q, c.scale, std::vector<double>(s.size(), 0.0)));
        ValueId quantized = m.net.add_op1(OpKind::kQuantizeLinear, {x, scale, zero}, attrs({{"axis", c.axis}, {"block_size", c.block_size}}));
        m.net.add_output(quantized);
        m.net.add_output(m.net.add_op1(OpKind::kDequantizeLinear, {quantized, scale, zero},
                                       attrs({{"axis", c.axis}, {"block_size", c.block_size}, {"output_dtype", int64_t(f)}})));
      }
  m.net.finalize();
  expect_gpu_matches_reference_exactly(m.net, m.feeds, strategy, str("float8e8m0 scales ", spec_name(strategy)));
}

// The copy kernels move narrow values as bytes: Identity, Transpose and Reshape.
TEST_P(GpuNarrowTypes, CopiesMatchReference) {
  KILN_REQUIRE_GPU();
  S strategy = GetParam();
  std::mt19937 rng(9300);
  OpNetwork m;
  for (DType narrow : narrow_types()) {
    std::vector<double> v = conversion_values(narrow, 7 * 33, rng);
    ValueId x = m.input(str("x_", dtype_name(narrow)), reference::make_tensor(narrow, {7, 33}, v));
    m.net.add_output(m.net.add_op1(OpKind::kIdentity, {x}));
    m.net.add_output(m.net.add_op1(OpKind::kTranspose, {x}, attrs({{"perm", std::vector<int64_t>{1, 0}}})));
    m.net.add_output(m.net.add_op1(OpKind::kReshape, {x, m.net.add_weight(str("shape_", dtype_name(narrow)), int64s({2}, {33, 7}))}));
  }
  m.net.finalize();
  expect_gpu_matches_reference_exactly(m.net, m.feeds, strategy, str("narrow copies ", spec_name(strategy)));
}

INSTANTIATE_TEST_SUITE_P(Specialization, GpuNarrowTypes, ::testing::Values(S::kNone, S::kEager),
                         [](const auto& info) { return std::string(spec_name(info.param)); });

}  // namespace
}  // namespace kiln::testing
