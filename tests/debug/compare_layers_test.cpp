// The CPU side of kiln debug --compare-layers: the reference's intermediates
// by name, plan tensors mapped to the model's through fusions, layouts and
// precision, and the first failing node found where a value was altered.
#include <gtest/gtest.h>

#include <random>

#include "kiln/builder.h"
#include "kiln/debug.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::debug {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;

reference::Tensor random_tensor(std::vector<int64_t> dims, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (auto& x : v) x = u(rng);
  return reference::make_tensor(DType::kFloat32, dims, v);
}

// h = Relu(x @ w1 + b1); y = Tanh(h @ w2) * 0.5 + h @ w3: matmul epilogues and an elementwise group.
ir::Network mlp() {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(8)});
  ValueId mm = net.add_op1(OpKind::kMatMul, {x, net.add_weight("w1", random_tensor({8, 8}, 1))}, {}, "mm1");
  ValueId biased = net.add_op1(OpKind::kAdd, {mm, net.add_weight("b1", random_tensor({8}, 2))}, {}, "bias1");
  ValueId h = net.add_op1(OpKind::kRelu, {biased}, {}, "relu1");
  ValueId t = net.add_op1(OpKind::kTanh, {net.add_op1(OpKind::kMatMul, {h, net.add_weight("w2", random_tensor({8, 4}, 3))}, {}, "mm2")},
                          {}, "tanh2");
  ValueId half = net.add_op1(OpKind::kMul, {t, net.add_weight("half", reference::make_tensor(DType::kFloat32, {}, {0.5}))}, {}, "scale");
  ValueId side = net.add_op1(OpKind::kMatMul, {h, net.add_weight("w3", random_tensor({8, 4}, 4))}, {}, "mm3");
  ValueId y = net.add_op1(OpKind::kAdd, {half, side}, {}, "sum");
  net.add_output(y);
  net.finalize();
  return net;
}

// Two padded 3x3 Convs with ReLUs: channels-last in half precision.
ir::Network convs() {
  ir::Network net;
  ValueId x = net.add_input("image", DType::kFloat32, {Dim(1), Dim(3), Dim(6), Dim(6)});
  ir::Attributes pads;
  pads.set("pads", std::vector<int64_t>{1, 1, 1, 1});
  ValueId c1 = net.add_op1(OpKind::kConv, {x, net.add_weight("k1", random_tensor({4, 3, 3, 3}, 5)), net.add_weight("kb1", random_tensor({4}, 6))},
                           pads, "conv1");
  ValueId r1 = net.add_op1(OpKind::kRelu, {c1}, {}, "relu1");
  ValueId c2 = net.add_op1(OpKind::kConv, {r1, net.add_weight("k2", random_tensor({4, 4, 3, 3}, 7))}, pads, "conv2");
  net.add_output(net.add_op1(OpKind::kRelu, {c2}, {}, "relu2"));
  net.finalize();
  return net;
}

plan::Plan build(const ir::Network& net, plan::Precision precision) {
  builder::BuildOptions options;
  options.precision = precision;
  options.progress = [](const std::string&) {};
  return builder::build(net, options);
}

const TensorComparison* find(const LayerReport& r, const std::string& tensor) {
  for (const auto& t : r.tensors)
    if (t.tensor == tensor) return &t;
  return nullptr;
}

TEST(ReferenceEveryTensor, KeepsEveryIntermediateByNameOrOnlyThoseAsked) {
  ir::Network net = mlp();
  std::map<std::string, reference::Tensor> inputs{{"x", random_tensor({2, 8}, 9)}};
  auto all = reference::run_every_tensor(net, inputs);
  EXPECT_EQ(all.size(), net.nodes().size());  // one output per node
  const std::string& h = net.value(net.nodes()[2].outputs[0]).name;
  ASSERT_TRUE(all.count(h));
  for (double v : ir::read_doubles(all.at(h))) EXPECT_GE(v, 0) << "a ReLU output";
  auto out = reference::run(net, inputs);
  EXPECT_EQ(ir::read_doubles(all.at(net.value(net.outputs()[0]).name)), ir::read_doubles(out[0]));
  auto some = reference::run_every_tensor(net, inputs, [&](const std::string& name) { return name == h; });
  ASSERT_EQ(some.size(), 1u);
  EXPECT_EQ(ir::read_doubles(some.at(h)), ir::read_doubles(all.at(h)));
}

