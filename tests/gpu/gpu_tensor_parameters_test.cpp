// Parameters that are tensor data, not constants, on the GPU against the
// reference interpreter: Trilu's k, Pad's constant_value, CumSum's and
// CumProd's axis (read by the kernels, so generic and specialized kernels and
// CUDA graphs take each call's value), Resize's roi and scales and Col2Im's
// image_shape and block_shape (scales and shapes size the output: enqueue
// reads them back). Every test runs several calls on one context whose values
// differ, so a value kept from an earlier call shows; float32, float16 and
// bfloat16 data, odd sizes and empty tensors.
#include "gpu_test_util.h"

namespace kiln::testing {
namespace {

using ir::OpKind;
using ir::ValueId;
using S = runtime::KernelSpecialization;

ir::Shape shape(const std::vector<int64_t>& dims) { return ir::Shape(dims.begin(), dims.end()); }

// Relative to each output's largest magnitude: the output's rounding and float32 sums.
double tolerance(DType dtype) { return dtype == DType::kFloat32 ? 2e-5 : dtype == DType::kFloat16 ? 4e-3 : 3e-2; }

ir::TensorData scalar_of(DType dtype, double v) { return reference::make_tensor(dtype, {}, {v}); }

ir::TensorData values_of(DType dtype, const std::vector<double>& v) {
  return reference::make_tensor(dtype, {int64_t(v.size())}, v);
}

// The reference's outputs for each feed, every one different from the one
// before: otherwise a later call could pass with an earlier call's value.
void expect_feeds_change_the_outputs(const ir::Network& net, const std::vector<Feeds>& runs) {
  auto bytes = [&](const Feeds& feeds) {
    std::string all;
    for (const ir::TensorData& t : reference::run(net, feeds)) {
      all.append(reinterpret_cast<const char*>(t.data.data()), t.data.size());
      for (int64_t d : t.dims) all += str("|", d);
    }
    return all;
  };
  for (size_t i = 1; i < runs.size(); ++i) ASSERT_NE(bytes(runs[i - 1]), bytes(runs[i])) << "runs " << i - 1 << " and " << i;
}

// Calls of one context with these feeds, each against the reference.
void expect_calls_match(const ir::Network& net, OpKind op, const std::vector<Feeds>& runs, S strategy, double tol,
                        int64_t data_dependent_bound = -1) {
  expect_feeds_change_the_outputs(net, runs);
  expect_op_matches_reference(net, op, runs, plan::Precision::kFloat32, strategy, tol, data_dependent_bound);
}

// Runs `net` (fixed shapes) under whole_graph_capture on caller buffers that
// keep their addresses: each call copies its feeds into them, so from the
// third call on the graph replays as captured and only the values differ.
void expect_graph_replays_match(const ir::Network& net, const std::vector<Feeds>& runs, S strategy, double tol) {
  expect_feeds_change_the_outputs(net, runs);
  builder::BuildOptions options;
  add_profiles_spanning(net, runs, options);
  runtime::RuntimeConfig config;
  config.cuda_graph_strategy = runtime::CudaGraphStrategy::kWholeGraphCapture;
  config.warm_up_contexts = false;  // the first call is the warm-up
  config.dynamic_shapes_kernel_specialization_strategy = strategy;
  auto engine = runtime::Engine::create(builder::build(net, options), config);
  auto context = engine->create_context();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  std::map<std::string, std::unique_ptr<DeviceMemory>> memory;
  for (ir::ValueId id : net.inputs()) {
    const std::string& name = net.value(id).name;
    memory[name] = std::make_unique<DeviceMemory>(runs[0].at(name).data.size());
    context->set_input_shape(name, runs[0].at(name).dims);
    context->set_tensor_address(name, memory[name]->ptr);
  }
  std::vector<ir::TensorData> outputs;
  for (ir::ValueId id : net.outputs()) {
    ir::TensorData t;
    t.dtype = net.value(id).dtype;
    t.dims = context->tensor_shape(net.value(id).name);
    memory[net.value(id).name] = std::make_unique<DeviceMemory>(size_t(t.numel()) * dtype_size(t.dtype));
    context->set_tensor_address(net.value(id).name, memory[net.value(id).name]->ptr);
    outputs.push_back(std::move(t));
  }
  for (size_t call = 0; call < 2 * runs.size(); ++call) {
    const Feeds& feeds = runs[call % runs.size()];
    SCOPED_TRACE(str("call ", call));
    for (auto& [name, t] : feeds)
      ASSERT_EQ(cudaMemcpyAsync(memory[name]->ptr, t.data.data(), t.data.size(), cudaMemcpyHostToDevice, stream), cudaSuccess);
    context->enqueue(stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    for (size_t i = 0; i < outputs.size(); ++i) {
      std::vector<std::byte> host(size_t(outputs[i].numel()) * dtype_size(outputs[i].dtype));
      ASSERT_EQ(cudaMemcpy(host.data(), memory[net.value(net.outputs()[i]).name]->ptr, host.size(), cudaMemcpyDeviceToHost), cudaSuccess);
      outputs[i].data = Buffer::from_bytes(std::move(host));
    }
    expect_outputs_close(outputs, reference::run(net, feeds), tol);
  }
  cudaStreamDestroy(stream);
  auto g = context->graph_stats();
  EXPECT_EQ(g.captures, 1);
  EXPECT_EQ(g.replays, int64_t(2 * runs.size()) - 2);
  EXPECT_TRUE(g.fallbacks.empty());
}

// A network whose inputs are registered with their feeds for one call.
struct ParameterNetwork {
  ir::Network net;
  Feeds feeds;
  ValueId input(const std::string& name, ir::TensorData t) {
    ValueId v = net.add_input(name, t.dtype, shape(t.dims));
    feeds[name] = std::move(t);
    return v;
  }
  ValueId ints(const std::string& name, const std::vector<int64_t>& v) {
    return net.add_weight(name, reference::make_tensor(DType::kInt64, {int64_t(v.size())}, {v.begin(), v.end()}));
  }
};

// `first` with the values of the named inputs replaced, one feed per call.
std::vector<Feeds> calls_with(const Feeds& first, const std::vector<Feeds>& changes) {
  std::vector<Feeds> runs{first};
  for (const auto& change : changes) {
    Feeds f = first;
    for (auto& [name, t] : change) f[name] = t;
    runs.push_back(std::move(f));
  }
  return runs;
}

class GpuTensorParameters : public ::testing::TestWithParam<std::tuple<DType, S>> {};

// Trilu, upper and lower, over matrices of 1, 7 x 33, a batch of 5 x 1001
// and an empty one, k from a graph input: 0, inside, past every column and
// before every row.
ParameterNetwork trilu_network(DType dtype, std::mt19937& rng) {
  ParameterNetwork m;
  ValueId k = m.input("k", scalar_of(DType::kInt64, 0));
  const std::vector<std::vector<int64_t>> shapes = {{1, 1}, {7, 33}, {2, 5, 1001}, {0, 4}};
  for (size_t i = 0; i < shapes.size(); ++i) {
    ValueId x = m.input(str("x", i), random_tensor(dtype, shapes[i], rng));
    for (int64_t upper : {0, 1}) m.net.add_output(m.net.add_op1(OpKind::kTrilu, {x, k}, attrs({{"upper", upper}})));
  }
  m.net.finalize();
  return m;
}

std::vector<Feeds> trilu_calls(const Feeds& first) {
  std::vector<Feeds> changes;
  for (int64_t k : {3, -2, 1500, -1500, 1}) changes.push_back({{"k", scalar_of(DType::kInt64, double(k))}});
  return calls_with(first, changes);
}

TEST_P(GpuTensorParameters, TriluKFromAnInput) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  std::mt19937 rng(4101);
  ParameterNetwork m = trilu_network(dtype, rng);
  expect_calls_match(m.net, OpKind::kTrilu, trilu_calls(m.feeds), strategy, 0);
}

// Pad of a graph input's constant_value (constant mode; edge mode ignores
// it): pads that grow and crop, an input of one element, one of 33 x 7 x 1001
// elements, and an empty one that pads into an all-fill output.
ParameterNetwork pad_network(DType dtype, std::mt19937& rng) {
  ParameterNetwork m;
  ValueId value = m.input("value", scalar_of(dtype, 1.5));
  struct Case {
    std::vector<int64_t> x, pads;
  };
  const Case cases[] = {{{1}, {2, 3}}, {{7, 33}, {1, -2, 3, 4}}, {{33, 7, 1001}, {0, 1, 2, 0, 0, -3}}, {{0, 3}, {2, 1, 1, 0}}};
  for (size_t i = 0; i < std::size(cases); ++i) {
    ValueId x = m.input(str("x", i), random_tensor(dtype, cases[i].x, rng));
    ValueId pads = m.ints(str("pads", i), cases[i].pads);
    m.net.add_output(m.net.add_op1(OpKind::kPad, {x, pads, value}, attrs({{"mode", std::string("constant")}})));
    if (cases[i].x[0] > 0) m.net.add_output(m.net.add_op1(OpKind::kPad, {x, pads, value}, attrs({{"mode", std::string("edge")}})));
  }
  m.net.finalize();
  return m;
}

std::vector<Feeds> pad_calls(DType dtype, const Feeds& first) {
  std::vector<Feeds> changes;
  for (double v : {-2.0, 0.0, 7.0}) changes.push_back({{"value", scalar_of(dtype, v)}});
  return calls_with(first, changes);
}

TEST_P(GpuTensorParameters, PadValueFromAnInput) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  std::mt19937 rng(4102);
  ParameterNetwork m = pad_network(dtype, rng);
  expect_calls_match(m.net, OpKind::kPad, pad_calls(dtype, m.feeds), strategy, 0);
  if (dtype != DType::kFloat32) return;
  for (DType integer : {DType::kInt8, DType::kInt64}) {  // Pad takes any type
    SCOPED_TRACE(dtype_name(integer));
    ParameterNetwork n;
    ValueId value = n.input("value", scalar_of(integer, -3));
    ValueId x = n.input("x", random_ints(integer, {7, 33}, rng, -100, 100));
    n.net.add_output(n.net.add_op1(OpKind::kPad, {x, n.ints("pads", {1, 2, 3, 4}), value}));
    n.net.finalize();
    expect_calls_match(n.net, OpKind::kPad, pad_calls(integer, n.feeds), strategy, 0);
  }
}

// CumSum along an axis from a graph input (int64 for some tensors, int32 for
// others), every exclusive/reverse pair, rows of 1, 7, 33 and 1025 and an
// empty tensor; a CumProd too. The axis changes from call to call, negative
// ones among them.
ParameterNetwork scan_network(DType dtype, std::mt19937& rng) {
  ParameterNetwork m;
  const std::vector<std::vector<int64_t>> shapes = {{1}, {7, 33}, {3, 1025, 2}, {2, 0, 3}};
  std::vector<ValueId> axes;
  for (size_t i = 0; i < shapes.size(); ++i) {
    ValueId x = m.input(str("x", i), random_tensor(dtype, shapes[i], rng));
    axes.push_back(m.input(str("axis", i), scalar_of(i % 2 ? DType::kInt32 : DType::kInt64, 0)));
    for (int64_t exclusive : {0, 1})
      for (int64_t reverse : {0, 1})
        m.net.add_output(m.net.add_op1(OpKind::kCumSum, {x, axes[i]}, attrs({{"exclusive", exclusive}, {"reverse", reverse}})));
  }
  ValueId factors = m.input("factors", random_tensor(dtype, {7, 33}, rng, 0.9, 1.1));  // products stay finite
  m.net.add_output(m.net.add_op1(OpKind::kCumProd, {factors, axes[1]}));
  m.net.finalize();
  return m;
}

// The axis of each tensor per call (ranks 1, 2, 3 and 3).
std::vector<Feeds> scan_calls(const Feeds& first, const std::vector<std::vector<int64_t>>& axes) {
  std::vector<Feeds> changes;
  for (const auto& call : axes) {
    Feeds change;
    for (size_t i = 0; i < call.size(); ++i) change[str("axis", i)] = scalar_of(first.at(str("axis", i)).dtype, double(call[i]));
    changes.push_back(std::move(change));
  }
  return calls_with(first, changes);
}

TEST_P(GpuTensorParameters, ScanAxisFromAnInput) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  std::mt19937 rng(4103);
  ParameterNetwork m = scan_network(dtype, rng);
  std::vector<Feeds> runs = scan_calls(m.feeds, {{-1, 1, 1, 1}, {0, -1, 2, 2}, {-1, -2, -3, -2}, {0, 0, 1, 0}});
  expect_calls_match(m.net, OpKind::kCumSum, runs, strategy, tolerance(dtype));
}

