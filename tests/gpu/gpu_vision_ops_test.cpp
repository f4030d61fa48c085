// The GPU kernels of GridSample, RoiAlign, AffineGrid, Col2Im and MaxRoiPool against the reference
// interpreter on seeded random non-zero data, in models of float32, float16
// and bfloat16 (both sides then read the same low-precision inputs, so they
// sample at the same points and differ by the output's rounding), with the
// generic kernels and with shape-specialized ones: every mode, padding and
// alignment, odd sizes (1, 7, 33), grid points outside [-1, 1], 1 to 3
// spatial dims, RoIs partly or wholly outside the image.
#include <optional>

#include "gpu_test_util.h"
#include "kiln/error.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using S = runtime::KernelSpecialization;

ir::Shape shape(const std::vector<int64_t>& dims) { return ir::Shape(dims.begin(), dims.end()); }

// Values uniform in [lo, hi] (grids and RoIs, which must reach past the image).
ir::TensorData uniform(DType dtype, const std::vector<int64_t>& dims, std::mt19937& rng, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (auto& x : v) x = u(rng);
  return reference::make_tensor(dtype, dims, v);
}

// Relative to each output's largest magnitude: one rounding of the output, a few of float32's sums.
double tolerance(DType dtype) { return dtype == DType::kFloat32 ? 1e-5 : dtype == DType::kFloat16 ? 2e-3 : 1.6e-2; }

class GpuVision : public ::testing::TestWithParam<std::tuple<DType, S>> {};

// X of 2-D (2 x 3 x 7 x 33 and a 1-pixel-high 1 x 2 x 1 x 7), 1-D and 3-D
// spatial dims, sampled at grids in [-1.3, 1.3] in every mode, padding and
// alignment; a float32 grid for X of a lower precision too.
TEST_P(GpuVision, GridSampleMatchesReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 2026;
  std::mt19937 rng(seed);
  struct Case {
    std::vector<int64_t> x, grid;
  };
  const Case cases[] = {
      {{2, 3, 7, 33}, {2, 5, 9, 2}}, {{1, 2, 1, 7}, {1, 3, 7, 2}}, {{2, 3, 33}, {2, 7, 1}}, {{1, 2, 3, 1, 7}, {1, 2, 3, 5, 3}}};
  ir::Network net;
  std::map<std::string, ir::TensorData> inputs;
  for (size_t k = 0; k < std::size(cases); ++k) {
    const Case& c = cases[k];
    std::string x = str("x", k), grid = str("grid", k), grid32 = str("grid32_", k);
    ValueId xv = net.add_input(x, dtype, shape(c.x)), gv = net.add_input(grid, dtype, shape(c.grid));
    inputs[x] = random_tensor(dtype, c.x, rng);
    inputs[grid] = uniform(dtype, c.grid, rng, -1.3, 1.3);
    for (const char* mode : {"linear", "nearest", "cubic"})
      for (const char* padding : {"zeros", "border", "reflection"})
        for (int64_t align : {0, 1}) {
          ir::Attributes a = attrs({{"mode", std::string(mode)}, {"padding_mode", std::string(padding)}, {"align_corners", align}});
          net.add_output(net.add_op1(OpKind::kGridSample, {xv, gv}, a));
        }
    if (dtype != DType::kFloat32) {
      ValueId g32 = net.add_input(grid32, DType::kFloat32, shape(c.grid));
      inputs[grid32] = uniform(DType::kFloat32, c.grid, rng, -1.3, 1.3);
      net.add_output(net.add_op1(OpKind::kGridSample, {xv, g32}, attrs({{"mode", std::string("cubic")}})));
    }
  }
  net.finalize();
  expect_gpu_matches_reference(net, inputs, plan::Precision::kFloat32, tolerance(dtype),
                               str("grid sample ", dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)), strategy);
}

