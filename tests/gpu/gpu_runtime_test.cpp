// Engine and ExecutionContext behaviour: capture-safety of enqueue, shape
// changes, error messages, several contexts on several threads.
#include <algorithm>
#include <chrono>
#include <thread>

#include "gpu_test_util.h"
#include "kiln/error.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;

std::vector<float> to_floats(const ir::TensorData& t) {
  auto d = ir::read_doubles(t);
  return std::vector<float>(d.begin(), d.end());
}

void expect_close(const std::vector<float>& a, const std::vector<double>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << i;
}

TEST(GpuRuntime, EnqueueIsCapturableInGlobalMode) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(5);
  ir::Network net = small_test_model(rng);
  auto engine = runtime::Engine::create(builder::build(net, {}));
  auto context = engine->create_context();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  void *x = nullptr, *y = nullptr;
  ASSERT_EQ(cudaMalloc(&x, 8 * 32 * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&y, 8 * 32 * 4), cudaSuccess);
  for (int64_t batch : {3, 5}) {  // each a new shape: refused inside the capture until prepared
    SCOPED_TRACE(str("batch ", batch));
    auto input = random_tensor(DType::kFloat32, {batch, 32}, rng);
    ASSERT_EQ(cudaMemcpy(x, input.data.data(), input.data.size(), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemset(y, 0xff, 8 * 32 * 4), cudaSuccess);
    context->set_input_shape("x", {batch, 32});
    context->set_tensor_address("x", x);
    context->set_tensor_address(net.value(net.outputs()[0]).name, y);
    cudaGraph_t graph;
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
    try {
      context->enqueue(stream);
      ADD_FAILURE() << "an unprepared shape was accepted inside the capture";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    }
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);  // the refusal left the capture valid
    cudaGraphDestroy(graph);
    context->prepare();
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
    context->enqueue(stream);  // a device allocation or a host sync here would invalidate the capture
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    cudaGraphExec_t exec;
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    std::vector<float> got(size_t(batch * 32));
    ASSERT_EQ(cudaMemcpy(got.data(), y, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    auto want = reference::run(net, {{"x", input}});
    expect_close(got, ir::read_doubles(want[0]), 1e-5);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  cudaFree(x);
  cudaFree(y);
  cudaStreamDestroy(stream);
}

TEST(GpuRuntime, ShapeChangesOnOneContext) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(6);
  ir::Network net = small_test_model(rng);
  auto engine = runtime::Engine::create(builder::build(net, {}));
  auto context = engine->create_context();
  for (int64_t batch : {1, 8, 2, 8, 7}) {
    auto input = random_tensor(DType::kFloat32, {batch, 32}, rng);
    auto got = runtime::run_with_host_tensors(*context, *engine, {{"x", input}});
    auto want = reference::run(net, {{"x", input}});
    expect_close(to_floats(got[0]), ir::read_doubles(want[0]), 1e-5);
  }
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    FAIL() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(GpuRuntime, ClearErrors) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(7);
  ir::Network net = small_test_model(rng);
  auto engine = runtime::Engine::create(builder::build(net, {}));
  auto context = engine->create_context();
  std::string out = net.value(net.outputs()[0]).name;
  expect_error([&] { context->set_input_shape("x", {9, 32}); }, "outside the range [1, 8] of 'batch' in profile 0");
  expect_error([&] { context->set_input_shape("x", {2, 31}); }, "dim 1 must be 32");
  expect_error([&] { context->set_input_shape("x", {2}); }, "rank 2");
  expect_error([&] { context->set_input_shape("nope", {2, 32}); }, "not an input");
  expect_error([&] { context->set_tensor_address("x", nullptr); }, "null");
  std::vector<float> host(64);
  expect_error([&] { context->set_tensor_address("x", host.data()); }, "not device memory");
  context->set_input_shape("x", {2, 32});
  expect_error([&] { context->enqueue(nullptr); }, "no address");
}

TEST(GpuRuntime, BindingByIndexMatchesBindingByName) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(17);
  ir::Network net = small_test_model(rng);
  runtime::RuntimeConfig config;
  config.cuda_graph_strategy = runtime::CudaGraphStrategy::kWholeGraphCapture;
  auto engine = runtime::Engine::create(builder::build(net, {}), config);
  auto context = engine->create_context();
  std::string out = net.value(net.outputs()[0]).name;
  ASSERT_EQ(context->io_count(), 2);
  int x_index = context->io_index("x"), y_index = context->io_index(out);
  EXPECT_EQ(x_index, 0);
  EXPECT_EQ(y_index, 1);
  EXPECT_TRUE(context->io_is_input(x_index));
  EXPECT_FALSE(context->io_is_input(y_index));
  expect_error([&] { context->io_index("nope"); }, "not an input or output");
  expect_error([&] { context->set_input_shape(y_index, std::vector<int64_t>{2, 32}); }, "is an output");
  expect_error([&] { context->set_input_shape(5, std::vector<int64_t>{2, 32}); }, "not an input or output index");
  expect_error([&] { context->set_input_shape(x_index, std::vector<int64_t>{9, 32}); }, "outside the range [1, 8]");
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  void *x = nullptr, *y = nullptr;
  ASSERT_EQ(cudaMalloc(&x, 8 * 32 * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&y, 8 * 32 * 4), cudaSuccess);
  for (int64_t batch : {3, 3, 3, 6, 3}) {
    SCOPED_TRACE(str("batch ", batch));
    auto input = random_tensor(DType::kFloat32, {batch, 32}, rng);
    ASSERT_EQ(cudaMemcpy(x, input.data.data(), input.data.size(), cudaMemcpyHostToDevice), cudaSuccess);
    context->set_input_shape(x_index, std::vector<int64_t>{batch, 32});
    EXPECT_EQ(context->tensor_shape(y_index), (std::vector<int64_t>{batch, 32}));
    context->set_tensor_address(x_index, x);
    context->set_tensor_address(y_index, y);
    context->enqueue(stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    std::vector<float> got(size_t(ir::checked_numel(context->tensor_shape(y_index))));
    ASSERT_EQ(cudaMemcpy(got.data(), y, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    expect_close(got, ir::read_doubles(reference::run(net, {{"x", input}})[0]), 1e-5);
  }
  auto stats = context->graph_stats();
  EXPECT_EQ(stats.pointer_repairs, 0);  // the same addresses bound again are no change
  EXPECT_GE(stats.replays, 2);
  cudaFree(x);
  cudaFree(y);
  cudaStreamDestroy(stream);
}

TEST(GpuRuntime, ContextsOnThreads) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(8);
  ir::Network net = small_test_model(rng);
  auto engine = runtime::Engine::create(builder::build(net, {}));
  std::vector<std::thread> threads;
  std::vector<std::string> failures(4);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      try {
        std::mt19937 local(100 + t);
        auto context = engine->create_context();
        cudaStream_t stream;
        cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
        for (int i = 0; i < 20; ++i) {
          int64_t batch = 1 + (t + i) % 8;
          auto input = random_tensor(DType::kFloat32, {batch, 32}, local);
          auto got = ir::read_doubles(runtime::run_with_host_tensors(*context, *engine, {{"x", input}}, stream)[0]);
          auto want = ir::read_doubles(reference::run(net, {{"x", input}})[0]);
          for (size_t k = 0; k < got.size(); ++k)
            if (std::fabs(got[k] - want[k]) > 1e-5) throw std::runtime_error(str("thread ", t, " run ", i, " element ", k));
        }
        cudaStreamDestroy(stream);
      } catch (const std::exception& e) {
        failures[size_t(t)] = e.what();
      }
    });
  for (auto& th : threads) th.join();
  for (auto& f : failures) EXPECT_EQ(f, "");
}