// An axis outside [-rank, rank - 1] (which the reference refuses) counts as
// its nearest bound: the result of axis 2 for 5, of axis 0 for -7, and
// nothing read or written outside the tensors.
TEST_P(GpuTensorParameters, ScanAxisOutOfRangeTakesTheNearestBound) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  std::mt19937 rng(4104);
  ParameterNetwork m;
  ValueId x = m.input("x", random_tensor(dtype, {3, 33, 7}, rng));
  ValueId axis = m.input("axis", scalar_of(DType::kInt64, 0));
  m.net.add_output(m.net.add_op1(OpKind::kCumSum, {x, axis}));
  m.net.finalize();
  auto engine = engine_for(m.net, m.feeds, plan::Precision::kFloat32, strategy);
  auto context = engine->create_context();
  for (auto [given, nearest] : {std::pair<int64_t, int64_t>{5, 2}, {-7, 0}, {3, 2}, {-4, 0}}) {
    SCOPED_TRACE(str("axis ", given));
    Feeds bad = m.feeds, good = m.feeds;
    bad["axis"] = scalar_of(DType::kInt64, double(given));
    good["axis"] = scalar_of(DType::kInt64, double(nearest));
    EXPECT_THROW(reference::run(m.net, bad), Error);
    expect_outputs_close(run_on_shifted_buffers(*context, m.net, bad, 0, 0), reference::run(m.net, good), tolerance(dtype));
  }
}

