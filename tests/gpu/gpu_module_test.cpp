// The module layer on the GPU: each row of the behavior matrix on a module
// of engine -> host code -> engine, results checked against the reference.
#include <cstring>

#include "gpu_test_util.h"
#include "kiln/error.h"
#include "kiln/module.h"

namespace kiln::testing {
namespace {

using module::CudagraphsMode;
using module::DeviceTensor;
using runtime::CudaGraphStrategy;
using runtime::KernelSpecialization;

// Host code: row i of the output is row (i + 1) % batch of the input.
module::HostSegment rotate_rows(const std::string& in, const std::string& out) {
  module::HostSegment h;
  h.name = "rotate";
  h.inputs = {in};
  h.outputs = {out};
  h.output_shapes = [](const std::vector<DeviceTensor>& x) {
    return std::vector<std::pair<DType, std::vector<int64_t>>>{{x[0].dtype, x[0].dims}};
  };
  h.enqueue = [](cudaStream_t stream, const std::vector<DeviceTensor>& x, const std::vector<DeviceTensor>& y) {
    size_t row = size_t(x[0].dims[1]) * dtype_size(x[0].dtype), rows = size_t(x[0].dims[0]);
    auto* src = static_cast<const std::byte*>(x[0].data);
    auto* dst = static_cast<std::byte*>(y[0].data);
    cudaMemcpyAsync(dst, src + row, (rows - 1) * row, cudaMemcpyDeviceToDevice, stream);
    cudaMemcpyAsync(dst + (rows - 1) * row, src, row, cudaMemcpyDeviceToDevice, stream);
  };
  return h;
}

std::vector<double> rotate_rows_host(const std::vector<double>& x, int64_t batch) {
  std::vector<double> y(x.size());
  size_t row = x.size() / size_t(batch);
  for (size_t i = 0; i < size_t(batch); ++i)
    std::copy_n(x.begin() + long((i + 1) % size_t(batch) * row), row, y.begin() + long(i * row));
  return y;
}

struct ModuleFixture : ::testing::Test {
  std::mt19937 rng{31};
  ir::Network first, second;
  cudaStream_t stream = nullptr;
  std::vector<void*> allocations;

  void SetUp() override {
    KILN_REQUIRE_GPU();
    first = small_test_model(rng);
    second = small_test_model(rng);
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  }
  void TearDown() override {
    for (void* p : allocations) cudaFree(p);
    if (stream) cudaStreamDestroy(stream);
  }
  std::shared_ptr<runtime::Engine> engine(const ir::Network& net, CudaGraphStrategy graphs,
                                          KernelSpecialization spec = KernelSpecialization::kEager) {
    runtime::RuntimeConfig config;
    config.cuda_graph_strategy = graphs;
    config.dynamic_shapes_kernel_specialization_strategy = spec;
    return runtime::Engine::create(builder::build(net, {}), config);
  }
  // x -> first -> rotate -> second -> y
  std::unique_ptr<module::Module> mixed(CudagraphsMode mode, CudaGraphStrategy graphs,
                                        KernelSpecialization spec = KernelSpecialization::kEager) {
    auto m = std::make_unique<module::Module>(std::vector<std::string>{"x"}, std::vector<std::string>{"y"}, mode);
    m->on_warning([this](const std::string& w) { warnings.push_back(w); });
    m->add_engine("first", engine(first, graphs, spec), {{out(first), "h"}});
    m->add_host(rotate_rows("h", "r"));
    m->add_engine("second", engine(second, graphs), {{"x", "r"}, {out(second), "y"}});
    return m;
  }
  static std::string out(const ir::Network& net) { return net.value(net.outputs()[0]).name; }
  std::vector<double> expected(const ir::TensorData& x) {
    auto h = ir::read_doubles(reference::run(first, {{"x", x}})[0]);
    auto r = rotate_rows_host(h, x.dims[0]);
    return ir::read_doubles(reference::run(second, {{"x", reference::make_tensor(DType::kFloat32, x.dims, r)}})[0]);
  }
  // A fresh input in fresh device memory (so addresses change from call to call).
  DeviceTensor upload(const ir::TensorData& x) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, x.data.size()), cudaSuccess);
    allocations.push_back(p);
    EXPECT_EQ(cudaMemcpy(p, x.data.data(), x.data.size(), cudaMemcpyHostToDevice), cudaSuccess);
    return DeviceTensor{p, DType::kFloat32, x.dims};
  }
  void check(const DeviceTensor& y, const std::vector<double>& want) {
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    std::vector<float> got(want.size());
    ASSERT_EQ(cudaMemcpy(got.data(), y.data, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5) << i;
  }
  void run_and_check(module::Module& m, int64_t batch) {
    auto x = random_tensor(DType::kFloat32, {batch, 32}, rng);
    auto y = m.run({{"x", upload(x)}}, stream);
    ASSERT_EQ(y.size(), 1u);
    EXPECT_EQ(y[0].dims, (std::vector<int64_t>{batch, 32}));
    check(y[0], expected(x));
  }
  std::vector<std::string> warnings;
};

