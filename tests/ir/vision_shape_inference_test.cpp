// Shape inference of the vision family (GridSample, RoiAlign, AffineGrid):
// output shapes over symbolic dims, and the errors that name the node and
// what was expected.
#include <gtest/gtest.h>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"
#include "inference_test_util.h"

namespace kiln::ir {
namespace {

using inference_test::attrs;
using inference_test::outcome;

const Dim N = Dim::symbol("N"), H = Dim::symbol("H");

TensorData int64s(std::vector<int64_t> v) {
  TensorData t;
  t.dtype = DType::kInt64;
  t.dims = {int64_t(v.size())};
  t.data = Buffer::copy_of(v.data(), v.size() * sizeof(int64_t));
  return t;
}

std::string grid_sample(DType x_dtype, Shape x, DType g_dtype, Shape grid, Attributes a = {}) {
  Network net;
  ValueId y = net.add_op1(OpKind::kGridSample, {net.add_input("x", x_dtype, x), net.add_input("grid", g_dtype, grid)}, a, "gs");
  return outcome(net, y);
}

TEST(VisionShapes, GridSampleTakesTheGridsPointsForEachChannel) {
  EXPECT_EQ(grid_sample(DType::kFloat16, {N, Dim(3), H, Dim(8)}, DType::kFloat32, {N, Dim(5), Dim(7), Dim(2)}), "float16[N,3,5,7]");
  EXPECT_EQ(grid_sample(DType::kFloat32, {Dim(1), Dim(2), Dim(4), H, Dim(6)}, DType::kFloat32, {Dim(1), Dim(2), Dim(3), Dim(4), Dim(3)}),
            "float32[1,2,2,3,4]");
  EXPECT_EQ(grid_sample(DType::kFloat32, {Dim(2), Dim(2), Dim(9)}, DType::kBFloat16, {Dim(2), Dim(33), Dim(1)}), "float32[2,2,33]");
}

TEST(VisionShapes, GridSampleErrorsNameWhatWasExpected) {
  auto has = [](const std::string& message, const std::string& part) {
    return message.find(part) != std::string::npos ? testing::AssertionSuccess() : testing::AssertionFailure() << message;
  };
  Shape x{N, Dim(3), Dim(4), Dim(4)};
  EXPECT_TRUE(has(grid_sample(DType::kFloat32, x, DType::kFloat32, {N, Dim(2), Dim(2), Dim(3)}),
                  "node 'gs' (GridSample): the grid, input 1 ('grid'), has 3 coordinates a point; expected 2"));
  EXPECT_TRUE(has(grid_sample(DType::kFloat32, x, DType::kFloat32, {N, Dim(2), Dim(2)}), "expected rank 4"));
  EXPECT_TRUE(has(grid_sample(DType::kFloat32, {Dim(2), Dim(3), Dim(4), Dim(4)}, DType::kFloat32, {Dim(3), Dim(2), Dim(2), Dim(2)}),
                  "the batch dims of X and grid do not match: 2 vs 3"));
  EXPECT_TRUE(has(grid_sample(DType::kInt32, x, DType::kFloat32, {N, Dim(2), Dim(2), Dim(2)}), "input 0 has dtype int32; expected a float type"));
  EXPECT_TRUE(has(grid_sample(DType::kFloat32, x, DType::kInt64, {N, Dim(2), Dim(2), Dim(2)}), "input 1 has dtype int64; expected a float type"));
  EXPECT_TRUE(has(grid_sample(DType::kFloat32, {Dim(1), Dim(1), Dim(2), Dim(2), Dim(2), Dim(2)}, DType::kFloat32,
                              {Dim(1), Dim(2), Dim(2), Dim(2), Dim(2), Dim(4)}),
                  "input 0 has rank 6 (shape [1,1,2,2,2,2]); expected 3 to 5"));
  EXPECT_TRUE(has(grid_sample(DType::kFloat32, x, DType::kFloat32, {N, Dim(2), Dim(2), Dim(2)}, attrs({{"mode", std::string("bilinear")}})),
                  "mode 'bilinear' is not one of linear, nearest, cubic"));
  EXPECT_TRUE(has(grid_sample(DType::kFloat32, x, DType::kFloat32, {N, Dim(2), Dim(2), Dim(2)},
                              attrs({{"padding_mode", std::string("wrap")}})),
                  "padding_mode 'wrap' is not one of zeros, border, reflection"));
  EXPECT_TRUE(has(grid_sample(DType::kFloat32, x, DType::kFloat32, {N, Dim(2), Dim(2), Dim(2)}, attrs({{"align_corners", int64_t(2)}})),
                  "align_corners 2 is not 0 or 1"));
}

std::string roi_align(Shape x, Shape rois, Shape batch, Attributes a = {}, DType rois_dtype = DType::kFloat32,
                      DType batch_dtype = DType::kInt64) {
  Network net;
  ValueId y = net.add_op1(OpKind::kRoiAlign,
                          {net.add_input("x", DType::kFloat32, x), net.add_input("rois", rois_dtype, rois),
                           net.add_input("batch_indices", batch_dtype, batch)},
                          a, "roi");
  return outcome(net, y);
}

TEST(VisionShapes, RoiAlignPoolsEachRoiToTheOutputSize) {
  Dim r = Dim::symbol("R");
  EXPECT_EQ(roi_align({N, Dim(6), H, H}, {r, Dim(4)}, {r}, attrs({{"output_height", int64_t(7)}, {"output_width", int64_t(5)}})),
            "float32[R,6,7,5]");
  EXPECT_EQ(roi_align({N, Dim(6), H, H}, {Dim(3), Dim(4)}, {Dim(3)}), "float32[3,6,1,1]");
}

TEST(VisionShapes, RoiAlignErrorsNameWhatWasExpected) {
  auto expect_error = [](const std::string& message, const std::string& part) {
    EXPECT_NE(message.find("node 'roi' (RoiAlign): "), std::string::npos) << message;
    EXPECT_NE(message.find(part), std::string::npos) << message;
  };
  Shape x{N, Dim(2), Dim(8), Dim(8)};
  expect_error(roi_align(x, {Dim(3), Dim(5)}, {Dim(3)}), "rois, input 1 ('rois'), has shape [3,5]; expected [num_rois, 4]");
  expect_error(roi_align(x, {Dim(3), Dim(4)}, {Dim(2)}), "the RoI counts of rois and batch_indices do not match: 3 vs 2");
  expect_error(roi_align(x, {Dim(3), Dim(4)}, {Dim(3)}, {}, DType::kFloat16), "inputs 0 and 1 have dtypes float32 and float16");
  expect_error(roi_align(x, {Dim(3), Dim(4)}, {Dim(3)}, {}, DType::kFloat32, DType::kInt32), "input 2 has dtype int32");
  expect_error(roi_align({N, Dim(2), Dim(8)}, {Dim(3), Dim(4)}, {Dim(3)}), "input 0 has rank 3");
  expect_error(roi_align(x, {Dim(3), Dim(4)}, {Dim(3)}, attrs({{"mode", std::string("sum")}})), "mode 'sum' is not one of avg, max");
  expect_error(roi_align(x, {Dim(3), Dim(4)}, {Dim(3)}, attrs({{"coordinate_transformation_mode", std::string("asymmetric")}})),
               "coordinate_transformation_mode 'asymmetric' is not one of half_pixel, output_half_pixel");
  expect_error(roi_align(x, {Dim(3), Dim(4)}, {Dim(3)}, attrs({{"output_height", int64_t(0)}})), "output_height 0 and output_width 1 must be >= 1");
  expect_error(roi_align(x, {Dim(3), Dim(4)}, {Dim(3)}, attrs({{"sampling_ratio", int64_t(-1)}})), "sampling_ratio -1 must be >= 0");
  expect_error(roi_align(x, {Dim(3), Dim(4)}, {Dim(3)}, attrs({{"sampling_ratio", int64_t(5000)}})),
               "sampling_ratio 5000 is more than kiln's 4096 samples a bin side");
}

TEST(VisionShapes, AffineGridTakesItsSizeFromTheSizeInput) {
  auto run = [](Shape theta, std::optional<std::vector<int64_t>> size, int64_t size_len = 4) {
    Network net;
    ValueId s = size ? net.add_weight("size", int64s(*size)) : net.add_input("size", DType::kInt64, {Dim(size_len)});
    ValueId y = net.add_op1(OpKind::kAffineGrid, {net.add_input("theta", DType::kFloat16, theta), s}, {}, "ag");
    return outcome(net, y);
  };
  EXPECT_EQ(run({N, Dim(2), Dim(3)}, std::vector<int64_t>{3, 1, 7, 33}), "float16[N,7,33,2]");
  EXPECT_EQ(run({Dim(2), Dim(3), Dim(4)}, std::vector<int64_t>{2, 1, 1, 7, 5}), "float16[2,1,7,5,3]");
  std::string unknown = run({N, Dim(2), Dim(3)}, std::nullopt);
  EXPECT_EQ(unknown.substr(0, 10), "float16[N,") << unknown;
  EXPECT_NE(run({N, Dim(2), Dim(3)}, std::vector<int64_t>{2, 1, 1, 7, 5}).find("node 'ag' (AffineGrid): theta, input 0 ('theta'), has shape [N,2,3]; expected [N, 3, 4]"),
            std::string::npos);
  EXPECT_NE(run({Dim(2), Dim(2), Dim(3)}, std::vector<int64_t>{3, 1, 7, 5}).find("the batch dims of theta and size do not match: 2 vs 3"),
            std::string::npos);
  EXPECT_NE(run({N, Dim(2), Dim(3)}, std::vector<int64_t>{1, 1, 7}).find("size, input 1 ('size'), has 3 entries; expected 4 (N, C, H, W) or 5"),
            std::string::npos);
  EXPECT_NE(run({N, Dim(2), Dim(3)}, std::vector<int64_t>{1, 1, -7, 5}).find("size has a negative entry -7"), std::string::npos);
}

TEST(VisionShapes, Col2ImMakesTheImage) {
  auto run = [](Shape x, std::vector<int64_t> image, std::vector<int64_t> block, Attributes a = {}) {
    Network net;
    ValueId y = net.add_op1(OpKind::kCol2Im,
                            {net.add_input("x", DType::kFloat32, x), net.add_weight("image", int64s(image)), net.add_weight("block", int64s(block))},
                            a, "c2i");
    return outcome(net, y);
  };
  EXPECT_EQ(run({N, Dim(12), Dim(4)}, {3, 3}, {2, 2}), "float32[N,3,3,3]");
  // 7 x 33 with 2x3 blocks, stride 2, pads 1: (7 + 2 - 2) / 2 + 1 = 4 by (33 + 2 - 3) / 2 + 1 = 17 positions.
  Attributes a = attrs({{"strides", std::vector<int64_t>{2, 2}}, {"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  EXPECT_EQ(run({Dim(2), Dim(6), Dim(68)}, {7, 33}, {2, 3}, a), "float32[2,1,7,33]");
  EXPECT_NE(run({Dim(2), Dim(6), Dim(67)}, {7, 33}, {2, 3}, a).find("node 'c2i' (Col2Im): input 0 has 67 columns; the image and block shapes make 68"),
            std::string::npos);
  EXPECT_NE(run({N, Dim(10), Dim(4)}, {3, 3}, {2, 2}).find("input 0 has 10 rows, not a multiple of the block's 4 elements"), std::string::npos);
  EXPECT_NE(run({N, Dim(4), Dim(4)}, {3, 3}, {2}).find("the lengths of image_shape and block_shape do not match: 2 vs 1"), std::string::npos);
  EXPECT_NE(run({N, Dim(4), Dim(4)}, {3, 3}, {2, 2}, attrs({{"strides", std::vector<int64_t>{1}}}))
                .find("dilations, strides and pads need 2, 2 and 4 entries for 2 spatial dims"),
            std::string::npos);
  EXPECT_NE(run({N, Dim(4), Dim(4)}, {1, 3}, {2, 2}).find("image_shape 1 of dim 0 holds no block of 2"), std::string::npos);
  EXPECT_NE(run({N, Dim(16), Dim(1)}, {2, 2, 2, 2}, {1, 1, 1, 1}).find("block_shape has 4 entries; kiln takes 1 to 3"), std::string::npos);
  // A block_shape the model computes: the channels and the image are known at the run only.
  Network net;
  ValueId y = net.add_op1(OpKind::kCol2Im, {net.add_input("x", DType::kFloat32, {N, Dim(12), Dim(4)}), net.add_weight("image", int64s({3, 3})),
                                            net.add_input("block", DType::kInt64, {Dim(2)})});
  std::string shape = outcome(net, y);
  EXPECT_EQ(shape.substr(0, 10), "float32[N,") << shape;
  EXPECT_EQ(shape.substr(shape.size() - 5), ",3,3]") << shape;
}

}  // namespace
}  // namespace kiln::ir