// The kernels that read their parameter on the device keep it out of the
// captured graph: replays of one graph with k, constant_value and the axis
// changed in place give each call's result.
TEST_P(GpuTensorParameters, GraphReplaysReadEachCallsValues) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  std::mt19937 rng(4105);
  {
    SCOPED_TRACE("Trilu");
    ParameterNetwork m = trilu_network(dtype, rng);
    expect_graph_replays_match(m.net, trilu_calls(m.feeds), strategy, 0);
  }
  {
    SCOPED_TRACE("Pad");
    ParameterNetwork m = pad_network(dtype, rng);
    expect_graph_replays_match(m.net, pad_calls(dtype, m.feeds), strategy, 0);
  }
  {
    SCOPED_TRACE("CumSum");
    ParameterNetwork m = scan_network(dtype, rng);
    expect_graph_replays_match(m.net, scan_calls(m.feeds, {{0, 1, 2, 1}, {-1, -2, -1, 2}}), strategy, tolerance(dtype));
  }
}

// tf_crop_and_resize with a roi from a graph input and constant scales (no
// size depends on data, so the kernels may be specialized): a roi over every
// dim and one over the resized axes (the `axes` attribute), in float32 and
// float16, with extrapolation outside the image.
TEST_P(GpuTensorParameters, ResizeRoiFromAnInput) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  std::mt19937 rng(4106);
  ParameterNetwork m;
  ValueId x = m.input("x", random_tensor(dtype, {1, 3, 7, 33}, rng));
  ValueId every_dim = m.input("roi4", values_of(DType::kFloat32, {0, 0, 0.1, 0.2, 1, 1, 0.8, 0.9}));
  ValueId two_axes = m.input("roi2", values_of(DType::kFloat16, {0.25, 0.5, 0.75, 1.25}));
  ValueId scales = m.net.add_weight("scales", values_of(DType::kFloat32, {1, 1, 1.5, 0.75}));
  ValueId scales2 = m.net.add_weight("scales2", values_of(DType::kFloat32, {2, 0.5}));
  auto crop = [](const std::string& mode) {
    return attrs({{"mode", mode}, {"coordinate_transformation_mode", std::string("tf_crop_and_resize")}, {"extrapolation_value", 9.0}});
  };
  m.net.add_output(m.net.add_op1(OpKind::kResize, {x, every_dim, scales}, crop("linear")));
  m.net.add_output(m.net.add_op1(OpKind::kResize, {x, every_dim, scales}, crop("nearest")));
  ir::Attributes on_axes = crop("cubic");
  on_axes.set("axes", std::vector<int64_t>{2, 3});
  m.net.add_output(m.net.add_op1(OpKind::kResize, {x, two_axes, scales2}, on_axes));
  m.net.finalize();
  std::vector<Feeds> runs = calls_with(m.feeds, {{{"roi4", values_of(DType::kFloat32, {0, 0, -0.2, 0.3, 1, 1, 0.6, 1.4})},
                                                  {"roi2", values_of(DType::kFloat16, {0, 0, 1, 1})}},
                                                 {{"roi4", values_of(DType::kFloat32, {0, 0, 0.5, 0, 1, 1, 0.5, 1})},
                                                  {"roi2", values_of(DType::kFloat16, {0.5, -0.5, 0.25, 0.75})}}});
  expect_calls_match(m.net, OpKind::kResize, runs, strategy, tolerance(dtype));
}