TEST_F(ModuleFixture, EnginesOnlySubgraphSwitchesADisabledEngineOnWithOneWarning) {
  module::Module m({"x"}, {"y"}, CudagraphsMode::kSubgraph);
  m.on_warning([this](const std::string& w) { warnings.push_back(w); });
  m.add_engine("only", engine(first, CudaGraphStrategy::kDisabled), {{out(first), "y"}});
  for (int i = 0; i < 4; ++i) {
    auto x = random_tensor(DType::kFloat32, {3, 32}, rng);
    auto y = m.run({{"x", upload(x)}}, stream);
    check(y[0], ir::read_doubles(reference::run(first, {{"x", x}})[0]));
  }
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("engine 'only'"), std::string::npos) << warnings[0];
  EXPECT_GT(m.context("only").graph_stats().captures, 0);
}

TEST_F(ModuleFixture, MixedSubgraphEnginesUseNativeGraphs) {
  auto m = mixed(CudagraphsMode::kSubgraph, CudaGraphStrategy::kWholeGraphCapture);
  for (int i = 0; i < 4; ++i) run_and_check(*m, 5);
  EXPECT_TRUE(warnings.empty());
  for (const char* e : {"first", "second"}) {
    auto g = m->context(e).graph_stats();
    EXPECT_GT(g.captures, 0) << e;
    EXPECT_GT(g.captures + g.replays, 1) << e;
  }
  EXPECT_EQ(m->stats().outer_captures, 0);
}

TEST_F(ModuleFixture, MixedWholeGraphCapturesOnceperShapeWithStaging) {
  auto m = mixed(CudagraphsMode::kWholeGraph, CudaGraphStrategy::kWholeGraphCapture);
  for (int64_t batch : {4, 4, 4, 7, 7, 4, 7, 4}) run_and_check(*m, batch);  // new input memory every call
  auto st = m->stats();
  EXPECT_EQ(st.outer_captures, 2);  // one graph per input-shape key
  EXPECT_EQ(st.outer_replays, 4);
  EXPECT_EQ(st.direct_runs, 2);     // each key's warm-up
  for (const char* e : {"first", "second"}) {
    auto g = m->context(e).graph_stats();
    EXPECT_EQ(g.captures, 0) << e;  // engines' own graphs are off inside the module graph
    EXPECT_EQ(g.into_caller_capture, 2) << e;
  }
}

TEST_F(ModuleFixture, WholeGraphRefusesALazyDynamicEngineBeforeCapturing) {
  auto m = mixed(CudagraphsMode::kWholeGraph, CudaGraphStrategy::kDisabled, KernelSpecialization::kLazy);
  auto x = random_tensor(DType::kFloat32, {2, 32}, rng);
  try {
    m->run({{"x", upload(x)}}, stream);
    FAIL() << "a lazy engine with dynamic inputs was captured";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("engine 'first'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(m->stats().outer_captures, 0);
  cudaStreamCaptureStatus status;
  ASSERT_EQ(cudaStreamIsCapturing(stream, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusNone);
  m->set_cudagraphs_mode(CudagraphsMode::kStandard);  // the same module runs fine outside whole_graph
  run_and_check(*m, 2);
}

TEST_F(ModuleFixture, StandardWithNativeGraphsIsTransparent) {
  auto m = mixed(CudagraphsMode::kStandard, CudaGraphStrategy::kWholeGraphCapture);
  for (int64_t batch : {3, 3, 3, 6, 3}) run_and_check(*m, batch);  // new input memory each call: repaired graphs
  auto x = random_tensor(DType::kFloat32, {3, 32}, rng);
  DeviceTensor same = upload(x);
  for (int i = 0; i < 3; ++i) check(m->run({{"x", same}}, stream)[0], expected(x));  // same memory: replays
  auto g = m->context("first").graph_stats();
  EXPECT_GT(g.captures, 0);
  EXPECT_GT(g.instantiations + g.pointer_repairs, 1);  // new memory: graphs of their own, or repaired ones
  EXPECT_GE(g.replays, 2);
  EXPECT_EQ(m->stats().outer_captures, 0);
}

TEST_F(ModuleFixture, ManualCaptureOfADisabledEngine) {
  auto m = mixed(CudagraphsMode::kStandard, CudaGraphStrategy::kDisabled);
  auto x = random_tensor(DType::kFloat32, {4, 32}, rng);
  DeviceTensor input = upload(x);
  run_and_check(*m, 4);  // memory for this shape exists before the capture
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  auto y = m->run({{"x", input}}, stream);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaMemset(y[0].data, 0xff, 4 * 32 * 4), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  check(y[0], expected(x));
  EXPECT_EQ(m->stats().into_caller_capture, 1);
  EXPECT_EQ(m->context("first").graph_stats().into_caller_capture, 1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  // A new shape while the caller captures would need memory: refused, capture ended by the caller.
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  auto x2 = random_tensor(DType::kFloat32, {6, 32}, rng);
  void* p = allocations.back();
  EXPECT_THROW(m->run({{"x", DeviceTensor{p, DType::kFloat32, x2.dims}}}, stream), Error);
  cudaStreamEndCapture(stream, &graph);
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
}

TEST_F(ModuleFixture, SwitchingModesBetweenRunsKeepsResultsRight) {
  auto m = mixed(CudagraphsMode::kStandard, CudaGraphStrategy::kWholeGraphCapture);
  const CudagraphsMode modes[] = {CudagraphsMode::kStandard, CudagraphsMode::kSubgraph, CudagraphsMode::kWholeGraph};
  for (int i = 0; i < 24; ++i) {
    m->set_cudagraphs_mode(modes[(i / 2) % 3]);
    run_and_check(*m, 1 + i % 3);
  }
  EXPECT_GT(m->stats().outer_replays + m->stats().outer_captures, 0);
}

}  // namespace
}  // namespace kiln::testing
