// Data-dependent sizes on the GPU against the reference interpreter: NonZero
// over every kind of element at sizes from 0 to thousands, NonZero feeding
// further ops, TopK with K as an input, Range of input bounds; sizes above
// their bound; and what such engines say about graphs and captures.
#include <algorithm>

#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;

// Values with about `zeros` of them zero (0: none, 1: all), the rest +-1..4.
ir::TensorData sparse(DType dtype, const std::vector<int64_t>& dims, double zeros, std::mt19937& rng) {
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  std::uniform_real_distribution<double> u(0, 1);
  for (auto& x : v) {
    bool zero = zeros >= 1 || (zeros > 0 && u(rng) < zeros);
    double magnitude = dtype == DType::kBool ? 1 : double(1 + rng() % 4);
    x = zero ? 0 : (dtype == DType::kBool || dtype == DType::kUInt8 || rng() % 2) ? magnitude : -magnitude;
  }
  return reference::make_tensor(dtype, dims, v);
}

// A plan of `net` whose profile spans the shapes of `runs` (opt: the first).
plan::Plan plan_for(const ir::Network& net, const std::vector<Feeds>& runs, builder::BuildOptions options = {}) {
  add_profiles_spanning(net, runs, options);
  return builder::build(net, options);
}

// Runs every feed on one context (sizes change from call to call) and
// compares each result exactly with the reference.
void expect_runs_match(const ir::Network& net, const std::vector<Feeds>& runs, builder::BuildOptions options = {}) {
  plan::Plan p = plan_for(net, runs, options);
  for (const runtime::NodeSupport& s : runtime::gpu_support(p)) ASSERT_TRUE(s.supported) << s.node << ": " << s.reason;
  auto engine = runtime::Engine::create(std::move(p));
  auto context = engine->create_context();
  for (size_t i = 0; i < runs.size(); ++i) {
    SCOPED_TRACE(str("run ", i));
    expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, runs[i]), reference::run(net, runs[i]), 0);
  }
}

ir::Network nonzero_net(DType dtype, ir::Shape shape) {
  ir::Network net;
  net.add_output(net.add_op1(OpKind::kNonZero, {net.add_input("x", dtype, std::move(shape))}, {}, "nz"));
  return net;
}

TEST(GpuDataDependent, NonZeroMatchesReference) {
  KILN_REQUIRE_GPU();
  uint32_t seed = 3;
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBool, DType::kInt32, DType::kInt64, DType::kInt8}) {
    SCOPED_TRACE(dtype_name(dtype));
    // One dynamic dim: sizes 0, 1, 7 and 1500 on one context, sparse, all zero and all nonzero.
    ir::Network net = nonzero_net(dtype, {Dim::symbol("n")});
    net.finalize();
    std::vector<Feeds> runs;
    for (int64_t n : {7, 0, 1, 1500, 1500, 1500, 7}) {
      std::mt19937 rng(seed++);
      double zeros = runs.size() == 4 ? 1 : runs.size() == 5 ? 0 : 0.5;
      runs.push_back({{"x", sparse(dtype, {n}, zeros, rng)}});
    }
    expect_runs_match(net, runs);
    // Rank 3, more elements than one block's tile many times over.
    ir::Network cube = nonzero_net(dtype, {Dim(3), Dim(20), Dim(50)});
    cube.finalize();
    std::mt19937 rng(seed++);
    expect_runs_match(cube, {{{"x", sparse(dtype, {3, 20, 50}, 0.7, rng)}}, {{"x", sparse(dtype, {3, 20, 50}, 0, rng)}}});
  }
}

// NonZero's indices feed a Transpose and a Gather; the output shapes are
// read through tensor_shape after enqueue.
TEST(GpuDataDependent, NonZeroFeedsFurtherOps) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("rows"), Dim(6)});
  ValueId nz = net.add_op1(OpKind::kNonZero, {x}, {}, "nz");
  net.add_output(net.add_op1(OpKind::kTranspose, {nz}, attrs({{"perm", std::vector<int64_t>{1, 0}}}), "pairs"));
  std::mt19937 rng(11);
  ValueId table = net.add_weight("table", random_tensor(DType::kFloat32, {16, 3}, rng));
  net.add_output(net.add_op1(OpKind::kGather, {table, nz}, attrs({{"axis", int64_t(0)}}), "picked"));
  net.finalize();
  std::vector<Feeds> runs;
  for (int64_t rows : {4, 16, 1, 16}) runs.push_back({{"x", sparse(DType::kFloat32, {rows, 6}, 0.6, rng)}});
  expect_runs_match(net, runs);

  plan::Plan p = plan_for(net, runs);
  auto engine = runtime::Engine::create(std::move(p));
  auto context = engine->create_context();
  runtime::DeviceIo io(*context, *engine, runs[1]);
  EXPECT_THROW(context->tensor_shape("pairs_out_1"), Error);  // known once enqueue has run
  EXPECT_EQ(context->max_tensor_shape("pairs_out_1"), (std::vector<int64_t>{96, 2}));
  context->enqueue(nullptr);
  std::vector<ir::TensorData> got = io.download(nullptr);
  std::vector<ir::TensorData> want = reference::run(net, runs[1]);
  EXPECT_EQ(context->tensor_shape("pairs_out_1"), want[0].dims);
  EXPECT_EQ(got[1].dims, want[1].dims);
}