// profile(): one entry per launch, in order, each timed, with the products
// of the matmuls; the outputs are still right afterwards.
TEST(GpuRuntime, ProfileTimesEveryLaunch) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(10);
  ir::Network net = small_test_model(rng);
  auto engine = runtime::Engine::create(builder::build(net, {}));
  auto context = engine->create_context();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  auto input = random_tensor(DType::kFloat32, {8, 32}, rng);
  runtime::DeviceIo io(*context, *engine, {{"x", input}});
  auto steps = context->profile(stream, 5);
  ASSERT_FALSE(steps.empty());
  double matmul_flops = 0;
  for (const auto& s : steps) {
    EXPECT_GT(s.gpu_us, 0) << s.node;
    EXPECT_GT(s.bytes, 0) << s.node;
    EXPECT_FALSE(s.runs.empty()) << s.node;
    if (s.op == "FusedMatMul" || s.op == "MatMul") matmul_flops += s.flops;
  }
  EXPECT_EQ(matmul_flops, 2.0 * 2 * 8 * 32 * 32);  // two 8x32 by 32x32 products
  EXPECT_THROW(context->profile(stream, 0), Error);
  context->enqueue(stream);
  auto got = ir::read_doubles(io.download(stream)[0]);
  auto want = ir::read_doubles(reference::run(net, {{"x", input}})[0]);
  for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], want[k], 1e-5) << "element " << k;
  cudaStreamDestroy(stream);
}

