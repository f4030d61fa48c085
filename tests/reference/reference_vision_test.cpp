// The vision family's reference kernels against values worked out by hand
// from the ONNX definitions, and GridSample of an identity AffineGrid, which
// must give the image back in every mode, padding and alignment.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/reference.h"

namespace kiln::reference {
namespace {

using ir::Dim;
using ir::OpKind;

std::vector<double> values(const Tensor& t) {
  std::vector<double> out;
  for (int64_t i = 0; i < t.numel(); ++i) out.push_back(t.dtype == DType::kFloat64 ? t.data.as<double>()[i] : t.data.as<float>()[i]);
  return out;
}

ir::Attributes attrs(std::initializer_list<std::pair<const char*, ir::AttrValue>> list) {
  ir::Attributes a;
  for (auto& [name, value] : list) a.set(name, value);
  return a;
}

ir::Shape shape(const std::vector<int64_t>& dims) { return ir::Shape(dims.begin(), dims.end()); }

// GridSample of x at one point per call: (gx, gy) normalized, x along the last dim.
double sample_at(const Tensor& x, std::vector<double> point, const ir::Attributes& a) {
  ir::Network net;
  std::vector<int64_t> grid_dims(x.dims.size(), 1);
  grid_dims.back() = int64_t(point.size());
  ir::ValueId y = net.add_op1(OpKind::kGridSample,
                              {net.add_input("x", x.dtype, shape(x.dims)), net.add_input("grid", DType::kFloat64, shape(grid_dims))}, a);
  net.add_output(y);
  net.finalize();
  return values(run(net, {{"x", x}, {"grid", make_tensor(DType::kFloat64, grid_dims, point)}})[0]).at(0);
}

ir::Attributes gs(const char* mode, const char* padding, int64_t align) {
  return attrs({{"mode", std::string(mode)}, {"padding_mode", std::string(padding)}, {"align_corners", align}});
}

TEST(ReferenceVision, GridSampleModesAndPaddings) {
  Tensor x = make_tensor(DType::kFloat32, {1, 1, 2, 3}, {1, 2, 3, 4, 5, 6});  // H 2, W 3
  // align_corners 1, centre: pixel (y 0.5, x 1), between 2 and 5.
  EXPECT_DOUBLE_EQ(sample_at(x, {0, 0}, gs("linear", "zeros", 1)), 3.5);
  // align_corners 0, corner (-1, -1): pixel (-0.5, -0.5); zeros keep a quarter of X[0, 0], border and reflection all of it.
  EXPECT_DOUBLE_EQ(sample_at(x, {-1, -1}, gs("linear", "zeros", 0)), 0.25);
  EXPECT_DOUBLE_EQ(sample_at(x, {-1, -1}, gs("linear", "border", 0)), 1);
  EXPECT_DOUBLE_EQ(sample_at(x, {-1, -1}, gs("linear", "reflection", 0)), 1);
  // Outside: gx -1.5 is pixel x -1.25; reflected about -0.5 to 0.25, clamped to 0, or all zeros. y 0.5.
  EXPECT_DOUBLE_EQ(sample_at(x, {-1.5, 0}, gs("linear", "reflection", 0)), 0.5 * (1.25 + 4.25));
  EXPECT_DOUBLE_EQ(sample_at(x, {-1.5, 0}, gs("linear", "border", 0)), 2.5);
  EXPECT_DOUBLE_EQ(sample_at(x, {-1.5, 0}, gs("linear", "zeros", 0)), 0);
  // Nearest rounds half to even: pixel x 0.5 -> 0 and 1.5 -> 2 (align_corners 1), y 0.5 -> 0.
  EXPECT_DOUBLE_EQ(sample_at(x, {-0.5, 0}, gs("nearest", "zeros", 1)), 1);
  EXPECT_DOUBLE_EQ(sample_at(x, {0.5, 0}, gs("nearest", "zeros", 1)), 3);
  EXPECT_DOUBLE_EQ(sample_at(x, {0.2, -0.2}, gs("nearest", "zeros", 0)), 2);  // pixel (0.3, 1.3)
  // Nearest far outside: border takes the edge, reflection folds back (x 4 about 2 -> 0 with align_corners 1).
  EXPECT_DOUBLE_EQ(sample_at(x, {5, 1}, gs("nearest", "border", 1)), 6);
  EXPECT_DOUBLE_EQ(sample_at(x, {3, -1}, gs("nearest", "reflection", 1)), 1);
  EXPECT_DOUBLE_EQ(sample_at(x, {3, -1}, gs("nearest", "zeros", 1)), 0);
  // NaN reads as padding: zeros.
  EXPECT_DOUBLE_EQ(sample_at(x, {std::nan(""), 0}, gs("linear", "zeros", 0)), 0);
}

TEST(ReferenceVision, GridSampleCubicWeightsAndNdInputs) {
  std::vector<double> ramp{0, 1, 2, 3, 4, 5, 6, 7};
  Tensor line = make_tensor(DType::kFloat64, {1, 1, 8}, ramp);  // one spatial dim
  // Pixel 3.3 of a ramp: linear gives 3.3; Keys' cubic with A = -0.75 weighs pixels 2 to 5 by
  // -0.11025, 0.83125, 0.32625, -0.04725 (they sum to 1, but A = -0.75 does not keep a ramp).
  EXPECT_NEAR(sample_at(line, {6.6 / 7 - 1}, gs("cubic", "border", 1)), 2 * -0.11025 + 3 * 0.83125 + 4 * 0.32625 + 5 * -0.04725, 1e-12);
  EXPECT_NEAR(sample_at(line, {6.6 / 7 - 1}, gs("linear", "zeros", 1)), 3.3, 1e-12);
  Tensor cube = make_tensor(DType::kFloat64, {1, 1, 2, 2, 2}, ramp);  // z * 4 + y * 2 + x
  EXPECT_NEAR(sample_at(cube, {0, 0, 0}, gs("linear", "zeros", 1)), 3.5, 1e-12);
  EXPECT_NEAR(sample_at(cube, {1, -1, 1}, gs("linear", "zeros", 1)), 5, 1e-12);  // x 1, y 0, z 1
}

// GridSample at AffineGrid's identity grid gives X back: every point is a pixel centre (align 0) or corner (align 1).
TEST(ReferenceVision, GridSampleOfTheIdentityAffineGridIsTheImage) {
  for (std::vector<int64_t> dims : {std::vector<int64_t>{2, 3, 7, 33}, std::vector<int64_t>{1, 2, 3, 1, 7}})
    for (int64_t align : {0, 1})
      for (const char* mode : {"linear", "nearest", "cubic"})
        for (const char* padding : {"zeros", "border", "reflection"}) {
          size_t r = dims.size() - 2;
          int64_t n = dims[0];
          std::vector<double> pixels, theta;
          for (int64_t i = 0; i < ir::checked_numel(dims); ++i) pixels.push_back(std::sin(double(i)) + 2);
          for (int64_t b = 0; b < n; ++b)
            for (size_t row = 0; row < r; ++row)
              for (size_t k = 0; k <= r; ++k) theta.push_back(row == k ? 1 : 0);
          ir::Network net;
          ir::ValueId x = net.add_input("x", DType::kFloat64, shape(dims));
          ir::ValueId size = net.add_weight("size", make_tensor(DType::kInt64, {int64_t(dims.size())}, {dims.begin(), dims.end()}));
          ir::ValueId t = net.add_input("theta", DType::kFloat64, {Dim(n), Dim(int64_t(r)), Dim(int64_t(r + 1))});
          ir::ValueId grid = net.add_op1(OpKind::kAffineGrid, {t, size}, attrs({{"align_corners", align}}));
          net.add_output(net.add_op1(OpKind::kGridSample, {x, grid}, gs(mode, padding, align)));
          net.finalize();
          auto out = values(run(net, {{"x", make_tensor(DType::kFloat64, dims, pixels)},
                                      {"theta", make_tensor(DType::kFloat64, {n, int64_t(r), int64_t(r + 1)}, theta)}})[0]);
          ASSERT_EQ(out.size(), pixels.size());
          for (size_t i = 0; i < out.size(); ++i)
            ASSERT_NEAR(out[i], pixels[i], 1e-9) << mode << " " << padding << " align " << align << " rank " << dims.size() << " at " << i;
        }
}

TEST(ReferenceVision, AffineGridAppliesThetaToTheBaseGrid) {
  ir::Network net;
  ir::ValueId t = net.add_input("theta", DType::kFloat64, {Dim(1), Dim(2), Dim(3)});
  ir::ValueId size = net.add_weight("size", make_tensor(DType::kInt64, {4}, {1, 1, 2, 3}));
  net.add_output(net.add_op1(OpKind::kAffineGrid, {t, size}));
  net.finalize();
  auto out = values(run(net, {{"theta", make_tensor(DType::kFloat64, {1, 2, 3}, {2, 0, 0.1, 0.5, 3, -0.2})}})[0]);
  ASSERT_EQ(out.size(), 12u);
  const double xs[] = {-2.0 / 3, 0, 2.0 / 3}, ys[] = {-0.5, 0.5};  // pixel centres, align_corners 0
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) {
      EXPECT_NEAR(out[size_t((i * 3 + j) * 2)], 2 * xs[j] + 0.1, 1e-12);
      EXPECT_NEAR(out[size_t((i * 3 + j) * 2 + 1)], 0.5 * xs[j] + 3 * ys[i] - 0.2, 1e-12);
    }
}

std::vector<double> roi_align(const std::vector<double>& rois, const std::vector<int64_t>& batch, const ir::Attributes& a) {
  std::vector<double> pixels;
  for (int i = 0; i < 32; ++i) pixels.push_back(i % 16 + (i / 16) * 100);  // image b: 100 b + 4 y + x
  int64_t r = int64_t(batch.size());
  ir::Network net;
  ir::ValueId y = net.add_op1(OpKind::kRoiAlign,
                              {net.add_input("x", DType::kFloat64, {Dim(2), Dim(1), Dim(4), Dim(4)}),
                               net.add_input("rois", DType::kFloat64, {Dim(r), Dim(4)}), net.add_input("b", DType::kInt64, {Dim(r)})},
                              a, "roi");
  net.add_output(y);
  net.finalize();
  return values(run(net, {{"x", make_tensor(DType::kFloat64, {2, 1, 4, 4}, pixels)},
                          {"rois", make_tensor(DType::kFloat64, {r, 4}, rois)},
                          {"b", make_tensor(DType::kInt64, {r}, {batch.begin(), batch.end()})}})[0]);
}

TEST(ReferenceVision, RoiAlignAveragesAndMaxesBilinearSamples) {
  // half_pixel: RoI [0, 3] becomes [-0.5, 2.5], 3 samples a side at 0, 1, 2: the mean of 4 y + x is 5.
  EXPECT_DOUBLE_EQ(roi_align({0, 0, 3, 3}, {0}, {}).at(0), 5);
  EXPECT_DOUBLE_EQ(roi_align({0, 0, 3, 3}, {1}, {}).at(0), 105);
  // max: the largest weighted corner of any sample; the samples sit on pixels, so the largest pixel, 4 * 2 + 2.
  EXPECT_DOUBLE_EQ(roi_align({0, 0, 3, 3}, {0}, attrs({{"mode", std::string("max")}})).at(0), 10);
  // output_half_pixel, 2x2 bins of 1.5, 2 samples a side (sampling_ratio 2) at 0.375 and 1.125 into each bin.
  auto bins = roi_align({0, 0, 3, 3}, {0},
                        attrs({{"coordinate_transformation_mode", std::string("output_half_pixel")}, {"output_height", int64_t(2)},
                               {"output_width", int64_t(2)}, {"sampling_ratio", int64_t(2)}}));
  ASSERT_EQ(bins.size(), 4u);
  EXPECT_DOUBLE_EQ(bins[0], 5 * 0.75);        // centre (0.75, 0.75)
  EXPECT_DOUBLE_EQ(bins[3], 5 * 2.25);        // centre (2.25, 2.25)
  // output_half_pixel makes a malformed RoI 1x1; half_pixel keeps it empty (no samples: 0).
  EXPECT_DOUBLE_EQ(roi_align({1, 1, 1, 1}, {0}, attrs({{"coordinate_transformation_mode", std::string("output_half_pixel")}})).at(0),
                   5 * 1.5);
  EXPECT_DOUBLE_EQ(roi_align({1, 1, 1, 1}, {0}, {}).at(0), 0);
  // Samples beyond [-1, H] read 0; scaled RoIs.
  EXPECT_DOUBLE_EQ(roi_align({10, 10, 12, 12}, {0}, {}).at(0), 0);
  EXPECT_DOUBLE_EQ(roi_align({0, 0, 6, 6}, {0}, attrs({{"spatial_scale", 0.5}})).at(0), 5);
}

TEST(ReferenceVision, RoiAlignRefusesABatchIndexOutOfRange) {
  for (int64_t b : {int64_t(2), int64_t(-1)}) {
    try {
      roi_align({0, 0, 3, 3, 0, 0, 1, 1}, {0, b}, {});
      ADD_FAILURE() << "batch index " << b << " was read";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kShapeError);
      EXPECT_NE(std::string(e.what()).find(str("node 'roi' (RoiAlign): batch_indices[1] = ", b, " is out of range for X's batch of 2")),
                std::string::npos)
          << e.what();
    }
  }
}

