// Importing the vision ops in each ONNX version: GridSample-16's mode names
// against 20's, RoiAlign-10 read as output_half_pixel, AffineGrid-20, Col2Im-18,
// CenterCropPad-18 as Slice and Pad; and the
// forms refused, naming the node, the version and what was expected.
#include <gtest/gtest.h>

#include <map>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/onnx.h"
#include "kiln/reference.h"
#include "load_error.h"
#include "model_builder.h"

namespace kiln::onnx {
namespace {

using kiln::testing::ModelBuilder;
using kiln::testing::expect_load_error;
using ::onnx::TensorProto;

ModelBuilder grid_sample(int opset, const std::string& mode) {
  ModelBuilder m(opset);
  m.input("x", TensorProto::FLOAT, {"1", "1", "2", "3"});
  m.input("grid", TensorProto::FLOAT, {"1", "1", "1", "2"});
  auto& n = m.node("GridSample", {"x", "grid"}, {"y"});
  if (!mode.empty()) ModelBuilder::attr(n, "mode", mode);
  ModelBuilder::attr(n, "align_corners", int64_t(1));
  ModelBuilder::attr(n, "padding_mode", std::string("border"));
  m.output("y");
  return m;
}

// The value at the centre of [[1, 2, 3], [4, 5, 6]] (align_corners 1, border padding): 3.5 by
// interpolation (cubic too: a ramp between two rows), 2 by nearest.
double centre(const ModelBuilder& m) {
  std::map<std::string, reference::Tensor> in{{"x", reference::make_tensor(DType::kFloat32, {1, 1, 2, 3}, {1, 2, 3, 4, 5, 6})},
                                              {"grid", reference::make_tensor(DType::kFloat32, {1, 1, 1, 2}, {0, 0})}};
  return ir::read_doubles(reference::run(load_model_bytes(m.bytes()), in)[0]).at(0);
}

TEST(OnnxVision, GridSampleModeNamesFollowTheVersion) {
  for (int opset : {16, 19}) {
    EXPECT_DOUBLE_EQ(centre(grid_sample(opset, "")), 3.5) << opset;  // bilinear by default
    EXPECT_DOUBLE_EQ(centre(grid_sample(opset, "bilinear")), 3.5) << opset;
    EXPECT_DOUBLE_EQ(centre(grid_sample(opset, "bicubic")), 3.5) << opset;
    expect_load_error(grid_sample(opset, "linear"), ErrorCode::kInvalidModel,
                      {"node 'GridSample_0' (GridSample, opset ",
                       "mode 'linear' is not one of GridSample-16's bilinear, nearest, bicubic"});
  }
  for (int opset : {20, 22, 28}) {
    EXPECT_DOUBLE_EQ(centre(grid_sample(opset, "")), 3.5) << opset;
    EXPECT_DOUBLE_EQ(centre(grid_sample(opset, "linear")), 3.5) << opset;
    EXPECT_DOUBLE_EQ(centre(grid_sample(opset, "cubic")), 3.5) << opset;
    expect_load_error(grid_sample(opset, "bicubic"), ErrorCode::kInvalidModel,
                      {"mode 'bicubic' is not one of GridSample-", "linear, nearest, cubic"});
  }
  double nearest = centre(grid_sample(16, "nearest"));  // pixel (0.5, 1): y rounds half to even, 0
  EXPECT_DOUBLE_EQ(nearest, 2);
  expect_load_error(grid_sample(15, ""), ErrorCode::kInvalidModel, {"ONNX opset 15 has no GridSample (it is defined from opset 16 on)"});
}

ModelBuilder roi_align(int opset, const std::string& coordinates) {
  ModelBuilder m(opset);
  m.input("x", TensorProto::FLOAT, {"1", "1", "4", "4"});
  m.initializer("rois", {1, 4}, {1, 1, 1, 1});
  m.int_initializer("b", {1}, {0});
  auto& n = m.node("RoiAlign", {"x", "rois", "b"}, {"y"});
  if (!coordinates.empty()) ModelBuilder::attr(n, "coordinate_transformation_mode", coordinates);
  m.output("y");
  return m;
}

double roi_value(const ModelBuilder& m) {
  std::vector<double> pixels;
  for (int i = 0; i < 16; ++i) pixels.push_back(i);  // 4 y + x
  auto out = reference::run(load_model_bytes(m.bytes()), {{"x", reference::make_tensor(DType::kFloat32, {1, 1, 4, 4}, pixels)}});
  return ir::read_doubles(out[0]).at(0);
}

TEST(OnnxVision, RoiAlign10ComputesAsOutputHalfPixel) {
  // The empty RoI at (1, 1): output_half_pixel makes it 1x1 and samples (1.5, 1.5); half_pixel samples nothing.
  EXPECT_DOUBLE_EQ(roi_value(roi_align(10, "")), 7.5);
  EXPECT_DOUBLE_EQ(roi_value(roi_align(16, "output_half_pixel")), 7.5);
  EXPECT_DOUBLE_EQ(roi_value(roi_align(16, "")), 0);
  EXPECT_DOUBLE_EQ(roi_value(roi_align(22, "half_pixel")), 0);
  expect_load_error(roi_align(10, "half_pixel"), ErrorCode::kInvalidModel,
                    {"node 'RoiAlign_0' (RoiAlign, opset 10)", "'coordinate_transformation_mode' belongs to RoiAlign from opset 16 on"});
}

TEST(OnnxVision, AffineGrid20) {
  ModelBuilder m(20);
  m.input("theta", TensorProto::FLOAT, {"N", "2", "3"});
  m.int_initializer("size", {4}, {1, 1, 7, 33});
  ModelBuilder::attr(m.node("AffineGrid", {"theta", "size"}, {"grid"}), "align_corners", int64_t(1));
  m.output("grid");
  ir::Network net = load_model_bytes(m.bytes());
  EXPECT_EQ(ir::shape_to_string(net.value(net.outputs()[0]).shape), "[N,7,33,2]");
  ModelBuilder old(19);
  old.input("theta", TensorProto::FLOAT, {"N", "2", "3"});
  old.int_initializer("size", {4}, {1, 1, 7, 33});
  old.node("AffineGrid", {"theta", "size"}, {"grid"});
  old.output("grid");
  expect_load_error(old, ErrorCode::kInvalidModel, {"ONNX opset 19 has no AffineGrid"});
}

TEST(OnnxVision, Col2Im18) {
  auto model = [](int opset) {
    ModelBuilder m(opset);
    m.input("x", TensorProto::FLOAT, {"1", "4", "4"});
    m.int_initializer("image", {2}, {3, 3});
    m.int_initializer("block", {2}, {2, 2});
    m.node("Col2Im", {"x", "image", "block"}, {"y"});
    m.output("y");
    return m;
  };
  std::vector<double> ones(16, 1.0);
  auto out = reference::run(load_model_bytes(model(18).bytes()), {{"x", reference::make_tensor(DType::kFloat32, {1, 4, 4}, ones)}});
  EXPECT_EQ(ir::read_doubles(out[0]), (std::vector<double>{1, 2, 1, 2, 4, 2, 1, 2, 1}));  // the blocks covering each pixel
  expect_load_error(model(17), ErrorCode::kInvalidModel, {"ONNX opset 17 has no Col2Im (it is defined from opset 18 on)"});
}

ModelBuilder center_crop_pad(std::vector<int64_t> shape, std::vector<int64_t> axes) {
  ModelBuilder m(18);
  m.input("x", TensorProto::FLOAT, {"N", "5", "4"});
  m.int_initializer("shape", {int64_t(shape.size())}, shape);
  ModelBuilder::attr(m.node("CenterCropPad", {"x", "shape"}, {"y"}), "axes", axes);
  m.output("y");
  return m;
}

// Rows cut about the centre (5 -> 3 keeps rows 1 to 3), columns padded about it
// (4 -> 7: one zero before, two after), as Slice and Pad.
TEST(OnnxVision, CenterCropPad18CropsAndPads) {
  ir::Network net = load_model_bytes(center_crop_pad({3, 7}, {1, 2}).bytes());
  EXPECT_EQ(ir::shape_to_string(net.value(net.outputs()[0]).shape), "[N,3,7]");
  std::vector<double> x;
  for (int i = 0; i < 20; ++i) x.push_back(i);
  auto out = ir::read_doubles(reference::run(net, {{"x", reference::make_tensor(DType::kFloat32, {1, 5, 4}, x)}})[0]);
  std::vector<double> want;
  for (int row = 1; row <= 3; ++row) want.insert(want.end(), {0, 4.0 * row, 4.0 * row + 1, 4.0 * row + 2, 4.0 * row + 3, 0, 0});
  EXPECT_EQ(out, want);
  // Negative axes count from the end; an axis twice and a shape of the wrong length are refused.
  ir::Network last = load_model_bytes(center_crop_pad({2}, {-1}).bytes());
  EXPECT_EQ(ir::shape_to_string(last.value(last.outputs()[0]).shape), "[N,5,2]");
  expect_load_error(center_crop_pad({3, 3}, {1, -2}), ErrorCode::kInvalidModel,
                    {"node 'CenterCropPad_0' (CenterCropPad, opset 18)", "axis 1 appears twice in axes"});
  expect_load_error(center_crop_pad({3, 3}, {1}), ErrorCode::kShapeError, {"input 1 (shape) has 2 entries for 1 axes"});
}

}  // namespace
}  // namespace kiln::onnx