TEST(GpuRuntime, RuntimeCacheServesTheSecondEngine) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(9);
  ir::Network net = small_test_model(rng);
  plan::Plan p = builder::build(net, {});
  runtime::RuntimeConfig config;
  config.cache = std::make_shared<runtime::RuntimeCache>(runtime::compiler_version());
  auto first = runtime::Engine::create(p, config);
  EXPECT_EQ(first->cached_kernel_count(), 0);
  auto second = runtime::Engine::create(p, config);
  EXPECT_EQ(second->cached_kernel_count(), second->kernel_count());
  auto input = random_tensor(DType::kFloat32, {4, 32}, rng);
  auto context = second->create_context();
  auto got = runtime::run_with_host_tensors(*context, *second, {{"x", input}});
  expect_close(to_floats(got[0]), ir::read_doubles(reference::run(net, {{"x", input}})[0]), 1e-5);
}

// cuDNN's algorithm choice is remembered in the runtime cache: a second engine
// finds it there instead of asking cuDNN's heuristics again.
// An image's first convolution in half precision (3 channels, 7x7, stride 2,
// channels-last, batch from a range): cuDNN picks an algorithm for plain math
// there, and its math type must come with it, from the heuristics and from
// the runtime cache alike.
TEST(GpuRuntime, HalfPrecisionStemConvolutionTakesItsAlgorithmsMathType) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(16);
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(3), Dim(32), Dim(32)});
  ir::Attributes a;
  a.set("pads", std::vector<int64_t>{3, 3, 3, 3});
  a.set("strides", std::vector<int64_t>{2, 2});
  ValueId y = net.add_op(OpKind::kConv, {x, net.add_weight("w", random_tensor(DType::kFloat32, {16, 3, 7, 7}, rng))}, a)[0];
  net.add_output(net.add_op1(OpKind::kRelu, {y}));
  net.set_dim_range("batch", {1, 4, 16});
  net.finalize();
  builder::BuildOptions options;
  options.precision = plan::Precision::kFloat16;
  plan::Plan p = builder::build(net, options);
  runtime::RuntimeConfig config;
  config.cache = std::make_shared<runtime::RuntimeCache>(runtime::compiler_version());
  for (int engine = 0; engine < 2; ++engine) {  // the second one takes every choice from the cache
    auto e = runtime::Engine::create(p, config);
    auto c = e->create_context();
    for (int64_t batch : {1, 7, 16}) {
      auto input = random_tensor(DType::kFloat32, {batch, 3, 32, 32}, rng);
      expect_close(to_floats(runtime::run_with_host_tensors(*c, *e, {{"x", input}})[0]),
                   ir::read_doubles(reference::run(net, {{"x", input}})[0]), 5e-2);  // absolute: outputs reach about 20, fp16 steps there 0.016
    }
  }
}

