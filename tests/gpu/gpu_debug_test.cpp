// kiln debug --compare-layers on the GPU: run_node_by_node hands over every
// node's outputs in order, a correct plan passes at its precision's default
// tolerance, and a tensor altered on the device is named as the first failure.
#include <vector>

#include "gpu_test_util.h"
#include "kiln/debug.h"

namespace kiln::testing {
namespace {

// Two padded 3x3 Convs (the first with a bias) with ReLUs, then a global pool:
// channels-last in half precision.
ir::Network conv_test_model(std::mt19937& rng) {
  using ir::Dim;
  using ir::OpKind;
  ir::Network net;
  ir::ValueId x = net.add_input("image", DType::kFloat32, {Dim(2), Dim(3), Dim(8), Dim(8)});
  ir::Attributes pads = attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  ir::ValueId c1 = net.add_op1(OpKind::kConv, {x, net.add_weight("k1", random_tensor(DType::kFloat32, {8, 3, 3, 3}, rng, 0.05, 0.3)),
                                               net.add_weight("kb1", random_tensor(DType::kFloat32, {8}, rng))}, pads);
  ir::ValueId r1 = net.add_op1(OpKind::kRelu, {c1});
  ir::ValueId c2 = net.add_op1(OpKind::kConv, {r1, net.add_weight("k2", random_tensor(DType::kFloat32, {8, 8, 3, 3}, rng, 0.05, 0.2))}, pads);
  net.add_output(net.add_op1(OpKind::kGlobalAveragePool, {net.add_op1(OpKind::kRelu, {c2})}));
  net.finalize();
  return net;
}

plan::Plan plan_for(const ir::Network& net, const std::map<std::string, ir::TensorData>& inputs, plan::Precision precision) {
  builder::BuildOptions options;
  options.precision = precision;
  options.progress = [](const std::string&) {};
  for (ir::ValueId id : net.inputs()) {
    const auto& dims = inputs.at(net.value(id).name).dims;
    builder::add_input_profile(net, net.value(id).name, dims, dims, dims, options);
  }
  return builder::build(net, options);
}

struct Stream {
  cudaStream_t s = nullptr;
  Stream() {
    if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) fail(ErrorCode::kDevice, "creating a stream");
  }
  ~Stream() { cudaStreamDestroy(s); }
};

// The GPU's value of every tensor, compared with the model's on the reference.
debug::LayerReport compare_on_gpu(const ir::Network& net, const std::map<std::string, ir::TensorData>& inputs,
                                  plan::Precision precision,
                                  const std::function<void(const runtime::ExecutionContext::NodeOutputs&)>& alter = {}) {
  plan::Plan p = plan_for(net, inputs, precision);
  auto engine = runtime::Engine::create(p);
  auto context = engine->create_context();
  Stream stream;
  runtime::DeviceIo io(*context, *engine, inputs);
  auto got = runtime::read_every_tensor(*context, stream.s, alter);
  return debug::compare_layers(p, got, &net, inputs, debug::default_tolerance(precision));
}

TEST(GpuDebug, NodeByNodeGivesEveryNodeInOrderAndTheOutputsOfARun) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(31);
  ir::Network net = small_test_model(rng);
  std::map<std::string, ir::TensorData> inputs{{"x", random_tensor(DType::kFloat32, {4, 32}, rng)}};
  auto engine = runtime::Engine::create(plan_for(net, inputs, plan::Precision::kFloat32));
  auto context = engine->create_context();
  Stream stream;
  runtime::DeviceIo io(*context, *engine, inputs);
  std::vector<size_t> order;
  context->run_node_by_node(stream.s, [&](const runtime::ExecutionContext::NodeOutputs& node) {
    order.push_back(node.node);
    EXPECT_EQ(node.outputs.size(), engine->plan().network.nodes()[node.node].outputs.size());
    for (const auto& o : node.outputs) EXPECT_NE(o.address, nullptr) << o.name;
  });
  ASSERT_EQ(order.size(), engine->plan().network.nodes().size());
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], i);
  // The bound outputs hold the run's result, as after an enqueue.
  expect_outputs_close(io.download(stream.s), reference::run(net, inputs), 1e-5);
}