// Resize by scales from a graph input: enqueue reads them back to size the
// output, which changes from call to call on one context (up, down, and back),
// in each mode and with the `axes` attribute.
ParameterNetwork resize_scales_network(DType dtype, std::mt19937& rng) {
  ParameterNetwork m;
  ValueId x = m.input("x", random_tensor(dtype, {1, 2, 7, 9}, rng));
  ValueId scales = m.input("scales", values_of(DType::kFloat32, {1, 1, 1.6, 0.75}));
  ValueId scales2 = m.input("scales2", values_of(DType::kFloat32, {0.5, 3}));
  m.net.add_output(m.net.add_op1(OpKind::kResize, {x, ir::kNoValue, scales}, attrs({{"mode", std::string("linear")}}), "linear"));
  m.net.add_output(m.net.add_op1(OpKind::kResize, {x, ir::kNoValue, scales},
                                 attrs({{"mode", std::string("cubic")}, {"coordinate_transformation_mode", std::string("align_corners")}}),
                                 "cubic"));
  ir::Attributes nearest = attrs({{"mode", std::string("nearest")}, {"nearest_mode", std::string("floor")}});
  nearest.set("axes", std::vector<int64_t>{3, 2});
  m.net.add_output(m.net.add_op1(OpKind::kResize, {x, ir::kNoValue, scales2}, nearest, "nearest"));
  m.net.finalize();
  return m;
}