// RoIs over a 2 x 3 x 7 x 33 X, corners drawn from well outside the image to
// well inside it (some RoIs partly or wholly outside, some inverted), in both
// modes and coordinate transformations, adaptive and fixed sampling, two scales.
TEST_P(GpuVision, RoiAlignMatchesReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 1013;
  std::mt19937 rng(seed);
  const int64_t rois = 9;
  ir::Network net;
  ValueId x = net.add_input("x", dtype, {Dim(2), Dim(3), Dim(7), Dim(33)});
  ValueId boxes = net.add_input("rois", dtype, {Dim(rois), Dim(4)});
  ValueId batch = net.add_input("batch", DType::kInt64, {Dim(rois)});
  for (const char* mode : {"avg", "max"})
    for (const char* coordinates : {"half_pixel", "output_half_pixel"})
      for (int64_t ratio : {0, 2})
        for (double scale : {1.0, 0.5}) {
          ir::Attributes a = attrs({{"mode", std::string(mode)}, {"coordinate_transformation_mode", std::string(coordinates)},
                                    {"sampling_ratio", ratio}, {"spatial_scale", scale}, {"output_height", int64_t(3)},
                                    {"output_width", int64_t(5)}});
          net.add_output(net.add_op1(OpKind::kRoiAlign, {x, boxes, batch}, a));
        }
  net.finalize();
  std::vector<double> indices;
  for (int64_t i = 0; i < rois; ++i) indices.push_back(double(i % 2));
  std::map<std::string, ir::TensorData> inputs = {{"x", random_tensor(dtype, {2, 3, 7, 33}, rng)},
                                                  {"rois", uniform(dtype, {rois, 4}, rng, -6, 40)},
                                                  {"batch", reference::make_tensor(DType::kInt64, {rois}, indices)}};
  expect_gpu_matches_reference(net, inputs, plan::Precision::kFloat32, tolerance(dtype),
                               str("roi align ", dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)), strategy);
}

// RoIs [batch, x1, y1, x2, y2] over X, corners from `lo` to `hi`, batch
// indices alternating 0 and 1, or `batch` where it is given.
ir::TensorData pooling_rois(DType dtype, int64_t count, std::mt19937& rng, double lo, double hi, std::optional<double> batch = {}) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v;
  for (int64_t i = 0; i < count; ++i) v.insert(v.end(), {batch.value_or(double(i % 2)), u(rng), u(rng), u(rng), u(rng)});
  return reference::make_tensor(dtype, {count, 5}, v);
}

// MaxRoiPool of a 2 x 3 x 7 x 33 X over RoIs partly or wholly outside it (some
// inverted), pooled 1 x 1, 3 x 5 and 7 x 2 at two scales; a 1 x 1 image; no RoIs.
TEST_P(GpuVision, MaxRoiPoolMatchesReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 4242;
  std::mt19937 rng(seed);
  ir::Network net;
  ValueId x = net.add_input("x", dtype, {Dim(2), Dim(3), Dim(7), Dim(33)});
  ValueId rois = net.add_input("rois", dtype, {Dim(9), Dim(5)});
  ValueId pixel = net.add_input("pixel", dtype, {Dim(1), Dim(2), Dim(1), Dim(1)});
  ValueId one = net.add_input("one", dtype, {Dim(1), Dim(5)});
  ValueId none = net.add_input("none", dtype, {Dim(0), Dim(5)});
  for (auto pooled : {std::vector<int64_t>{1, 1}, {3, 5}, {7, 2}})
    for (double scale : {1.0, 0.4}) {
      ir::Attributes a = attrs({{"pooled_shape", pooled}, {"spatial_scale", scale}});
      net.add_output(net.add_op1(OpKind::kMaxRoiPool, {x, rois}, a));
      net.add_output(net.add_op1(OpKind::kMaxRoiPool, {pixel, one}, a));
      net.add_output(net.add_op1(OpKind::kMaxRoiPool, {x, none}, a));
    }
  net.finalize();
  std::map<std::string, ir::TensorData> inputs = {{"x", random_tensor(dtype, {2, 3, 7, 33}, rng)},
                                                  {"rois", pooling_rois(dtype, 9, rng, -6, 40)},
                                                  {"pixel", random_tensor(dtype, {1, 2, 1, 1}, rng)},
                                                  {"one", pooling_rois(dtype, 1, rng, -1, 2, 0.0)},
                                                  {"none", reference::make_tensor(dtype, {0, 5}, {})}};
  expect_gpu_matches_reference(net, inputs, plan::Precision::kFloat32, tolerance(dtype),
                               str("max roi pool ", dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)), strategy);
}

