// Native CUDA graphs (cuda_graph_strategy whole_graph_capture): every result
// checked against the reference or, bitwise, against direct execution with the
// same kernels; the context's graph counters show which path each call took.
#include <chrono>
#include <cstring>
#include <thread>

#include "gpu_test_util.h"
#include "kiln/error.h"

namespace kiln::testing {
namespace {

using runtime::CudaGraphStrategy;

// Device input and output of one call at batch `batch`, with the expected output.
struct Slot {
  int64_t batch;
  ir::TensorData input;
  std::vector<double> expected;
  std::string output_name;
  void* x = nullptr;
  void* y = nullptr;

  Slot(const ir::Network& net, int64_t b, std::mt19937& rng) : batch(b), output_name(net.value(net.outputs()[0]).name) {
    input = random_tensor(DType::kFloat32, {batch, 32}, rng);
    expected = ir::read_doubles(reference::run(net, {{"x", input}})[0]);
    EXPECT_EQ(cudaMalloc(&x, input.data.size()), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&y, input.data.size()), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(x, input.data.data(), input.data.size(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~Slot() {
    cudaFree(x);
    cudaFree(y);
  }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

  void bind(runtime::ExecutionContext& context) const {
    context.set_input_shape("x", {batch, 32});
    context.set_tensor_address("x", x);
    context.set_tensor_address(output_name, y);
  }
  std::vector<float> output(cudaStream_t stream) const {
    std::vector<float> out(size_t(batch * 32));
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data(), y, out.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
  void poison() const { EXPECT_EQ(cudaMemset(y, 0xff, size_t(batch * 32 * 4)), cudaSuccess); }
  // Runs one call on `context` and checks the result against the reference.
  void run_and_check(runtime::ExecutionContext& context, cudaStream_t stream) const {
    poison();
    bind(context);
    context.enqueue(stream);
    auto got = output(stream);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], expected[i], 1e-5) << "batch " << batch << " element " << i;
  }
};

struct GraphFixture : ::testing::Test {
  std::mt19937 rng{21};
  ir::Network net;
  cudaStream_t stream = nullptr;

  void SetUp() override {
    KILN_REQUIRE_GPU();
    net = small_test_model(rng);
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  }
  void TearDown() override {
    if (stream) cudaStreamDestroy(stream);
  }
  std::shared_ptr<runtime::Engine> engine(runtime::RuntimeConfig config = {}) {
    config.cuda_graph_strategy = CudaGraphStrategy::kWholeGraphCapture;
    config.warm_up_contexts = false;
    if (config.dynamic_shapes_kernel_specialization_strategy == runtime::KernelSpecialization::kLazy)
      config.dynamic_shapes_kernel_specialization_strategy = runtime::KernelSpecialization::kEager;
    return runtime::Engine::create(builder::build(net, {}), config);
  }
};

TEST_F(GraphFixture, WarmUpCaptureReplay) {
  auto e = engine();
  auto context = e->create_context();
  Slot slot(net, 3, rng);
  for (int i = 0; i < 5; ++i) slot.run_and_check(*context, stream);
  auto g = context->graph_stats();
  EXPECT_EQ(g.calls, 5);
  EXPECT_EQ(g.direct, 1);  // the warm-up call
  EXPECT_EQ(g.captures, 1);
  EXPECT_EQ(g.instantiations, 1);
  EXPECT_EQ(g.replays, 3);
  EXPECT_EQ(g.graphs, 1);
  EXPECT_TRUE(g.fallbacks.empty());
}

TEST_F(GraphFixture, AlternatingAddressesReplayTheirOwnGraphs) {
  auto e = engine();
  auto context = e->create_context();
  Slot a(net, 4, rng), b(net, 4, rng);  // same shape, different memory and data
  for (int i = 0; i < 6; ++i) (i % 2 ? b : a).run_and_check(*context, stream);
  auto g = context->graph_stats();
  EXPECT_EQ(g.direct, 1);           // a's warm-up
  EXPECT_EQ(g.instantiations, 2);   // b's graph, then a's
  EXPECT_EQ(g.graphs, 2);
  EXPECT_EQ(g.replays, 3);          // calls 4..6
  EXPECT_EQ(g.pointer_repairs, 0);
}

TEST_F(GraphFixture, NewAddressesBeyondTheKeptGraphsRepairTheOldestNeverStale) {
  auto e = engine();
  auto context = e->create_context();
  std::vector<std::unique_ptr<Slot>> slots;  // same shape, six places in memory
  for (int i = 0; i < 6; ++i) slots.push_back(std::make_unique<Slot>(net, 4, rng));
  for (int i = 0; i < 6; ++i) slots[size_t(i)]->run_and_check(*context, stream);
  slots[0]->run_and_check(*context, stream);
  auto g = context->graph_stats();
  EXPECT_EQ(g.direct, 1);  // slot 0's warm-up
  EXPECT_EQ(g.instantiations, int64_t(runtime::RuntimeConfig{}.graphs_per_shape));  // slots 1..4
  EXPECT_EQ(g.pointer_repairs, 2);  // slot 5, then slot 0: the least recently used graphs repaired in place
  EXPECT_EQ(g.updates, 2);
  EXPECT_EQ(g.graphs, int64_t(runtime::RuntimeConfig{}.graphs_per_shape));
  slots[0]->run_and_check(*context, stream);
  EXPECT_EQ(context->graph_stats().replays, 1);  // same addresses as the last call
}

TEST_F(GraphFixture, RepairsForNewAddressesRewriteNodeArgumentsOnceLearned) {
  runtime::RuntimeConfig config;
  config.graphs_per_shape = 1;  // every new address set repairs the one graph
  auto e = engine(config);
  auto context = e->create_context();
  std::vector<std::unique_ptr<Slot>> slots;
  for (int i = 0; i < 6; ++i) slots.push_back(std::make_unique<Slot>(net, 4, rng));
  for (int round = 0; round < 3; ++round)
    for (auto& slot : slots) slot->run_and_check(*context, stream);
  auto g = context->graph_stats();
  EXPECT_EQ(g.direct, 1);          // slot 0's warm-up
  EXPECT_EQ(g.instantiations, 1);  // slot 1
  EXPECT_EQ(g.pointer_repairs, 16);
  EXPECT_EQ(g.updates, 1);          // the first repair captures again and learns where the addresses sit
  EXPECT_EQ(g.pointer_patches, 15);  // the others rewrite those arguments only

  // An input moved by 16 bytes: kernels chosen for the old alignment may not
  // fit it, so the graph is captured again (and the result is still right).
  const Slot& model = *slots[0];
  void* base = nullptr;
  ASSERT_EQ(cudaMalloc(&base, model.input.data.size() + 256), cudaSuccess);
  void* shifted = static_cast<std::byte*>(base) + 16;
  ASSERT_EQ(cudaMemcpy(shifted, model.input.data.data(), model.input.data.size(), cudaMemcpyHostToDevice), cudaSuccess);
  model.poison();
  model.bind(*context);
  context->set_tensor_address("x", shifted);
  context->enqueue(stream);
  auto got = model.output(stream);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], model.expected[i], 1e-5) << "element " << i;
  cudaFree(base);
  auto after = context->graph_stats();
  EXPECT_EQ(after.pointer_patches, g.pointer_patches);
  EXPECT_EQ(after.updates + after.instantiations, g.updates + g.instantiations + 1);
}

TEST_F(GraphFixture, AlternatingShapesNeverRecapture) {
  auto e = engine();
  auto context = e->create_context();
  Slot a(net, 2, rng), b(net, 7, rng);
  for (int i = 0; i < 10; ++i) (i % 2 ? b : a).run_and_check(*context, stream);
  auto g = context->graph_stats();
  EXPECT_EQ(g.captures, 2);  // A and B once each, on their second calls
  EXPECT_EQ(g.replays, 6);
  EXPECT_EQ(g.graphs, 2);
}

TEST_F(GraphFixture, EvictedShapesAreCapturedAgain) {
  runtime::RuntimeConfig config;
  config.shapes_per_context = 2;
  auto e = engine(config);
  auto context = e->create_context();
  Slot a(net, 1, rng), b(net, 5, rng), c(net, 8, rng);
  for (const Slot* s : {&a, &a, &b, &b, &c, &c, &a, &a, &a}) s->run_and_check(*context, stream);
  auto g = context->graph_stats();
  EXPECT_EQ(g.graphs, 2);    // the bound
  EXPECT_EQ(g.captures, 4);  // a, b, c, and a again after its eviction
  EXPECT_EQ(g.direct, 4);    // each shape's warm-up, a's twice
  EXPECT_EQ(g.replays, 1);
}

TEST_F(GraphFixture, LazySpecializedKernelsAreSwappedIntoTheLiveGraph) {
  runtime::RuntimeConfig config;
  config.cuda_graph_strategy = CudaGraphStrategy::kWholeGraphCapture;
  config.warm_up_contexts = false;
  config.dynamic_shapes_kernel_specialization_strategy = runtime::KernelSpecialization::kLazy;
  auto e = runtime::Engine::create(builder::build(net, {}), config);
  auto context = e->create_context();
  Slot slot(net, 6, rng);
  slot.run_and_check(*context, stream);
  slot.run_and_check(*context, stream);  // captured, possibly with generic kernels
  for (int i = 0; i < 300 && context->specialization_stats().front().pending > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    slot.run_and_check(*context, stream);
  }
  slot.run_and_check(*context, stream);
  auto stats = context->specialization_stats().front();
  EXPECT_EQ(stats.pending, 0);
  EXPECT_GT(stats.specialized, 0);
  auto g = context->graph_stats();
  EXPECT_EQ(g.instantiations, 1);
  // Captured before the background compiles finished: the graph took them in place.
  if (g.kernel_swaps == 0) GTEST_SKIP() << "every specialized kernel was ready before the capture";
  EXPECT_EQ(g.updates, g.kernel_swaps);
  EXPECT_GT(g.replays, 0);
}

TEST_F(GraphFixture, CallerCaptureGetsTheLaunchesInGlobalMode) {
  auto e = engine();
  auto context = e->create_context();
  Slot slot(net, 3, rng);
  slot.run_and_check(*context, stream);
  slot.run_and_check(*context, stream);  // the context has its own graph now
  slot.poison();
  slot.bind(*context);
  ASSERT_TRUE(context->is_stream_capturable(stream));
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  context->enqueue(stream);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  auto got = slot.output(stream);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], slot.expected[i], 1e-5) << i;
  EXPECT_EQ(context->graph_stats().into_caller_capture, 1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// The legacy default stream cannot be captured: its graphs are captured on
// and launched from the context's own stream, ordered after the caller's
// earlier work (the poisoning memset) and before its later work (the copy out).
TEST_F(GraphFixture, LegacyStreamRunsGraphsOnTheContextsStream) {
  runtime::RuntimeConfig strict;
  strict.strict_cuda_graphs = true;  // a fallback would throw
  for (const runtime::RuntimeConfig& config : {runtime::RuntimeConfig{}, strict}) {
    auto e = engine(config);
    auto context = e->create_context();
    Slot a(net, 2, rng), b(net, 2, rng);
    EXPECT_FALSE(context->is_stream_capturable(nullptr));  // an outer capture still cannot record it
    for (int i = 0; i < 8; ++i) (i % 2 ? b : a).run_and_check(*context, i % 4 == 3 ? cudaStreamLegacy : nullptr);
    auto g = context->graph_stats();
    EXPECT_TRUE(g.fallbacks.empty());
    EXPECT_LE(g.direct, 1);  // the warm-up call
    EXPECT_EQ(g.direct + g.on_context_stream, 8);
    EXPECT_GE(g.captures, 1);
    EXPECT_GE(g.replays, 4);
  }
}

// 2000 calls mixing shapes, addresses and strategy switches on one context,
// each bitwise equal to a direct run of the same kernels on another context.
TEST_F(GraphFixture, RandomizedCallsMatchDirectExecutionBitwise) {
  auto e = engine();
  auto graphed = e->create_context();
  auto direct = e->create_context();
  direct->set_cuda_graph_strategy(CudaGraphStrategy::kDisabled);
  std::vector<std::unique_ptr<Slot>> slots;
  for (int64_t batch : {1, 2, 3, 5, 8})
    for (int copy = 0; copy < 6; ++copy) slots.push_back(std::make_unique<Slot>(net, batch, rng));  // more than the graphs kept per shape
  std::vector<void*> reference_y(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {  // direct results, computed once per slot
    slots[i]->bind(*direct);
    direct->enqueue(stream);
    auto out = slots[i]->output(stream);
    ASSERT_EQ(cudaMalloc(&reference_y[i], out.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(reference_y[i], out.data(), out.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::uniform_int_distribution<size_t> pick(0, slots.size() - 1);
  int mismatches = 0;
  for (int call = 0; call < 2000; ++call) {
    if (rng() % 50 == 0)
      graphed->set_cuda_graph_strategy(graphed->cuda_graph_strategy() == CudaGraphStrategy::kDisabled
                                           ? CudaGraphStrategy::kWholeGraphCapture
                                           : CudaGraphStrategy::kDisabled);
    size_t i = pick(rng);
    const Slot& slot = *slots[i];
    slot.poison();
    slot.bind(*graphed);
    graphed->enqueue(stream);
    auto got = slot.output(stream);
    std::vector<float> want(got.size());
    ASSERT_EQ(cudaMemcpy(want.data(), reference_y[i], want.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    if (std::memcmp(got.data(), want.data(), got.size() * 4) != 0) ++mismatches;
  }
  for (void* p : reference_y) cudaFree(p);
  EXPECT_EQ(mismatches, 0);
  auto g = graphed->graph_stats();
  EXPECT_GT(g.replays, 0);
  EXPECT_GT(g.pointer_repairs, 0);
  EXPECT_TRUE(g.fallbacks.empty());
}

TEST_F(GraphFixture, ContextsOnThreadsShareOneEngine) {
  auto e = engine();
  std::vector<std::string> failures(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      try {
        std::mt19937 local(200 + t);
        auto context = e->create_context();
        cudaStream_t s;
        cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
        std::vector<std::unique_ptr<Slot>> slots;
        for (int64_t batch : {1 + t, 8 - t}) slots.push_back(std::make_unique<Slot>(net, batch, local));
        for (int i = 0; i < 60; ++i) {
          const Slot& slot = *slots[size_t(i / 3) % 2];
          slot.poison();
          slot.bind(*context);
          context->enqueue(s);
          auto got = slot.output(s);
          for (size_t k = 0; k < got.size(); ++k)
            if (std::fabs(got[k] - slot.expected[k]) > 1e-5) throw std::runtime_error(str("thread ", t, " call ", i, " element ", k));
        }
        if (context->graph_stats().replays == 0) throw std::runtime_error(str("thread ", t, " never replayed"));
        cudaStreamDestroy(s);
      } catch (const std::exception& ex) {
        failures[size_t(t)] = ex.what();
      }
    });
  for (auto& th : threads) th.join();
  for (auto& f : failures) EXPECT_EQ(f, "");
}

}  // namespace
}  // namespace kiln::testing
