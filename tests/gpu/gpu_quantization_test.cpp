// The GPU kernels of the quantized ops against the reference interpreter on
// seeded random data, with the generic kernels and with shape-specialized
// ones: QuantizeLinear and DequantizeLinear (float32, float16 and bfloat16
// sides; per tensor, per axis and blocked; saturation at both ends, ties to
// even, empty tensors), MatMulInteger and QLinearMatMul (batch broadcasting,
// vector operands, zero points and scales per tensor, row or column, a depth
// of 1031), ConvInteger and QLinearConv (groups, strides, pads, dilations, 1
// to 3 spatial dims, per-channel zero points and scales, bias). Both sides
// compute the same roundings in the same order, so every result must match
// exactly.
#include "gpu_test_util.h"
#include "kiln/error.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using S = runtime::KernelSpecialization;

ir::Shape shape(const std::vector<int64_t>& dims) { return ir::Shape(dims.begin(), dims.end()); }

std::pair<int64_t, int64_t> range_of(DType dtype) { return dtype == DType::kInt8 ? std::pair{-128, 127} : std::pair{0, 255}; }

// Inputs and weights of one test network, with the feeds of its inputs.
struct Model {
  ir::Network net;
  std::map<std::string, ir::TensorData> inputs;
  std::mt19937 rng;

  explicit Model(uint32_t seed) : rng(seed) {}
  ValueId input(const std::string& name, ir::TensorData t) {
    ValueId v = net.add_input(name, t.dtype, shape(t.dims));
    inputs[name] = std::move(t);
    return v;
  }
  ValueId weight(const std::string& name, ir::TensorData t) { return net.add_weight(name, std::move(t)); }
  // Integers over the whole range of an int8 or uint8 dtype.
  ir::TensorData quantized(DType dtype, const std::vector<int64_t>& dims) {
    auto [lo, hi] = range_of(dtype);
    return random_ints(dtype, dims, rng, lo, hi);
  }
  // Scales in [lo, hi] (positive).
  ir::TensorData scales(DType dtype, const std::vector<int64_t>& dims, double lo, double hi) {
    std::uniform_real_distribution<double> u(lo, hi);
    std::vector<double> v(size_t(ir::checked_numel(dims)));
    for (double& x : v) x = u(rng);
    return reference::make_tensor(dtype, dims, v);
  }
  void check(const std::string& label, S strategy) {
    net.finalize();
    expect_gpu_matches_reference(net, inputs, plan::Precision::kFloat32, 0.0, label, strategy);
  }
};

class GpuQuantization : public ::testing::TestWithParam<std::tuple<DType, S>> {};