TEST(GpuRuntime, RuntimeCacheRemembersConvolutionAlgorithms) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(15);
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(1), Dim(4), Dim(12), Dim(12)});
  ir::Attributes a;
  a.set("pads", std::vector<int64_t>{1, 1, 1, 1});
  ValueId y = net.add_op(OpKind::kConv, {x, net.add_weight("w", random_tensor(DType::kFloat32, {8, 4, 3, 3}, rng))}, a)[0];
  net.add_output(y);
  net.finalize();
  plan::Plan p = builder::build(net, {});
  runtime::RuntimeConfig config;
  config.cache = std::make_shared<runtime::RuntimeCache>(runtime::compiler_version());
  config.dynamic_shapes_kernel_specialization_strategy = runtime::KernelSpecialization::kNone;
  auto input = random_tensor(DType::kFloat32, {1, 4, 12, 12}, rng);
  auto want = ir::read_doubles(reference::run(net, {{"x", input}})[0]);
  auto first = runtime::Engine::create(p, config);
  auto c1 = first->create_context();
  expect_close(to_floats(runtime::run_with_host_tensors(*c1, *first, {{"x", input}})[0]), want, 1e-4);
  EXPECT_EQ(config.cache->entry_count(), size_t(first->kernel_count()) + 1);  // the kernels and one algorithm choice
  size_t entries = config.cache->entry_count();
  auto second = runtime::Engine::create(p, config);
  auto c2 = second->create_context();
  expect_close(to_floats(runtime::run_with_host_tensors(*c2, *second, {{"x", input}})[0]), want, 1e-4);
  EXPECT_EQ(config.cache->entry_count(), entries);
}

TEST(GpuRuntime, CacheWarmedWithoutAGpuServesSpecializedKernels) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(11);
  ir::Network net = small_test_model(rng);
  plan::Plan p = builder::build(net, {});
  int device = 0;
  cudaGetDevice(&device);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, device);
  auto cache = std::make_shared<runtime::RuntimeCache>(runtime::compiler_version());
  runtime::warm_cache(p, prop.major * 10 + prop.minor, *cache, {}, {{{"x", {5, 32}}}});  // the path kiln cache warm takes
  size_t warmed = cache->entry_count();
  runtime::RuntimeConfig config;
  config.cache = cache;
  config.warm_up_contexts = false;  // its opt shape was not warmed into the cache
  config.dynamic_shapes_kernel_specialization_strategy = runtime::KernelSpecialization::kEager;
  auto engine = runtime::Engine::create(p, config);
  EXPECT_EQ(engine->cached_kernel_count(), engine->kernel_count());
  auto context = engine->create_context();
  auto input = random_tensor(DType::kFloat32, {5, 32}, rng);
  auto got = runtime::run_with_host_tensors(*context, *engine, {{"x", input}});
  expect_close(to_floats(got[0]), ir::read_doubles(reference::run(net, {{"x", input}})[0]), 1e-5);
  auto stats = context->specialization_stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_GT(stats[0].specialized, 0);
  EXPECT_GT(engine->cached_specialized_kernel_count(), 0);
  EXPECT_EQ(cache->entry_count(), warmed);  // every kernel, specialized ones included, came from the warmed cache
}

TEST(GpuRuntime, SpecializationStrategiesOverAShapeSequence) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(10);
  ir::Network net = small_test_model(rng);
  plan::Plan p = builder::build(net, {});
  const std::vector<int64_t> sequence = {1, 3, 8, 3, 1, 5, 3, 8};
  for (auto strategy : {runtime::KernelSpecialization::kNone, runtime::KernelSpecialization::kEager,
                        runtime::KernelSpecialization::kLazy}) {
    SCOPED_TRACE(std::string(runtime::kernel_specialization_name(strategy)));
    runtime::RuntimeConfig config;
    config.dynamic_shapes_kernel_specialization_strategy = strategy;
    config.warm_up_contexts = false;  // only the sequence's shapes
    auto engine = runtime::Engine::create(p, config);
    auto context = engine->create_context();
    for (int64_t batch : sequence) {
      auto input = random_tensor(DType::kFloat32, {batch, 32}, rng);
      auto got = runtime::run_with_host_tensors(*context, *engine, {{"x", input}});
      expect_close(to_floats(got[0]), ir::read_doubles(reference::run(net, {{"x", input}})[0]), 1e-5);
    }
    if (strategy == runtime::KernelSpecialization::kLazy) {  // background compiles finish; later calls swap them in
      auto input = random_tensor(DType::kFloat32, {3, 32}, rng);
      for (int i = 0; i < 200 && context->specialization_stats().front().pending > 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        auto got = runtime::run_with_host_tensors(*context, *engine, {{"x", input}});
        expect_close(to_floats(got[0]), ir::read_doubles(reference::run(net, {{"x", input}})[0]), 1e-5);
      }
    }
    auto stats = context->specialization_stats();
    ASSERT_EQ(stats.size(), 4u);  // four distinct batch sizes
    for (auto& st : stats) {
      SCOPED_TRACE(st.shape);
      if (strategy == runtime::KernelSpecialization::kNone) {
        EXPECT_EQ(st.specialized, 0);
      }
      if (strategy == runtime::KernelSpecialization::kEager) {
        EXPECT_EQ(st.generic, 0);
        EXPECT_GT(st.specialized, 0);
      }
    }
    if (strategy == runtime::KernelSpecialization::kLazy) {
      EXPECT_EQ(stats.front().shape, "x:3x32");
      EXPECT_EQ(stats.front().pending, 0);
      EXPECT_GT(stats.front().specialized, 0);
    }
  }
}