// 2-D (7 x 33) and 3-D (3 x 1 x 7) grids from random thetas, both alignments.
TEST_P(GpuVision, AffineGridMatchesReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 7;
  std::mt19937 rng(seed);
  ir::Network net;
  ValueId t2 = net.add_input("theta2", dtype, {Dim(2), Dim(2), Dim(3)});
  ValueId t3 = net.add_input("theta3", dtype, {Dim(2), Dim(3), Dim(4)});
  ValueId size2 = net.add_weight("size2", reference::make_tensor(DType::kInt64, {4}, {2, 1, 7, 33}));
  ValueId size3 = net.add_weight("size3", reference::make_tensor(DType::kInt64, {5}, {2, 1, 3, 1, 7}));
  for (int64_t align : {0, 1}) {
    net.add_output(net.add_op1(OpKind::kAffineGrid, {t2, size2}, attrs({{"align_corners", align}})));
    net.add_output(net.add_op1(OpKind::kAffineGrid, {t3, size3}, attrs({{"align_corners", align}})));
  }
  net.finalize();
  std::map<std::string, ir::TensorData> inputs = {{"theta2", random_tensor(dtype, {2, 2, 3}, rng)},
                                                  {"theta3", random_tensor(dtype, {2, 3, 4}, rng)}};
  expect_gpu_matches_reference(net, inputs, plan::Precision::kFloat32, tolerance(dtype),
                               str("affine grid ", dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)), strategy);
}

// Col2Im of 1 to 3 spatial dims: overlapping blocks (stride 1), strided and
// dilated ones, pads, and a block of one element a dim.
TEST_P(GpuVision, Col2ImMatchesReference) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  const uint32_t seed = 18;
  std::mt19937 rng(seed);
  struct Case {
    std::vector<int64_t> x, image, block, strides, dilations, pads;
  };
  const Case cases[] = {
      {{2, 12, 4 * 17}, {7, 33}, {2, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}},  // (7 + 2 - 2) / 2 + 1 = 4, (33 + 2 - 3) / 2 + 1 = 17
      {{1, 4, 6 * 30}, {7, 33}, {2, 2}, {1, 1}, {1, 3}, {0, 0, 0, 0}},   // dilated along W: 6 x 30 positions
      {{2, 3, 33}, {33}, {1}, {1}, {1}, {0, 0}},
      {{1, 8, 2 * 1 * 6}, {3, 1, 7}, {2, 1, 2}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0, 0, 0, 0}},
  };
  ir::Network net;
  std::map<std::string, ir::TensorData> inputs;
  for (size_t k = 0; k < std::size(cases); ++k) {
    const Case& c = cases[k];
    std::string name = str("x", k);
    auto ints = [&](const std::string& what, const std::vector<int64_t>& v) {
      return net.add_weight(str(what, k), reference::make_tensor(DType::kInt64, {int64_t(v.size())}, {v.begin(), v.end()}));
    };
    ir::Attributes a = attrs({{"strides", c.strides}, {"dilations", c.dilations}, {"pads", c.pads}});
    ValueId x = net.add_input(name, dtype, shape(c.x));
    net.add_output(net.add_op1(OpKind::kCol2Im, {x, ints("image", c.image), ints("block", c.block)}, a));
    inputs[name] = random_tensor(dtype, c.x, rng);
  }
  net.finalize();
  expect_gpu_matches_reference(net, inputs, plan::Precision::kFloat32, tolerance(dtype),
                               str("col2im ", dtype_name(dtype), " seed ", seed, " ", spec_name(strategy)), strategy);
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSpecialization, GpuVision,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16), ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) { return std::string(dtype_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param)); });

// A float32 model built at fp16 and bf16 precision (grid and RoIs cast down
// too): linear sampling of a smooth image (slopes at most 0.025 a pixel along
// x, 0.15 along y), so a grid's rounding (2^-11 of fp16, 2^-8 of bf16: 0.008
// and 0.07 pixels along 33) moves a sample by less than the values' own
// rounding; the RoIs' corners are exact in both. The tolerances are three
// to five times the sum of those estimates.
TEST(GpuVisionPrecision, Float32ModelAtLowerPrecisions) {
  KILN_REQUIRE_GPU();
  for (plan::Precision precision : {plan::Precision::kFloat16, plan::Precision::kBFloat16}) {
    std::mt19937 rng(5);
    ir::Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(1), Dim(2), Dim(7), Dim(33)});
    ValueId grid = net.add_input("grid", DType::kFloat32, {Dim(1), Dim(4), Dim(6), Dim(2)});
    ValueId boxes = net.add_input("rois", DType::kFloat32, {Dim(3), Dim(4)});
    ValueId batch = net.add_weight("batch", reference::make_tensor(DType::kInt64, {3}, {0, 0, 0}));
    net.add_output(net.add_op1(OpKind::kGridSample, {x, grid}, attrs({{"padding_mode", std::string("border")}})));
    net.add_output(net.add_op1(OpKind::kRoiAlign, {x, boxes, batch}, attrs({{"output_height", int64_t(2)}, {"output_width", int64_t(3)}})));
    net.finalize();
    std::vector<double> smooth;
    for (int64_t i = 0; i < 2 * 7 * 33; ++i) smooth.push_back(1 + 0.5 * std::sin(0.05 * double(i % 33)) * std::cos(0.3 * double(i / 33)));
    std::map<std::string, ir::TensorData> inputs = {{"x", reference::make_tensor(DType::kFloat32, {1, 2, 7, 33}, smooth)},
                                                    {"grid", uniform(DType::kFloat32, {1, 4, 6, 2}, rng, -1, 1)},
                                                    {"rois", reference::make_tensor(DType::kFloat32, {3, 4},
                                                                                    {0, 0, 10, 5, 3.5, 1, 30, 6, -2, -2, 4, 4})}};
    expect_gpu_matches_reference(net, inputs, precision, precision == plan::Precision::kFloat16 ? 5e-3 : 3e-2,
                                 str("vision at ", plan::precision_name(precision)));
  }
}