TEST_P(GpuTensorParameters, ResizeScalesFromAnInput) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  std::mt19937 rng(4107);
  ParameterNetwork m = resize_scales_network(dtype, rng);
  // 9 x 2.1 and 9 x 2.05 both floor to 18 columns: only the scale the kernel
  // reads tells those two calls apart.
  std::vector<Feeds> runs = calls_with(m.feeds, {{{"scales", values_of(DType::kFloat32, {1, 1, 2, 2.1})},
                                                  {"scales2", values_of(DType::kFloat32, {1, 0.5})}},
                                                 {{"scales", values_of(DType::kFloat32, {1, 1, 2, 2.05})}},
                                                 {{"scales", values_of(DType::kFloat32, {1, 1, 0.3, 0.5})},
                                                  {"scales2", values_of(DType::kFloat32, {2.5, 1})}}});
  expect_calls_match(m.net, OpKind::kResize, runs, strategy, tolerance(dtype), 27);
}

// Scales that would make a dim larger than the bound the plan holds fail
// naming the tensor and the option that raises it; the next call runs.
TEST(GpuTensorParametersBounds, ResizeAboveItsBoundFailsNamingTheTensor) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(4108);
  ParameterNetwork m = resize_scales_network(DType::kFloat32, rng);
  auto output = [&](size_t i) { return m.net.value(m.net.outputs()[i]).name; };
  const std::string linear = output(0);
  builder::BuildOptions options;
  options.data_dependent_bounds = {{linear, 16}, {output(1), 16}, {output(2), 30}};
  add_profiles_spanning(m.net, {m.feeds}, options);
  auto engine = runtime::Engine::create(builder::build(m.net, options));
  auto context = engine->create_context();
  Feeds big = m.feeds;
  big["scales"] = values_of(DType::kFloat32, {1, 1, 2.5, 1});  // 7 x 2.5 -> 17 rows
  try {
    runtime::run_with_host_tensors(*context, *engine, big);
    ADD_FAILURE() << "17 rows ran under a bound of 16";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(str("tensor '", linear, "' (node 'linear', Resize)")), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("is 17 at this call, more than the bound 16"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(str("--data-dependent-bound ", linear, "=N")), std::string::npos) << e.what();
  }
  expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, m.feeds), reference::run(m.net, m.feeds), 2e-5);
}