// QuantizeLinear of x (the parameter's float type) and DequantizeLinear back,
// and of int8/uint8/int32 inputs; x in [-3, 3] over scales near 0.02 spans
// past both ends of the range.
TEST_P(GpuQuantization, QuantizeAndDequantizeMatchReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 4242;
  Model m(seed);
  struct Case {
    std::vector<int64_t> x, scale;
    int64_t axis, block_size;
    DType quantized;
    bool zero_point;
  };
  const Case cases[] = {
      {{1}, {}, 1, 0, DType::kUInt8, false},        {{7, 33}, {1}, 1, 0, DType::kInt8, true},
      {{2, 1031}, {}, 1, 0, DType::kUInt8, true},   {{7, 33}, {33}, 1, 0, DType::kInt8, true},
      {{3, 7, 5}, {7}, -2, 0, DType::kUInt8, true}, {{7, 33}, {7, 11}, 1, 3, DType::kInt8, true},
      {{4, 6, 5}, {2, 6, 5}, 0, 2, DType::kUInt8, true}, {{7, 5}, {7, 1}, 1, 8, DType::kInt8, true},
      {{0, 33}, {33}, 1, 0, DType::kInt8, true},
  };
  for (size_t k = 0; k < std::size(cases); ++k) {
    const Case& c = cases[k];
    std::vector<int64_t> x_dims = c.x;
    ValueId x = m.input(str("x", k), m.scales(dtype, x_dims, -3.0, 3.0));
    ValueId scale = m.weight(str("scale", k), m.scales(dtype, c.scale, 0.01, 0.03));
    ir::Attributes a = attrs({{"axis", c.axis}, {"block_size", c.block_size}});
    std::vector<ValueId> q_in{x, scale};
    if (c.zero_point) {
      auto [lo, hi] = range_of(c.quantized);
      q_in.push_back(m.weight(str("zero", k), random_ints(c.quantized, c.scale, m.rng, lo / 4, hi / 4)));
    } else {
      a.set("output_dtype", int64_t(c.quantized));
    }
    ValueId q = m.net.add_op1(OpKind::kQuantizeLinear, q_in, a);
    std::vector<ValueId> dq_in{q, scale};
    if (c.zero_point) dq_in.push_back(q_in[2]);
    m.net.add_output(q);
    m.net.add_output(m.net.add_op1(OpKind::kDequantizeLinear, dq_in, attrs({{"axis", c.axis}, {"block_size", c.block_size}})));
    // DequantizeLinear of an input of the quantized type, into float32.
    ValueId raw = m.input(str("raw", k), m.quantized(c.quantized, x_dims));
    dq_in[0] = raw;
    m.net.add_output(m.net.add_op1(OpKind::kDequantizeLinear, dq_in,
                                   attrs({{"axis", c.axis}, {"block_size", c.block_size}, {"output_dtype", int64_t(DType::kFloat32)}})));
  }
  // Ties: x / scale = k / 2 exactly (scale 0.5), rounded half to even.
  std::vector<double> halves;
  for (int i = -12; i <= 12; ++i) halves.push_back(0.25 * i);
  ValueId tie = m.input("ties", reference::make_tensor(dtype, {25}, halves));
  m.net.add_output(m.net.add_op1(OpKind::kQuantizeLinear, {tie, m.weight("half", reference::make_tensor(dtype, {}, {0.5}))},
                                 attrs({{"output_dtype", int64_t(DType::kInt8)}})));
  // int32 in and out of the quantized domain (its division in float64).
  ValueId wide = m.input("wide", random_ints(DType::kInt32, {33}, m.rng, -100000, 100000));
  ValueId wide_scale = m.weight("wide_scale", m.scales(dtype, {}, 100.0, 900.0));
  m.net.add_output(m.net.add_op1(OpKind::kQuantizeLinear, {wide, wide_scale}, attrs({{"output_dtype", int64_t(DType::kInt8)}})));
  m.net.add_output(m.net.add_op1(OpKind::kDequantizeLinear, {wide, wide_scale}));
  m.check(str("quantize ", dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)), strategy);
}

// MatMulInteger and QLinearMatMul, the scales of QLinearMatMul in the parameter's type.
TEST_P(GpuQuantization, IntegerMatMulsMatchReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 777;
  Model m(seed);
  struct Case {
    std::vector<int64_t> a, b, a_param, b_param;
    DType a_type, b_type, y_type;
  };
  const DType i8 = DType::kInt8, u8 = DType::kUInt8;
  const Case cases[] = {
      {{1, 1}, {1, 1}, {}, {}, u8, i8, u8},
      {{7, 33}, {33, 5}, {7}, {5}, u8, i8, i8},                   // per row (ONNX's M vector) and per column
      {{2, 1, 7, 33}, {3, 33, 9}, {2, 1, 7, 1}, {3, 1, 9}, i8, i8, u8},  // broadcast batch, batched parameters
      {{33}, {33, 7}, {1}, {1, 7}, u8, u8, i8},                   // a vector
      {{7, 33}, {33}, {7, 1}, {}, i8, u8, u8},                    // b vector
      {{3, 1031}, {1031, 4}, {}, {4}, u8, i8, i8},                // deep
      {{0, 33}, {33, 5}, {}, {}, i8, i8, i8},                     // empty
  };
  for (size_t k = 0; k < std::size(cases); ++k) {
    const Case& c = cases[k];
    ValueId a = m.input(str("a", k), m.quantized(c.a_type, c.a)), b = m.input(str("b", k), m.quantized(c.b_type, c.b));
    ValueId az = m.weight(str("az", k), m.quantized(c.a_type, c.a_param)), bz = m.weight(str("bz", k), m.quantized(c.b_type, c.b_param));
    m.net.add_output(m.net.add_op1(OpKind::kMatMulInteger, {a, b, az, bz}));
    m.net.add_output(m.net.add_op1(OpKind::kMatMulInteger, {a, b}));
    // y's scale puts the sums (about sqrt(K) * 5500 wide) across its range, some past its ends.
    double spread = 64.0 * std::sqrt(double(std::max<int64_t>(c.a.back(), 1)));
    ValueId as = m.weight(str("as", k), m.scales(dtype, c.a_param, 0.5, 2.0)), bs = m.weight(str("bs", k), m.scales(dtype, c.b_param, 0.5, 2.0));
    ValueId ys = m.weight(str("ys", k), m.scales(dtype, {}, spread * 0.5, spread));
    ValueId yz = m.weight(str("yz", k), m.quantized(c.y_type, {}));
    m.net.add_output(m.net.add_op1(OpKind::kQLinearMatMul, {a, as, az, b, bs, bz, ys, yz}));
  }
  m.check(str("integer matmul, scales ", dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)), strategy);
}