TEST(GpuDebug, RefusedInsideACapture) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(32);
  ir::Network net = small_test_model(rng);
  std::map<std::string, ir::TensorData> inputs{{"x", random_tensor(DType::kFloat32, {2, 32}, rng)}};
  auto engine = runtime::Engine::create(plan_for(net, inputs, plan::Precision::kFloat32));
  auto context = engine->create_context();
  Stream stream;
  runtime::DeviceIo io(*context, *engine, inputs);
  ASSERT_EQ(cudaStreamBeginCapture(stream.s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  int calls = 0;
  try {
    context->run_node_by_node(stream.s, [&](const auto&) { ++calls; });
    ADD_FAILURE() << "run_node_by_node ran inside a capture";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("captured"), std::string::npos) << e.what();
  }
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(stream.s, &graph), cudaSuccess) << "the capture stays valid";
  if (graph) cudaGraphDestroy(graph);
  EXPECT_EQ(calls, 0);
}

TEST(GpuDebug, CompareLayersPassesAtTheDefaultTolerances) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(33);
  ir::Network mlp = small_test_model(rng);
  std::map<std::string, ir::TensorData> x{{"x", random_tensor(DType::kFloat32, {4, 32}, rng)}};
  for (plan::Precision precision : {plan::Precision::kFloat32, plan::Precision::kFloat16}) {
    debug::LayerReport r = compare_on_gpu(mlp, x, precision);
    SCOPED_TRACE(std::string(plan::precision_name(precision)));
    EXPECT_EQ(r.failed, 0u) << (r.first_failure ? r.tensors[*r.first_failure].tensor : "");
    EXPECT_GE(r.compared, 3u) << "two fused matmuls and the softmax";
  }
  ir::Network convs = conv_test_model(rng);
  std::map<std::string, ir::TensorData> image{{"image", random_tensor(DType::kFloat32, {2, 3, 8, 8}, rng)}};
  for (plan::Precision precision : {plan::Precision::kFloat32, plan::Precision::kFloat16}) {
    debug::LayerReport r = compare_on_gpu(convs, image, precision);
    SCOPED_TRACE(std::string(plan::precision_name(precision)));
    EXPECT_EQ(r.failed, 0u) << (r.first_failure ? r.tensors[*r.first_failure].tensor : "");
    EXPECT_GE(r.compared, 3u);
  }
}

// An element of one node's output changed on the device before it is read:
// that node is the first failure, whatever its error does downstream.
TEST(GpuDebug, AnAlteredTensorIsNamedAsTheFirstFailure) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(34);
  ir::Network net = small_test_model(rng);
  std::map<std::string, ir::TensorData> inputs{{"x", random_tensor(DType::kFloat32, {4, 32}, rng)}};
  plan::Plan p = plan_for(net, inputs, plan::Precision::kFloat32);
  size_t target = p.network.nodes().size();  // the first FusedMatMul
  for (size_t n = 0; n < p.network.nodes().size() && target == p.network.nodes().size(); ++n)
    if (p.network.nodes()[n].op == ir::OpKind::kFusedMatMul) target = n;
  ASSERT_LT(target, p.network.nodes().size()) << ir::dump_network(p.network);
  std::string altered;
  debug::LayerReport r = compare_on_gpu(net, inputs, plan::Precision::kFloat32, [&](const runtime::ExecutionContext::NodeOutputs& node) {
    if (node.node != target) return;
    const auto& out = node.outputs.at(0);
    altered = out.name;
    ir::TensorData t = runtime::read_node_output(out);
    std::vector<double> v = ir::read_doubles(t);
    v[5] += 1.0;
    ir::TensorData changed = reference::make_tensor(t.dtype, t.dims, v);
    ASSERT_EQ(cudaMemcpy(out.address, changed.data.data(), changed.data.size(), cudaMemcpyHostToDevice), cudaSuccess);
  });
  ASSERT_FALSE(altered.empty());
  ASSERT_TRUE(r.first_failure);
  const debug::TensorComparison& first = r.tensors[*r.first_failure];
  EXPECT_EQ(first.node, target);
  EXPECT_EQ(first.tensor, altered);
  EXPECT_EQ(first.first_beyond, 5u);
  EXPECT_NEAR(first.max_abs_error, 1.0, 1e-3);
  EXPECT_FALSE(r.first_failure_inputs.empty());
  EXPECT_GE(r.failed, 2u) << "later nodes read the altered value from the device";
}

}  // namespace
}  // namespace kiln::testing
