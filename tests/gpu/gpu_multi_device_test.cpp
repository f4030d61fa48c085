// Engines on every GPU of the machine, driven from threads whose current
// device is another one: each engine's work runs on its own device and the
// caller's device choice is left as it was. Skips with fewer than two GPUs.
#include <thread>

#include "gpu_test_util.h"

namespace kiln {
namespace {

using namespace kiln::testing;

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

int current_device() {
  int d = -1;
  EXPECT_EQ(cudaGetDevice(&d), cudaSuccess);
  return d;
}

// A stream on `device`, made without changing the calling thread's device.
cudaStream_t stream_on(int device) {
  int previous = current_device();
  cudaStream_t s = nullptr;
  EXPECT_EQ(cudaSetDevice(device), cudaSuccess);
  EXPECT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  EXPECT_EQ(cudaSetDevice(previous), cudaSuccess);
  return s;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, const std::string& where) {
  ASSERT_EQ(got.size(), want.size()) << where;
  for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], want[k], 1e-5) << where << " element " << k;
}

TEST(GpuMultiDevice, EnginesOnEveryDeviceFromOneThread) {
  KILN_REQUIRE_GPU();
  int n = device_count();
  if (n < 2) GTEST_SKIP() << "needs two GPUs; this machine has " << n;
  std::mt19937 rng(31);
  ir::Network net = small_test_model(rng);
  plan::Plan plan = builder::build(net, {});
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  std::vector<std::shared_ptr<runtime::Engine>> engines;
  std::vector<std::unique_ptr<runtime::ExecutionContext>> contexts;
  std::vector<cudaStream_t> streams;
  for (int d = 0; d < n; ++d) {
    runtime::RuntimeConfig config;
    config.device = d;
    config.cuda_graph_strategy = runtime::CudaGraphStrategy::kWholeGraphCapture;
    engines.push_back(runtime::Engine::create(plan, config));
    contexts.push_back(engines.back()->create_context());
    streams.push_back(stream_on(d));
    EXPECT_EQ(engines.back()->device(), d);
    EXPECT_EQ(current_device(), 0) << "creating an engine on GPU " << d << " changed the caller's device";
  }
  for (int i = 0; i < 6; ++i)
    for (int d = 0; d < n; ++d) {
      int64_t batch = 1 + (i + d) % 4;
      auto input = random_tensor(DType::kFloat32, {batch, 32}, rng);
      // Binding checks that each buffer is on the engine's GPU.
      runtime::DeviceIo io(*contexts[size_t(d)], *engines[size_t(d)], {{"x", input}});
      contexts[size_t(d)]->enqueue(streams[size_t(d)]);
      EXPECT_EQ(current_device(), 0) << "enqueue on GPU " << d << " changed the caller's device";
      expect_close(ir::read_doubles(io.download(streams[size_t(d)])[0]), ir::read_doubles(reference::run(net, {{"x", input}})[0]),
                   str("GPU ", d, " call ", i));
    }
  for (int d = 0; d < n; ++d) {
    auto g = contexts[size_t(d)]->graph_stats();
    EXPECT_GE(g.captures + g.replays, 1) << "GPU " << d << ": no native graph ran";
    EXPECT_TRUE(g.fallbacks.empty()) << "GPU " << d;
  }
  contexts.clear();
  for (cudaStream_t s : streams) cudaStreamDestroy(s);
}

TEST(GpuMultiDevice, AThreadPerDevice) {
  KILN_REQUIRE_GPU();
  int n = device_count();
  if (n < 2) GTEST_SKIP() << "needs two GPUs; this machine has " << n;
  std::mt19937 rng(32);
  ir::Network net = small_test_model(rng);
  plan::Plan plan = builder::build(net, {});
  std::vector<std::string> failures(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int d = 0; d < n; ++d)
    threads.emplace_back([&, d] {
      try {
        cudaSetDevice((d + 1) % n);  // the thread's own device is another GPU
        runtime::RuntimeConfig config;
        config.device = d;
        config.cuda_graph_strategy = runtime::CudaGraphStrategy::kWholeGraphCapture;
        auto engine = runtime::Engine::create(plan, config);
        auto context = engine->create_context();
        cudaStream_t stream = stream_on(d);
        std::mt19937 local(200 + d);
        for (int i = 0; i < 50; ++i) {
          auto input = random_tensor(DType::kFloat32, {1 + i % 8, 32}, local);
          auto got = ir::read_doubles(runtime::run_with_host_tensors(*context, *engine, {{"x", input}}, stream)[0]);
          auto want = ir::read_doubles(reference::run(net, {{"x", input}})[0]);
          for (size_t k = 0; k < got.size(); ++k)
            if (std::fabs(got[k] - want[k]) > 1e-5) throw std::runtime_error(str("GPU ", d, " call ", i, " element ", k));
        }
        int now = -1;
        cudaGetDevice(&now);
        if (now != (d + 1) % n) throw std::runtime_error(str("GPU ", d, ": the thread's device changed to ", now));
        context.reset();
        cudaStreamDestroy(stream);
      } catch (const std::exception& e) {
        failures[size_t(d)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& f : failures) EXPECT_EQ(f, "");
}

}  // namespace
}  // namespace kiln
