// DeformConv's reference kernel: with zero offsets and no mask it is Conv
// (pads, strides, dilations, groups); fractional offsets sample bilinearly,
// corners outside X reading 0; the mask scales each tap; offset groups give
// their channels offsets of their own. Values worked out by hand.
#include <gtest/gtest.h>

#include <random>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::reference {
namespace {

using ir::OpKind;

ir::Shape shape(const std::vector<int64_t>& dims) { return ir::Shape(dims.begin(), dims.end()); }

std::vector<double> run_one(OpKind op, const std::vector<Tensor>& inputs, const ir::Attributes& a) {
  ir::Network net;
  std::map<std::string, Tensor> feeds;
  std::vector<ir::ValueId> in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string name = str("in", i);
    in.push_back(net.add_input(name, inputs[i].dtype, shape(inputs[i].dims)));
    feeds[name] = inputs[i];
  }
  net.add_output(net.add_op1(op, in, a, "node"));
  net.finalize();
  return ir::read_doubles(run(net, feeds)[0]);
}

Tensor random_tensor(const std::vector<int64_t>& dims, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (double& x : v) x = u(rng);
  return make_tensor(DType::kFloat64, dims, v);
}

TEST(ReferenceDeformConv, ZeroOffsetsWithoutAMaskAreConv) {
  const uint32_t seed = 77;
  std::mt19937 rng(seed);
  ir::Attributes a;
  a.set("pads", std::vector<int64_t>{1, 0, 2, 1});
  a.set("strides", std::vector<int64_t>{2, 1});
  a.set("dilations", std::vector<int64_t>{1, 2});
  a.set("group", int64_t(2));
  Tensor x = random_tensor({2, 4, 7, 6}, rng), w = random_tensor({6, 2, 3, 2}, rng), b = random_tensor({6}, rng);
  std::vector<double> conv = run_one(OpKind::kConv, {x, w, b}, a);
  a.set("offset_group", int64_t(2));
  // Output 4 x 5 (H: (7 + 3 - 3) / 2 + 1, W: 6 + 1 - 3 + 1); 2 offset groups of 6 taps.
  Tensor offset = make_tensor(DType::kFloat64, {2, 24, 4, 5}, std::vector<double>(2 * 24 * 4 * 5, 0.0));
  std::vector<double> deform = run_one(OpKind::kDeformConv, {x, w, offset, b}, a);
  ASSERT_EQ(deform.size(), conv.size()) << "seed " << seed;
  for (size_t i = 0; i < conv.size(); ++i) EXPECT_NEAR(deform[i], conv[i], 1e-12) << "element " << i << " seed " << seed;
}

TEST(ReferenceDeformConv, FractionalOffsetsSampleBilinearlyAndTheMaskScales) {
  // X [[1, 2], [3, 4]], a 1 x 1 kernel of weight 1: each output samples X at its own position moved by (dy, dx).
  Tensor x = make_tensor(DType::kFloat32, {1, 1, 2, 2}, {1, 2, 3, 4}), w = make_tensor(DType::kFloat32, {1, 1, 1, 1}, {1});
  // dy then dx, each over the 2 x 2 outputs: (0.5, 0.5) the centre; (0, 0.5) half of 2 and half outside;
  // (-1, 0) X[0, 0]; (0.25, 0) three quarters of 4 and a quarter outside.
  Tensor offset = make_tensor(DType::kFloat32, {1, 2, 2, 2}, {0.5, 0, -1, 0.25, 0.5, 0.5, 0, 0});
  EXPECT_EQ(run_one(OpKind::kDeformConv, {x, w, offset}, {}), (std::vector<double>{2.5, 1, 1, 3}));
  Tensor bias = make_tensor(DType::kFloat32, {1}, {10}), mask = make_tensor(DType::kFloat32, {1, 1, 2, 2}, {1, 2, 1, 0.5});
  EXPECT_EQ(run_one(OpKind::kDeformConv, {x, w, offset, bias, mask}, {}), (std::vector<double>{12.5, 12, 11, 11.5}));
}

TEST(ReferenceDeformConv, EachOffsetGroupMovesItsOwnChannels) {
  Tensor x = make_tensor(DType::kFloat32, {1, 2, 2, 2}, {1, 2, 3, 4, 10, 20, 30, 40});
  Tensor w = make_tensor(DType::kFloat32, {1, 2, 1, 1}, {1, 1});
  // Group 0 (channel 0) stays; group 1 (channel 1) reads one column to the right, past the edge on the right.
  Tensor offset = make_tensor(DType::kFloat32, {1, 4, 2, 2}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1});
  ir::Attributes a;
  a.set("offset_group", int64_t(2));
  EXPECT_EQ(run_one(OpKind::kDeformConv, {x, w, offset}, a), (std::vector<double>{21, 2, 43, 4}));
}

TEST(ReferenceDeformConv, OffsetsOfTheWrongShapeAreAnErrorNamingTheInput) {
  Tensor x = make_tensor(DType::kFloat32, {1, 1, 3, 3}, std::vector<double>(9, 1.0));
  Tensor w = make_tensor(DType::kFloat32, {1, 1, 2, 2}, std::vector<double>(4, 1.0));
  ir::Network net;
  ir::ValueId offset = net.add_input("offset", DType::kFloat32, {ir::Dim(1), ir::Dim(8), ir::Dim::symbol("h"), ir::Dim(2)});
  net.add_output(net.add_op1(OpKind::kDeformConv, {net.add_input("x", DType::kFloat32, shape({1, 1, 3, 3})),
                                                   net.add_input("w", DType::kFloat32, shape({1, 1, 2, 2})), offset},
                             {}, "dc"));
  net.finalize();
  try {
    run(net, {{"x", x}, {"w", w}, {"offset", make_tensor(DType::kFloat32, {1, 8, 3, 2}, std::vector<double>(48, 0.0))}});
    FAIL() << "ran with offsets of 3 rows for an output of 2";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("node 'dc' (DeformConv): input 2 ('offset') has shape [1,8,3,2]; expected [1,8,2,2]"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace kiln::reference
