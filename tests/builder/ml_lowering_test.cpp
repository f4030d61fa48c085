// `kiln build` lowers Binarizer and ArrayFeatureExtractor into ops the GPU
// runs; the plan must compute what the model does, at the thresholds' edges too.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::builder {
namespace {

using ir::Dim;
using ir::OpKind;

// Runs `net` and the plan `kiln build` makes of it on x; returns both outputs and the plan's op kinds.
struct Both {
  reference::Tensor model, plan;
  std::vector<OpKind> ops;
};

Both run_both(ir::Network net, const reference::Tensor& x) {
  net.finalize();
  plan::Plan p = build(net, {}, "ml");
  Both b{reference::run(net, {{"x", x}})[0], reference::run(p.network, {{"x", x}})[0], {}};
  for (const ir::Node& n : p.network.nodes()) b.ops.push_back(n.op);
  return b;
}

ir::Network binarizer(DType dtype, std::vector<int64_t> dims, double threshold) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", dtype, ir::Shape(dims.begin(), dims.end()));
  ir::Attributes a;
  a.set("threshold", threshold);
  net.add_output(net.add_op1(OpKind::kBinarizer, {x}, a, "binarize"));
  return net;
}

bool has(const std::vector<OpKind>& ops, OpKind op) { return std::find(ops.begin(), ops.end(), op) != ops.end(); }

TEST(MlLowering, BinarizerBecomesGreaterAndCastAtEveryEdge) {
  // float32 x equal to float(0.1), which is above the double 0.1: 1, as the reference says.
  std::vector<double> near = {double(float(0.1)), double(std::nextafter(float(0.1), 0.f)), -1, 0.1 + 1e-9, NAN, INFINITY};
  Both f = run_both(binarizer(DType::kFloat32, {6}, 0.1), reference::make_tensor(DType::kFloat32, {6}, near));
  EXPECT_FALSE(has(f.ops, OpKind::kBinarizer));
  EXPECT_EQ(ir::read_doubles(f.model), (std::vector<double>{1, 0, 0, 1, 0, 1}));
  EXPECT_EQ(ir::read_doubles(f.plan), ir::read_doubles(f.model));
  for (double t : {2.5, -2.5, 3.0, 1e30}) {
    Both i = run_both(binarizer(DType::kInt32, {5}, t), reference::make_tensor(DType::kInt32, {5}, {-3, -2, 2, 3, 2147483647}));
    EXPECT_EQ(ir::read_ints(i.plan), ir::read_ints(i.model)) << t;
    EXPECT_FALSE(has(i.ops, OpKind::kBinarizer)) << t;
  }
  Both below = run_both(binarizer(DType::kInt32, {2}, -1e30), reference::make_tensor(DType::kInt32, {2}, {-2147483648.0, 0}));
  EXPECT_TRUE(has(below.ops, OpKind::kBinarizer));  // no int32 threshold says "every x": left to the CPU device
  EXPECT_EQ(ir::read_ints(below.plan), (std::vector<int64_t>{1, 1}));
}

ir::Network extractor(std::vector<int64_t> dims, std::vector<int64_t> indices, std::vector<int64_t> index_dims) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", DType::kFloat32, ir::Shape(dims.begin(), dims.end()));
  ir::ValueId y = net.add_weight("y", reference::make_tensor(DType::kInt64, index_dims, std::vector<double>(indices.begin(), indices.end())));
  net.add_output(net.add_op1(OpKind::kArrayFeatureExtractor, {x, y}, {}, "extract"));
  return net;
}

TEST(MlLowering, ArrayFeatureExtractorOfConstantIndicesBecomesGather) {
  reference::Tensor x = reference::make_tensor(DType::kFloat32, {2, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  Both b = run_both(extractor({2, 2, 3}, {2, 0, 2, 1}, {1, 4}), x);
  EXPECT_TRUE(has(b.ops, OpKind::kGather));
  EXPECT_FALSE(has(b.ops, OpKind::kArrayFeatureExtractor));
  EXPECT_EQ(b.plan.dims, (std::vector<int64_t>{2, 2, 4}));
  EXPECT_EQ(ir::read_doubles(b.plan), ir::read_doubles(b.model));
  reference::Tensor v = reference::make_tensor(DType::kFloat32, {3}, {1, 2, 3});
  Both vec = run_both(extractor({3}, {1}, {1}), v);
  EXPECT_EQ(vec.plan.dims, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(ir::read_doubles(vec.plan), std::vector<double>{2});
  // An index outside the last dim stays an ArrayFeatureExtractor, which reports it.
  ir::Network outside = extractor({2, 2, 3}, {3}, {1});
  outside.finalize();
  plan::Plan p = build(outside, {}, "ml");
  EXPECT_TRUE(std::any_of(p.network.nodes().begin(), p.network.nodes().end(),
                          [](const ir::Node& n) { return n.op == OpKind::kArrayFeatureExtractor; }));
  EXPECT_THROW(reference::run(p.network, {{"x", x}}), Error);
}

}  // namespace
}  // namespace kiln::builder