// ConvInteger and QLinearConv (float32 scales, as ONNX defines it; the
// parameter's type only varies the seed's data between runs).
TEST_P(GpuQuantization, IntegerConvsMatchReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 99 + uint32_t(dtype);
  Model m(seed);
  struct Case {
    std::vector<int64_t> x, w;
    int64_t group;
    std::vector<int64_t> strides, pads, dilations;
    bool per_channel;
  };
  const Case cases[] = {
      {{1, 1, 7, 7}, {1, 1, 1, 1}, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, false},
      {{2, 4, 7, 33}, {6, 2, 3, 3}, 2, {2, 1}, {1, 0, 2, 1}, {1, 2}, true},
      {{1, 3, 33}, {5, 3, 4}, 1, {3}, {2, 1}, {2}, true},
      {{1, 2, 5, 6, 7}, {4, 1, 2, 3, 2}, 2, {1, 2, 1}, {1, 1, 0, 0, 1, 1}, {1, 1, 2}, false},
      {{0, 2, 5, 5}, {3, 2, 3, 3}, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, true},
  };
  const DType i8 = DType::kInt8, u8 = DType::kUInt8, f32 = DType::kFloat32;
  for (size_t k = 0; k < std::size(cases); ++k) {
    const Case& c = cases[k];
    DType xt = k % 2 ? i8 : u8, wt = k % 3 ? u8 : i8, yt = k % 2 ? u8 : i8;
    std::vector<int64_t> channel = c.per_channel ? std::vector<int64_t>{c.w[0]} : std::vector<int64_t>{};
    ir::Attributes a = attrs({{"group", c.group}, {"strides", c.strides}, {"pads", c.pads}, {"dilations", c.dilations}});
    ValueId x = m.input(str("x", k), m.quantized(xt, c.x)), w = m.weight(str("w", k), m.quantized(wt, c.w));
    ValueId xz = m.weight(str("xz", k), m.quantized(xt, {})), wz = m.weight(str("wz", k), m.quantized(wt, channel));
    m.net.add_output(m.net.add_op1(OpKind::kConvInteger, {x, w, xz, wz}, a));
    m.net.add_output(m.net.add_op1(OpKind::kConvInteger, {x, w}, a));
    int64_t taps = ir::checked_numel(c.w) / c.w[0];
    double spread = 64.0 * std::sqrt(double(taps));
    ValueId xs = m.weight(str("xs", k), m.scales(f32, {}, 0.5, 2.0)), ws = m.weight(str("ws", k), m.scales(f32, channel, 0.5, 2.0));
    ValueId ys = m.weight(str("ys", k), m.scales(f32, {}, spread * 0.5, spread)), yz = m.weight(str("yz", k), m.quantized(yt, {}));
    ValueId bias = m.weight(str("bias", k), random_ints(DType::kInt32, {c.w[0]}, m.rng, -20000, 20000));
    m.net.add_output(m.net.add_op1(OpKind::kQLinearConv, {x, xs, xz, w, ws, wz, ys, yz, bias}, a));
    m.net.add_output(m.net.add_op1(OpKind::kQLinearConv, {x, xs, xz, w, ws, wz, ys, yz}, a));
  }
  m.check(str("integer conv seed ", seed, " ", spec_name(strategy)), strategy);
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSpecialization, GpuQuantization,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16), ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) { return std::string(dtype_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param)); });

}  // namespace
}  // namespace kiln::testing