// A stream of distinct shapes keeps the specialized kernels bounded: the store
// forgets the least recently used ones and their modules are unloaded once no
// prepared shape uses them, while every result stays right.
TEST(GpuRuntime, SpecializedKernelsAreBoundedLeastRecentlyUsed) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(12);
  ir::Network net = small_test_model(rng);
  runtime::RuntimeConfig config;
  config.dynamic_shapes_kernel_specialization_strategy = runtime::KernelSpecialization::kEager;
  config.max_specialized_kernels = 3;
  config.shapes_per_context = 2;
  auto engine = runtime::Engine::create(builder::build(net, {}), config);
  auto context = engine->create_context();
  int64_t per_shape = 0, most_loaded = 0;
  for (int round = 0; round < 2; ++round)
    for (int64_t batch = 1; batch <= 8; ++batch) {
      SCOPED_TRACE(str("round ", round, " batch ", batch));
      auto input = random_tensor(DType::kFloat32, {batch, 32}, rng);
      auto got = runtime::run_with_host_tensors(*context, *engine, {{"x", input}});
      expect_close(to_floats(got[0]), ir::read_doubles(reference::run(net, {{"x", input}})[0]), 1e-5);
      auto stats = context->specialization_stats();
      EXPECT_EQ(stats.front().generic, 0);
      per_shape = std::max<int64_t>(per_shape, stats.front().specialized);
      most_loaded = std::max(most_loaded, engine->loaded_specialized_kernel_count());
    }
  ASSERT_GT(per_shape, 0);
  // Without eviction 8 shapes would have loaded 8 x per_shape modules (distinct
  // batch sizes give distinct parameters).
  EXPECT_LE(most_loaded, int64_t(config.max_specialized_kernels) + int64_t(config.shapes_per_context + 1) * per_shape);
  EXPECT_LT(most_loaded, 8 * per_shape);
}

// A new context has run once at the profile's opt shape (kernels loaded, the
// shape prepared) and otherwise looks as created: no input shape is set.
TEST(GpuRuntime, ContextsWarmUpAtTheOptShape) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(13);
  ir::Network net = small_test_model(rng);
  runtime::RuntimeConfig config;
  config.dynamic_shapes_kernel_specialization_strategy = runtime::KernelSpecialization::kEager;
  auto engine = runtime::Engine::create(builder::build(net, {}), config);
  auto context = engine->create_context();
  auto stats = context->specialization_stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].shape, "x:2x32");
  EXPECT_GT(stats[0].specialized, 0);
  expect_error([&] { context->enqueue(nullptr); }, "the shape of input 'x' is not set");
  auto input = random_tensor(DType::kFloat32, {2, 32}, rng);
  auto got = runtime::run_with_host_tensors(*context, *engine, {{"x", input}});
  expect_close(to_floats(got[0]), ir::read_doubles(reference::run(net, {{"x", input}})[0]), 1e-5);
  EXPECT_EQ(context->specialization_stats().size(), 1u);  // the call used the prepared shape
}