// A batch index out of range reads nothing: the GPU writes zeros for that RoI
// (the reference refuses it) and the other RoIs are unaffected.
TEST(GpuVisionRoiAlign, BatchIndexOutOfRangeWritesZeros) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(11);
  auto model = [] {
    ir::Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(3), Dim(7), Dim(33)});
    ValueId boxes = net.add_input("rois", DType::kFloat32, {Dim(3), Dim(4)});
    ValueId batch = net.add_input("batch", DType::kInt64, {Dim(3)});
    net.add_output(net.add_op1(OpKind::kRoiAlign, {x, boxes, batch}, attrs({{"output_height", int64_t(2)}, {"output_width", int64_t(2)}})));
    net.finalize();
    return net;
  };
  ir::Network net = model();
  std::map<std::string, ir::TensorData> inputs = {{"x", random_tensor(DType::kFloat32, {2, 3, 7, 33}, rng)},
                                                  {"rois", uniform(DType::kFloat32, {3, 4}, rng, 0, 7)},
                                                  {"batch", reference::make_tensor(DType::kInt64, {3}, {1, 2, -1})}};
  for (S strategy : {S::kNone, S::kEager}) {
    auto got = ir::read_doubles(run_on_gpu(net, inputs, plan::Precision::kFloat32, strategy).at(0));
    auto valid = inputs;
    valid["batch"] = reference::make_tensor(DType::kInt64, {3}, {1, 1, 1});
    auto want = ir::read_doubles(reference::run(net, valid).at(0));
    ASSERT_EQ(got.size(), 3u * 3 * 2 * 2);
    for (size_t i = 0; i < got.size(); ++i) {
      if (i < 12) EXPECT_NEAR(got[i], want[i], 1e-5) << spec_name(strategy) << " element " << i;
      else EXPECT_EQ(got[i], 0.0) << spec_name(strategy) << " element " << i << " of a RoI whose batch index is out of range";
    }
  }
}

// MaxRoiPool as RoiAlign: a batch index out of range (or not a number) writes
// zeros for its RoI and leaves the others as the reference computes them.
TEST(GpuVisionMaxRoiPool, BatchIndexOutOfRangeWritesZeros) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(12);
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(3), Dim(7), Dim(33)});
  ValueId rois = net.add_input("rois", DType::kFloat32, {Dim(3), Dim(5)});
  net.add_output(net.add_op1(OpKind::kMaxRoiPool, {x, rois}, attrs({{"pooled_shape", std::vector<int64_t>{2, 2}}})));
  net.finalize();
  ir::TensorData valid = pooling_rois(DType::kFloat32, 3, rng, 0, 7, 1.0);
  std::vector<double> corners = ir::read_doubles(valid);
  corners[5] = 2, corners[10] = std::nan("");
  std::map<std::string, ir::TensorData> inputs = {{"x", random_tensor(DType::kFloat32, {2, 3, 7, 33}, rng)},
                                                  {"rois", reference::make_tensor(DType::kFloat32, {3, 5}, corners)}};
  EXPECT_THROW(reference::run(net, inputs), Error);
  auto want = ir::read_doubles(reference::run(net, {{"x", inputs["x"]}, {"rois", valid}}).at(0));
  for (S strategy : {S::kNone, S::kEager}) {
    auto got = ir::read_doubles(run_on_gpu(net, inputs, plan::Precision::kFloat32, strategy).at(0));
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      if (i < 12) EXPECT_EQ(got[i], want[i]) << spec_name(strategy) << " element " << i;
      else EXPECT_EQ(got[i], 0.0) << spec_name(strategy) << " element " << i << " of a RoI whose batch index is out of range";
    }
  }
}

}  // namespace
}  // namespace kiln::testing