std::vector<double> col2im(const std::vector<int64_t>& x_dims, const std::vector<double>& x, const std::vector<int64_t>& image,
                           const std::vector<int64_t>& block, const ir::Attributes& a) {
  ir::Network net;
  ir::ValueId y = net.add_op1(OpKind::kCol2Im,
                              {net.add_input("x", DType::kFloat64, shape(x_dims)),
                               net.add_weight("image", make_tensor(DType::kInt64, {int64_t(image.size())}, {image.begin(), image.end()})),
                               net.add_weight("block", make_tensor(DType::kInt64, {int64_t(block.size())}, {block.begin(), block.end()}))},
                              a);
  net.add_output(y);
  net.finalize();
  return values(run(net, {{"x", make_tensor(DType::kFloat64, x_dims, x)}})[0]);
}

TEST(ReferenceVision, Col2ImSumsTheBlocksOverEachPixel) {
  // 2x2 blocks over a 3x3 image, stride 1: each pixel adds the blocks that cover it (1, 2 or 4 of them).
  EXPECT_EQ(col2im({1, 4, 4}, std::vector<double>(16, 1.0), {3, 3}, {2, 2}, {}), (std::vector<double>{1, 2, 1, 2, 4, 2, 1, 2, 1}));
  // 1-D, block 2 with dilation 2, pads 1 and 1: 5 positions; position l puts its elements at l - 1 and l + 1.
  std::vector<double> x{1, 2, 3, 4, 5, 10, 20, 30, 40, 50};  // row k, column l
  auto y = col2im({1, 2, 5}, x, {5}, {2}, attrs({{"dilations", std::vector<int64_t>{2}}, {"pads", std::vector<int64_t>{1, 1}}}));
  EXPECT_EQ(y, (std::vector<double>{2, 3 + 10, 4 + 20, 5 + 30, 40}));
  // Two channels of 1x2 blocks, stride 2 over a 1x4 image: the blocks tile it.
  y = col2im({1, 4, 2}, {1, 2, 3, 4, 5, 6, 7, 8}, {1, 4}, {1, 2}, attrs({{"strides", std::vector<int64_t>{1, 2}}}));
  EXPECT_EQ(y, (std::vector<double>{1, 3, 2, 4, 5, 7, 6, 8}));
}

}  // namespace
}  // namespace kiln::reference