// One kernel source at several sizes in one shape: eager compiles its
// specialized variants on several threads at once, each with its own sizes.
TEST(GpuRuntime, ConcurrentSpecializationsOfOneKernel) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(14);
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(32)});
  int64_t width = 32;
  for (int64_t next : {64, 16, 48, 8, 24}) {
    x = net.add_op1(OpKind::kRelu, {x});
    x = net.add_op1(OpKind::kMatMul, {x, net.add_weight(str("w", next), random_tensor(DType::kFloat32, {width, next}, rng))});
    width = next;
  }
  net.add_output(net.add_op1(OpKind::kRelu, {x}));
  net.set_dim_range("batch", {1, 4, 8});
  net.finalize();
  runtime::RuntimeConfig config;
  config.dynamic_shapes_kernel_specialization_strategy = runtime::KernelSpecialization::kEager;
  auto engine = runtime::Engine::create(builder::build(net, {}), config);
  auto context = engine->create_context();
  for (int64_t batch : {3, 4, 7}) {
    auto input = random_tensor(DType::kFloat32, {batch, 32}, rng);
    auto got = runtime::run_with_host_tensors(*context, *engine, {{"x", input}});
    auto want = ir::read_doubles(reference::run(net, {{"x", input}})[0]);
    auto a = ir::read_doubles(got[0]);
    ASSERT_EQ(a.size(), want.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], want[i], 1e-4 * (1 + std::fabs(want[i]))) << "batch " << batch << " " << i;
    EXPECT_EQ(context->specialization_stats().front().generic, 0);
  }
}

// small_test_model with two optimization profiles: batch 1..8 (opt 4) and 9..64 (opt 32).
// References run the plan's network: its batch range is the union, the model's stops at 8.
plan::Plan two_profile_plan(const ir::Network& net) {
  builder::BuildOptions options;
  builder::add_input_profile(net, "x", {1, 32}, {4, 32}, {8, 32}, options, 0);
  builder::add_input_profile(net, "x", {9, 32}, {32, 32}, {64, 32}, options, 1);
  return builder::build(net, options);
}

std::vector<std::string> prepared_shapes(const runtime::ExecutionContext& context) {
  std::vector<std::string> keys;
  for (auto& st : context.specialization_stats()) keys.push_back(st.shape);
  std::sort(keys.begin(), keys.end());
  return keys;
}

// A context runs the shapes of the profile it selects, checked against the
// reference; it warms up at each profile's opt shape, keeps what it prepared
// when switching, and refuses the other profile's shapes naming that profile.
TEST(GpuProfiles, EachProfileRunsItsShapes) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(21);
  ir::Network net = small_test_model(rng);
  runtime::RuntimeConfig config;
  config.dynamic_shapes_kernel_specialization_strategy = runtime::KernelSpecialization::kEager;
  plan::Plan plan = two_profile_plan(net);
  auto engine = runtime::Engine::create(plan, config);
  EXPECT_EQ(engine->profile_count(), 2);
  auto context = engine->create_context();
  EXPECT_EQ(context->optimization_profile(), 0);
  EXPECT_EQ(prepared_shapes(*context), std::vector<std::string>{"x:4x32"});  // profile 0's opt
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  auto run_batch = [&](int64_t batch) {
    SCOPED_TRACE(str("profile ", context->optimization_profile(), ", batch ", batch));
    auto input = random_tensor(DType::kFloat32, {batch, 32}, rng);
    auto got = runtime::run_with_host_tensors(*context, *engine, {{"x", input}}, stream);
    expect_close(to_floats(got[0]), ir::read_doubles(reference::run(plan.network, {{"x", input}})[0]), 1e-5);
  };
  for (int64_t batch : {1, 8, 4}) run_batch(batch);
  expect_error([&] { context->set_input_shape("x", {12, 32}); },
               "input 'x' dim 0 ('batch') is 12, outside the range [1, 8] of 'batch' in profile 0; profile 1 accepts this "
               "shape of 'x' ([12,32]): select profile 1");
  expect_error([&] { context->set_optimization_profile(2, stream); },
               "optimization profile 2 does not exist: the plan has 2 profiles (0 to 1)");
  expect_error([&] { context->set_optimization_profile(-1, stream); }, "does not exist");

  context->set_input_shape("x", {4, 32});
  context->set_optimization_profile(1, stream);
  EXPECT_EQ(context->optimization_profile(), 1);
  // Warmed up at profile 1's opt; profile 0's shapes stay prepared.
  EXPECT_EQ(prepared_shapes(*context), (std::vector<std::string>{"x:1x32", "x:32x32", "x:4x32", "x:8x32"}));
  // x's shape was profile 0's: unset, to be set again.
  expect_error([&] { context->tensor_shape("x"); }, "the shape of input 'x' is not set");
  for (int64_t batch : {9, 64, 32, 17}) run_batch(batch);
  expect_error([&] { context->set_input_shape("x", {8, 32}); },
               "is 8, outside the range [9, 64] of 'batch' in profile 1; profile 0 accepts this shape");
  expect_error([&] { context->set_input_shape("x", {65, 32}); },
               "no profile of the plan accepts it ('batch' ranges over [1, 8] in profile 0, [9, 64] in profile 1)");
  expect_error([&] { context->prepare({{{"x", {2, 32}}}}); }, "profile 0 accepts this shape");

  // Back to profile 0: its opt shape is prepared already, nothing is added or dropped.
  size_t prepared = prepared_shapes(*context).size();
  context->set_optimization_profile(0, stream);
  EXPECT_EQ(prepared_shapes(*context).size(), prepared);
  run_batch(8);
  EXPECT_EQ(prepared_shapes(*context).size(), prepared);
  // A second context starts on profile 0, whatever the first selected.
  auto second = engine->create_context();
  EXPECT_EQ(second->optimization_profile(), 0);
  EXPECT_EQ(prepared_shapes(*second), std::vector<std::string>{"x:4x32"});
  cudaStreamDestroy(stream);
}