TEST(Counterpart, NamesPrecisionAndLayoutSuffixes) {
  ir::Network net = convs();
  const std::string conv1 = net.value(net.nodes()[0].outputs[0]).name;
  EXPECT_EQ(counterpart(net, conv1).tensor, conv1);
  EXPECT_TRUE(counterpart(net, conv1).perm.empty());
  Counterpart half = counterpart(net, "image_float16__k0");
  EXPECT_EQ(half.tensor, "image");
  EXPECT_TRUE(half.perm.empty());
  Counterpart last = counterpart(net, conv1 + "_channels_last__k2");
  EXPECT_EQ(last.tensor, conv1);
  EXPECT_EQ(last.perm, (std::vector<int64_t>{0, 2, 3, 1}));
  // Channels-last, then cast for the network's output.
  Counterpart both = counterpart(net, conv1 + "_pre_transpose__k4_float16__k5");
  EXPECT_EQ(both.tensor, conv1);
  EXPECT_EQ(both.perm, (std::vector<int64_t>{0, 2, 3, 1}));
  for (const std::string& made : {conv1 + "_channels_last__k2_without_bias__k1", std::string("image_float16"), conv1 + "_float16__kx"}) {
    Counterpart none = counterpart(net, made);
    EXPECT_TRUE(none.tensor.empty()) << made;
    EXPECT_NE(none.why_not.find("made by the builder"), std::string::npos) << made;
  }
}

// The fused nodes' outputs carry their last source op's output name, so each is compared with the model's.
TEST(CompareLayers, FusedNodesMapToTheirLastSourceOpAndAnFp32PlanPasses) {
  ir::Network net = mlp();
  plan::Plan p = build(net, plan::Precision::kFloat32);
  std::map<std::string, reference::Tensor> inputs{{"x", random_tensor({2, 8}, 11)}};
  auto got = reference::run_every_tensor(p.network, inputs);
  LayerReport r = compare_layers(p, got, &net, inputs, default_tolerance(p.precision));
  EXPECT_EQ(r.reference, "model");
  EXPECT_EQ(r.failed, 0u);
  EXPECT_FALSE(r.first_failure);
  std::vector<std::string> sources;
  for (const auto& t : r.tensors) sources.push_back(t.sources);
  const std::string relu1 = net.value(net.nodes()[2].outputs[0]).name, sum = net.value(net.outputs()[0]).name;
  const TensorComparison* h = find(r, relu1);
  ASSERT_TRUE(h) << ::testing::PrintToString(sources);
  EXPECT_EQ(h->op, "FusedMatMul");
  EXPECT_EQ(h->sources, "MatMul+bias+relu");
  EXPECT_TRUE(h->compared) << h->why_not;
  EXPECT_EQ(h->reference_tensor, relu1);
  const TensorComparison* y = find(r, sum);
  ASSERT_TRUE(y) << ::testing::PrintToString(sources);
  EXPECT_TRUE(y->compared) << y->why_not;
  EXPECT_LT(y->max_abs_error, 1e-5);
  EXPECT_EQ(r.compared + r.not_comparable, r.tensors.size());
}

// Half precision: the casts' outputs, the channels-last tensors and the fused
// groups all find the model's tensor, and the plan passes at fp16's tolerance.
TEST(CompareLayers, HalfPrecisionChannelsLastTensorsAreComparedInTheModelsLayout) {
  ir::Network net = convs();
  plan::Plan p = build(net, plan::Precision::kFloat16);
  std::map<std::string, reference::Tensor> inputs{{"image", random_tensor({1, 3, 6, 6}, 12)}};
  auto got = reference::run_every_tensor(p.network, inputs);
  LayerReport r = compare_layers(p, got, &net, inputs, default_tolerance(p.precision));
  EXPECT_EQ(r.failed, 0u);
  int permuted = 0, convs_compared = 0;
  for (const auto& t : r.tensors) {
    // conv1's bias moved into the elementwise group after it, so its own output has no model tensor.
    if (t.op == "ConvChannelsLast") convs_compared += t.compared;
    if (t.op == "ConvChannelsLast" && !t.compared) {
      EXPECT_NE(t.why_not.find("made by the builder"), std::string::npos) << t.why_not;
    }
    permuted += t.compared && t.reference_tensor != t.tensor && t.dims.size() == 4 && t.dims[3] == 4;
  }
  EXPECT_EQ(convs_compared, 1) << "conv2 (no bias)\n" << ir::dump_network(p.network);
  EXPECT_GE(permuted, 2) << "channels-last outputs of conv2 and of conv1's bias+ReLU group";
  const TensorComparison* cast = find(r, p.network.value(p.network.nodes()[0].outputs[0]).name);
  ASSERT_TRUE(cast);
  EXPECT_EQ(cast->reference_tensor, "image");
  EXPECT_TRUE(cast->compared) << cast->why_not;
  // The same plan against its own network: every tensor is its own counterpart and equal.
  LayerReport self = compare_layers(p, got, nullptr, inputs, {0, 0});
  EXPECT_EQ(self.reference, "plan");
  EXPECT_EQ(self.not_comparable, 0u);
  EXPECT_EQ(self.failed, 0u);
}