// Col2Im whose image_shape and block_shape are graph inputs: enqueue reads
// them back (they size the output's channels and image); 2-D images with
// strides, dilations and pads, and 1-D ones of up to 1000 elements, the
// input's shape following the blocks from call to call.
TEST_P(GpuTensorParameters, Col2ImShapesFromInputs) {
  KILN_REQUIRE_GPU();
  auto [dtype, strategy] = GetParam();
  std::mt19937 rng(4109);
  struct Call {
    std::vector<int64_t> x, image, block;
  };
  auto calls_of = [&](const std::vector<Call>& calls) {
    std::vector<Feeds> runs;
    for (const Call& c : calls)
      runs.push_back({{"x", random_tensor(dtype, c.x, rng)},
                      {"image", reference::make_tensor(DType::kInt64, {int64_t(c.image.size())}, {c.image.begin(), c.image.end()})},
                      {"block", reference::make_tensor(DType::kInt64, {int64_t(c.block.size())}, {c.block.begin(), c.block.end()})}});
    return runs;
  };
  auto network = [&](int64_t rank, const ir::Attributes& a) {
    ir::Network net;
    ValueId x = net.add_input("x", dtype, {ir::Dim(1), ir::Dim::symbol("rows"), ir::Dim::symbol("columns")});
    ValueId image = net.add_input("image", DType::kInt64, {ir::Dim(rank)});
    ValueId block = net.add_input("block", DType::kInt64, {ir::Dim(rank)});
    net.add_output(net.add_op1(OpKind::kCol2Im, {x, image, block}, a, "col2im"));
    net.finalize();
    return net;
  };
  {
    SCOPED_TRACE("2-D");
    // (7 + 2 - 2) / 2 + 1 = 4 by (33 + 2 - 3) / 2 + 1 = 17; (9 + 2 - 3) / 2 + 1 = 5 by (5 + 2 - 1) / 2 + 1 = 4.
    ir::Network net = network(2, attrs({{"strides", std::vector<int64_t>{2, 2}}, {"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
    expect_calls_match(net, OpKind::kCol2Im,
                       calls_of({{{1, 2 * 6, 4 * 17}, {7, 33}, {2, 3}}, {{1, 3 * 3, 5 * 4}, {9, 5}, {3, 1}}, {{1, 2 * 6, 4 * 17}, {7, 33}, {3, 2}}}),
                       strategy, tolerance(dtype), 33);
  }
  {
    SCOPED_TRACE("1-D");
    ir::Network net = network(1, attrs({{"dilations", std::vector<int64_t>{2}}}));
    // 1000 - 2 * (7 - 1) = 988 blocks of 7; 33 - 2 * (1 - 1) = 33 of 1.
    expect_calls_match(net, OpKind::kCol2Im, calls_of({{{1, 7, 988}, {1000}, {7}}, {{1, 3, 33}, {33}, {1}}, {{1, 1, 1}, {1}, {1}}}),
                       strategy, tolerance(dtype), 1000);
  }
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndSpecialization, GpuTensorParameters,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16), ::testing::Values(S::kNone, S::kEager)),
    [](const auto& info) { return std::string(dtype_name(std::get<0>(info.param))) + "_" + spec_name(std::get<1>(info.param)); });

}  // namespace
}  // namespace kiln::testing