TEST(GpuProfiles, WithoutWarmUpSelectingAProfilePreparesNothing) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(22);
  ir::Network net = small_test_model(rng);
  runtime::RuntimeConfig config;
  config.warm_up_contexts = false;
  plan::Plan plan = two_profile_plan(net);
  auto engine = runtime::Engine::create(plan, config);
  auto context = engine->create_context();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  context->set_optimization_profile(1, stream);
  EXPECT_TRUE(context->specialization_stats().empty());
  auto input = random_tensor(DType::kFloat32, {20, 32}, rng);
  auto got = runtime::run_with_host_tensors(*context, *engine, {{"x", input}}, stream);
  expect_close(to_floats(got[0]), ir::read_doubles(reference::run(plan.network, {{"x", input}})[0]), 1e-5);
  cudaStreamDestroy(stream);
}

// Selecting a profile may warm up (allocate, synchronize): inside the caller's
// capture it is refused before anything changes, and the capture stays valid.
TEST(GpuProfiles, SelectingAProfileInsideACaptureIsRefused) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(23);
  ir::Network net = small_test_model(rng);
  auto engine = runtime::Engine::create(two_profile_plan(net));
  auto context = engine->create_context();
  std::string out = net.value(net.outputs()[0]).name;
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  void *x = nullptr, *y = nullptr;
  ASSERT_EQ(cudaMalloc(&x, 64 * 32 * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&y, 64 * 32 * 4), cudaSuccess);
  auto input = random_tensor(DType::kFloat32, {6, 32}, rng);
  ASSERT_EQ(cudaMemcpy(x, input.data.data(), input.data.size(), cudaMemcpyHostToDevice), cudaSuccess);
  context->set_input_shape("x", {6, 32});
  context->set_tensor_address("x", x);
  context->set_tensor_address(out, y);
  context->prepare();
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  expect_error([&] { context->set_optimization_profile(1, stream); }, "set_optimization_profile(1) inside a stream capture");
  EXPECT_EQ(context->optimization_profile(), 0);
  context->enqueue(stream);  // still profile 0's shape, recorded into the capture
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);  // the refusal left the capture valid
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  std::vector<float> got(6 * 32);
  ASSERT_EQ(cudaMemcpy(got.data(), y, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  expect_close(got, ir::read_doubles(reference::run(net, {{"x", input}})[0]), 1e-5);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  context->set_optimization_profile(1, stream);  // after the capture: fine
  EXPECT_EQ(context->optimization_profile(), 1);
  cudaFree(x);
  cudaFree(y);
  cudaStreamDestroy(stream);
}

TEST(GpuRuntime, UnsupportedOpsAreListed) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  std::vector<ValueId> operands;
  for (int i = 0; i < 7; ++i) operands.push_back(net.add_input(str("x", i), DType::kFloat32, {Dim(4)}));
  net.add_output(net.add_op1(OpKind::kEinsum, operands, attrs({{"equation", std::string("i,i,i,i,i,i,i->i")}})));  // over the kernel's 6
  net.finalize();
  expect_error([&] { runtime::Engine::create(builder::build(net, {})); }, "Einsum");
}

}  // namespace
}  // namespace kiln::testing