TEST(GpuDataDependent, TopKWithKAsAnInput) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(3), Dim(40)});
  ValueId k = net.add_input("k", DType::kInt64, {Dim(1)});
  for (ValueId v : net.add_op(OpKind::kTopK, {x, k}, attrs({{"axis", int64_t(1)}}), 2, "top")) net.add_output(v);
  net.finalize();
  std::mt19937 rng(5);
  std::vector<Feeds> runs;
  for (int64_t kk : {5, 40, 1, 0, 17})
    runs.push_back({{"x", random_tensor(DType::kFloat32, {3, 40}, rng)}, {"k", reference::make_tensor(DType::kInt64, {1}, {double(kk)})}});
  expect_runs_match(net, runs);
}

// Range(start, limit, delta) of graph inputs: its length is read back; the
// bound is given by name.
ir::Network range_net(DType dtype) {
  ir::Network net;
  ValueId start = net.add_input("start", dtype, {});
  ValueId limit = net.add_input("limit", dtype, {});
  ValueId delta = net.add_input("delta", dtype, {});
  ValueId r = net.add_op1(OpKind::kRange, {start, limit, delta}, {}, "r");
  net.add_output(net.add_op1(OpKind::kAbs, {r}, {}, "abs"));
  net.finalize();
  return net;
}

Feeds range_feeds(DType dtype, double start, double limit, double delta) {
  return {{"start", reference::make_tensor(dtype, {}, {start})},
          {"limit", reference::make_tensor(dtype, {}, {limit})},
          {"delta", reference::make_tensor(dtype, {}, {delta})}};
}

TEST(GpuDataDependent, RangeOfInputBounds) {
  KILN_REQUIRE_GPU();
  builder::BuildOptions options;
  options.data_dependent_bounds = {{"r_out_0", 100}};
  expect_runs_match(range_net(DType::kInt64),
                    {range_feeds(DType::kInt64, 0, 10, 1), range_feeds(DType::kInt64, 5, -20, -3), range_feeds(DType::kInt64, 3, 3, 1),
                     range_feeds(DType::kInt64, -50, 50, 1)},
                    options);
  expect_runs_match(range_net(DType::kFloat32),
                    {range_feeds(DType::kFloat32, 0.5, 7.25, 0.5), range_feeds(DType::kFloat32, 1, 0, 0.25)}, options);
}

// A size above its bound fails naming the tensor, writes nothing past the
// bound, and leaves the context usable.
TEST(GpuDataDependent, ASizeAboveItsBoundFailsNamingTheTensor) {
  KILN_REQUIRE_GPU();
  builder::BuildOptions options;
  options.data_dependent_bounds = {{"r_out_0", 16}};
  ir::Network net = range_net(DType::kInt64);
  plan::Plan p = plan_for(net, {range_feeds(DType::kInt64, 0, 10, 1)}, options);
  auto engine = runtime::Engine::create(std::move(p));
  auto context = engine->create_context();
  try {
    runtime::run_with_host_tensors(*context, *engine, range_feeds(DType::kInt64, 0, 17, 1));
    ADD_FAILURE() << "17 elements ran under a bound of 16";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("tensor 'r_out_0' (node 'r', Range)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("is 17 at this call, more than the bound 16"), std::string::npos) << e.what();
  }
  Feeds fits = range_feeds(DType::kInt64, 0, 16, 1);
  expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, fits), reference::run(net, fits), 0);

  // NonZero under a bound smaller than its input: the kernel writes the count only.
  ir::Network nz = nonzero_net(DType::kFloat32, {Dim(64)});
  nz.finalize();
  builder::BuildOptions small;
  small.data_dependent_bounds = {{"nz_out_0", 8}};
  std::mt19937 rng(2);
  Feeds many{{"x", sparse(DType::kFloat32, {64}, 0, rng)}};
  auto nz_engine = runtime::Engine::create(plan_for(nz, {many}, small));
  auto nz_context = nz_engine->create_context();
  try {
    runtime::run_with_host_tensors(*nz_context, *nz_engine, many);
    ADD_FAILURE() << "64 nonzeros ran under a bound of 8";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'nz_out_0' (node 'nz', NonZero): its data-dependent size is 64"), std::string::npos)
        << e.what();
  }
}

// Such engines never run CUDA graphs (a fallback with its reason, each call),
// say why they cannot be captured, and refuse a caller's capture untouched.
TEST(GpuDataDependent, NoGraphsAndNoCaptures) {
  KILN_REQUIRE_GPU();
  ir::Network net = nonzero_net(DType::kFloat32, {Dim(32)});
  net.finalize();
  std::mt19937 rng(9);
  Feeds feeds{{"x", sparse(DType::kFloat32, {32}, 0.5, rng)}};
  runtime::RuntimeConfig config;
  config.cuda_graph_strategy = runtime::CudaGraphStrategy::kWholeGraphCapture;
  auto engine = runtime::Engine::create(plan_for(net, {feeds}), config);
  auto context = engine->create_context();
  runtime::DeviceIo io(*context, *engine, feeds);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  EXPECT_FALSE(context->is_stream_capturable(stream));
  EXPECT_NE(context->capture_obstacle(stream).find("tensor 'nz_out_0' (node 'nz', NonZero) has a size that depends on data"),
            std::string::npos)
      << context->capture_obstacle(stream);
  for (int i = 0; i < 3; ++i) context->enqueue(stream);
  expect_outputs_close(io.download(stream), reference::run(net, feeds), 0);
  runtime::ExecutionContext::GraphStats stats = context->graph_stats();
  EXPECT_EQ(stats.calls, 3);
  EXPECT_EQ(stats.direct, 3);
  EXPECT_EQ(stats.captures, 0);
  EXPECT_EQ(stats.fallbacks["data-dependent shapes"], 3);

  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  try {
    context->enqueue(stream);
    ADD_FAILURE() << "enqueued into a capture";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("tensor 'nz_out_0'"), std::string::npos) << e.what();
  }
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);  // the capture stayed valid
  if (graph) cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace kiln::testing