// One tensor altered: exactly its node is the first failure, with its inputs' ranges.
TEST(CompareLayers, AnAlteredTensorNamesItsNodeAsTheFirstFailure) {
  ir::Network net = mlp();
  plan::Plan p = build(net, plan::Precision::kFloat32);
  std::map<std::string, reference::Tensor> inputs{{"x", random_tensor({2, 8}, 13)}};
  auto got = reference::run_every_tensor(p.network, inputs);
  const std::string relu1 = net.value(net.nodes()[2].outputs[0]).name;
  ASSERT_TRUE(got.count(relu1));
  std::vector<double> v = ir::read_doubles(got.at(relu1));
  v[3] += 0.25;
  got[relu1] = reference::make_tensor(DType::kFloat32, got.at(relu1).dims, v);
  LayerReport r = compare_layers(p, got, &net, inputs, default_tolerance(p.precision));
  ASSERT_TRUE(r.first_failure);
  const TensorComparison& first = r.tensors[*r.first_failure];
  EXPECT_EQ(first.tensor, relu1);
  EXPECT_EQ(first.op, "FusedMatMul");
  EXPECT_EQ(first.beyond, 1u);
  EXPECT_EQ(first.first_beyond, 3u);
  EXPECT_NEAR(first.max_abs_error, 0.25, 1e-6);
  EXPECT_EQ(r.failed, 1u) << "later nodes ran on the unaltered value";
  std::map<std::string, std::string> sources;
  for (const auto& in : r.first_failure_inputs) sources[in.tensor] = in.source;
  EXPECT_EQ(sources["x"], "input");
  EXPECT_EQ(sources["w1"], "weight");
  const auto& x = r.first_failure_inputs.front();
  EXPECT_GE(x.min, -1);
  EXPECT_LE(x.max, 1);
  EXPECT_LT(x.min, x.max);
}

// A plan tensor whose model counterpart has other dims is listed, with both shapes, not compared.
TEST(CompareLayers, ACounterpartOfOtherDimsIsNotComparableAndSaysWhy) {
  ir::Network model;
  ValueId x = model.add_input("x", DType::kFloat32, {Dim(2), Dim(3)});
  model.add_output(model.add_op1(OpKind::kRelu, {x}, {}, "relu"));
  model.finalize();
  ir::Network other;
  ValueId ox = other.add_input("x", DType::kFloat32, {Dim(2), Dim(3)});
  ir::Attributes perm;
  perm.set("perm", std::vector<int64_t>{1, 0});
  ValueId t = other.add_op1(OpKind::kTranspose, {ox}, perm, "swap");
  ir::Node relu{"relu", OpKind::kRelu, {t}, {other.add_value(model.value(model.outputs()[0]).name)}, {}};
  other.add_node(relu);
  other.add_output(relu.outputs[0]);
  other.finalize();
  plan::Plan p;
  p.network = other;
  std::map<std::string, reference::Tensor> inputs{{"x", random_tensor({2, 3}, 14)}};
  LayerReport r = compare_layers(p, reference::run_every_tensor(other, inputs), &model, inputs, {1e-4, 1e-5});
  ASSERT_EQ(r.tensors.size(), 2u);
  EXPECT_FALSE(r.tensors[0].compared);
  EXPECT_NE(r.tensors[0].why_not.find("made by the builder"), std::string::npos);
  EXPECT_FALSE(r.tensors[1].compared);
  EXPECT_NE(r.tensors[1].why_not.find("[2,3] in the reference but [3,2] in the plan"), std::string::npos) << r.tensors[1].why_not;
  EXPECT_EQ(r.not_comparable, 2u);
  EXPECT_EQ(r.failed, 0u);
}

TEST(CompareLayers, DefaultTolerancesByPrecision) {
  EXPECT_EQ(default_tolerance(plan::Precision::kFloat32).rtol, 1e-4);
  EXPECT_EQ(default_tolerance(plan::Precision::kFloat32).atol, 1e-5);
  EXPECT_EQ(default_tolerance(plan::Precision::kFloat16).rtol, 1e-2);
  EXPECT_EQ(default_tolerance(plan::Precision::kBFloat16).atol, 1e-2);
}

}  // namespace
}  // namespace kiln::debug
