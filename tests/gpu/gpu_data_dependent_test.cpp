// Data-dependent sizes on the GPU against the reference interpreter: NonZero
// over every kind of element at sizes from 0 to thousands, NonZero feeding
// further ops, TopK with K as an input, Range of input bounds, Compress,
// Unique and NonMaxSuppression; ImageDecoder, decoded on the host; sizes
// above their bound; and what such engines say about graphs and captures.
#include <algorithm>

#include "../image/pnm.h"
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

// Before the first enqueue, an output sized by the input shapes alone has
// its dims through both the named and the indexed API; an output sized by
// data says so in both.
TEST(GpuDataDependent, ShapesBeforeEnqueueOfOutputsNotSizedByData) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("rows"), Dim(5)});
  net.add_output(net.add_op1(OpKind::kNonZero, {x}, {}, "nz"));
  net.add_output(net.add_op1(OpKind::kRelu, {x}, {}, "relu"));
  net.finalize();
  std::mt19937 rng(12);
  std::vector<Feeds> runs;
  for (int64_t rows : {3, 9}) runs.push_back({{"x", sparse(DType::kFloat32, {rows, 5}, 0.5, rng)}});
  plan::Plan p = plan_for(net, runs);
  auto engine = runtime::Engine::create(std::move(p));
  auto context = engine->create_context();
  const std::string relu = net.value(net.outputs()[1]).name;
  context->set_input_shape("x", std::vector<int64_t>{9, 5});
  EXPECT_EQ(context->tensor_shape(2), (std::vector<int64_t>{9, 5}));
  EXPECT_EQ(context->tensor_shape(relu), (std::vector<int64_t>{9, 5}));
  EXPECT_THROW(context->tensor_shape(1), Error);
  runtime::DeviceIo io(*context, *engine, runs[0]);
  context->enqueue(nullptr);
  std::vector<ir::TensorData> want = reference::run(net, runs[0]);
  expect_outputs_close(io.download(nullptr), want, 0);
  EXPECT_EQ(context->tensor_shape(1), want[0].dims);
  EXPECT_EQ(context->tensor_shape(2), (std::vector<int64_t>{3, 5}));
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

// Values drawn from `distinct` small integers (bool: 0 and 1), exact in
// every dtype, so that equal values repeat.
ir::TensorData repeating(DType dtype, const std::vector<int64_t>& dims, int64_t distinct, std::mt19937& rng) {
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (auto& x : v) x = dtype == DType::kBool ? double(rng() % 2) : double(int64_t(rng() % uint64_t(distinct)) - distinct / 2);
  return reference::make_tensor(dtype, dims, v);
}

const DType kDetectionDtypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt64, DType::kInt8, DType::kBool};

// Compress along a dynamic axis, along the last of three dims and flattened,
// with conditions of the axis's length, shorter, and longer but false past
// the input; sizes 0, 1, 7, 33 and 1500 on one context.
TEST(GpuDataDependent, CompressMatchesReference) {
  KILN_REQUIRE_GPU();
  uint32_t seed = 40;
  for (DType dtype : kDetectionDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    ir::Network net;
    ValueId x = net.add_input("x", dtype, {Dim::symbol("n"), Dim(7)});
    ValueId cond = net.add_input("cond", DType::kBool, {Dim::symbol("n")});
    ValueId y = net.add_input("y", dtype, {Dim(3), Dim(5), Dim::symbol("m")});
    ValueId short_cond = net.add_input("short", DType::kBool, {Dim(4)});
    net.add_output(net.add_op1(OpKind::kCompress, {x, cond}, attrs({{"axis", int64_t(0)}}), "rows"));
    net.add_output(net.add_op1(OpKind::kCompress, {y, short_cond}, attrs({{"axis", int64_t(-1)}}), "cols"));
    net.add_output(net.add_op1(OpKind::kCompress, {x, cond}, {}, "flat"));
    net.finalize();
    std::vector<Feeds> runs;
    for (auto [n, m] : {std::pair<int64_t, int64_t>{7, 33}, {0, 1}, {1, 0}, {1500, 2}, {33, 4}}) {
      std::mt19937 rng(seed++);
      ir::TensorData c = sparse(DType::kBool, {n}, runs.size() == 3 ? 0 : 0.5, rng);
      std::vector<double> s = ir::read_doubles(sparse(DType::kBool, {4}, 0.5, rng));
      for (int64_t i = m; i < 4; ++i) s[size_t(i)] = 0;  // past a shorter axis only false
      runs.push_back({{"x", random_tensor(dtype, {n, 7}, rng)}, {"cond", c}, {"y", random_tensor(dtype, {3, 5, m}, rng)},
                      {"short", reference::make_tensor(DType::kBool, {4}, s)}});
    }
    expect_runs_match(net, runs);
  }
}

// A condition true past the input is numpy's error on the GPU as on the CPU:
// enqueue names the node and the position, and the context runs on.
TEST(GpuDataDependent, CompressPastTheInputFailsNamingThePosition) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(3), Dim(2)});
  ValueId cond = net.add_input("cond", DType::kBool, {Dim(5)});
  net.add_output(net.add_op1(OpKind::kCompress, {x, cond}, attrs({{"axis", int64_t(0)}}), "cmp"));
  net.finalize();
  std::mt19937 rng(3);
  Feeds bad{{"x", random_tensor(DType::kFloat32, {3, 2}, rng)}, {"cond", reference::make_tensor(DType::kBool, {5}, {1, 0, 0, 0, 1})}};
  EXPECT_THROW(reference::run(net, bad), Error);
  auto engine = runtime::Engine::create(plan_for(net, {bad}));
  auto context = engine->create_context();
  try {
    runtime::run_with_host_tensors(*context, *engine, bad);
    ADD_FAILURE() << "a condition true at position 4 of an axis of 3 ran";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("node 'cmp' (Compress): the condition is true at position 4"), std::string::npos) << e.what();
  }
  Feeds good = bad;
  good["cond"] = reference::make_tensor(DType::kBool, {5}, {1, 0, 1, 0, 0});
  expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, good), reference::run(net, good), 0);
}

// Unique, all four outputs, sorted and unsorted, flattened and along either
// axis of a matrix, over few distinct values (many repeats) and many (few),
// from 0 to 1500 elements on one context.
TEST(GpuDataDependent, UniqueMatchesReference) {
  KILN_REQUIRE_GPU();
  uint32_t seed = 70;
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt32, DType::kInt64, DType::kUInt8, DType::kBool}) {
    SCOPED_TRACE(dtype_name(dtype));
    ir::Network net;
    ValueId x = net.add_input("x", dtype, {Dim::symbol("n"), Dim(3)});
    for (int64_t sorted : {0, 1}) {
      for (ValueId v : net.add_op(OpKind::kUnique, {x}, attrs({{"sorted", sorted}}), 4, str("flat", sorted))) net.add_output(v);
      for (int64_t axis : {0, -1})
        for (ValueId v : net.add_op(OpKind::kUnique, {x}, attrs({{"sorted", sorted}, {"axis", axis}}), 4, str("axis", axis, sorted)))
          net.add_output(v);
    }
    // Only Y and the inverse indices.
    std::vector<ValueId> some = net.add_op(OpKind::kUnique, {x}, {}, 3, "some");
    net.add_output(some[0]);
    net.add_output(some[2]);
    net.finalize();
    std::vector<Feeds> runs;
    for (auto [n, distinct] : {std::pair<int64_t, int64_t>{7, 3}, {0, 3}, {1, 3}, {33, 2}, {1500, 5}, {1500, 200}, {1000, 100000}}) {
      std::mt19937 rng(seed++);
      runs.push_back({{"x", repeating(dtype, {n, 3}, distinct, rng)}});
    }
    expect_runs_match(net, runs);
  }
}

// Boxes of every float type in both encodings over overlapping random boxes
// with tied scores (multiples of 1/16), with and without a score threshold,
// max_output_boxes_per_class a graph input (0, 1, 5, all); 0, 1, 7, 33 and
// 1000 boxes of 2 batches and 3 classes, and no batch at all.
TEST(GpuDataDependent, NonMaxSuppressionMatchesReference) {
  KILN_REQUIRE_GPU();
  uint32_t seed = 90;
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16})
    for (int64_t center : {0, 1}) {
      SCOPED_TRACE(str(dtype_name(dtype), " center_point_box ", center));
      ir::Network net;
      Dim b = Dim::symbol("b"), n = Dim::symbol("n");
      ValueId boxes = net.add_input("boxes", dtype, {b, n, Dim(4)});
      ValueId scores = net.add_input("scores", dtype, {b, Dim(3), n});
      ValueId most = net.add_input("most", DType::kInt64, {Dim(1)});
      ValueId iou = net.add_input("iou", dtype, {Dim(1)});
      ValueId least = net.add_weight("least", reference::make_tensor(dtype, {1}, {0.25}));
      ir::Attributes a = attrs({{"center_point_box", center}});
      net.add_output(net.add_op1(OpKind::kNonMaxSuppression, {boxes, scores, most, iou}, a, "all"));
      net.add_output(net.add_op1(OpKind::kNonMaxSuppression, {boxes, scores, most, iou, least}, a, "above"));
      net.finalize();
      std::vector<Feeds> runs;
      for (auto [batches, count, keep] : {std::tuple<int64_t, int64_t, int64_t>{2, 7, 5}, {2, 0, 5}, {2, 1, 1}, {2, 33, 0},
                                          {2, 1000, 1000}, {0, 7, 5}, {1, 33, 5}}) {
        std::mt19937 rng(seed++);
        std::uniform_int_distribution<int> corner(0, 40), side(1, 12), score(0, 16);
        std::vector<double> box, sc;
        for (int64_t i = 0; i < batches * count; ++i) {
          double x0 = corner(rng) / 4.0, y0 = corner(rng) / 4.0, w = side(rng) / 4.0, h = side(rng) / 4.0;
          if (center) box.insert(box.end(), {x0, y0, w, h});
          else if (rng() % 2) box.insert(box.end(), {y0, x0, y0 + h, x0 + w});
          else box.insert(box.end(), {y0 + h, x0 + w, y0, x0});  // corners in the other order
        }
        for (int64_t i = 0; i < batches * 3 * count; ++i) sc.push_back(score(rng) / 16.0);
        runs.push_back({{"boxes", reference::make_tensor(dtype, {batches, count, 4}, box)},
                        {"scores", reference::make_tensor(dtype, {batches, 3, count}, sc)},
                        {"most", reference::make_tensor(DType::kInt64, {1}, {double(keep)})},
                        {"iou", reference::make_tensor(dtype, {1}, {runs.size() % 2 ? 0.5 : 0.25})}});
      }
      expect_runs_match(net, runs);
    }
}

// Unique and NonMaxSuppression under bounds smaller than what they find: the
// count is reported against the bound, nothing is written past it.
TEST(GpuDataDependent, UniqueAndNonMaxSuppressionAboveTheirBounds) {
  KILN_REQUIRE_GPU();
  ir::Network net;
  ValueId x = net.add_input("x", DType::kInt32, {Dim(64)});
  net.add_output(net.add_op(OpKind::kUnique, {x}, {}, 1, "u")[0]);
  net.finalize();
  std::mt19937 rng(4);
  Feeds feeds{{"x", repeating(DType::kInt32, {64}, 1000, rng)}};
  builder::BuildOptions small;
  small.data_dependent_bounds = {{"u_out_0", 8}};
  auto engine = runtime::Engine::create(plan_for(net, {feeds}, small));
  auto context = engine->create_context();
  try {
    runtime::run_with_host_tensors(*context, *engine, feeds);
    ADD_FAILURE() << "more than 8 distinct values ran under a bound of 8";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("tensor 'u_out_0' (node 'u', Unique): its data-dependent size is"), std::string::npos)
        << e.what();
  }
  Feeds few{{"x", repeating(DType::kInt32, {64}, 8, rng)}};
  expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, few), reference::run(net, few), 0);

  ir::Network nms;
  ValueId boxes = nms.add_input("boxes", DType::kFloat32, {Dim(1), Dim(20), Dim(4)});
  ValueId scores = nms.add_input("scores", DType::kFloat32, {Dim(1), Dim(2), Dim(20)});
  ValueId most = nms.add_weight("most", reference::make_tensor(DType::kInt64, {1}, {20}));
  nms.add_output(nms.add_op1(OpKind::kNonMaxSuppression, {boxes, scores, most}, {}, "nms"));
  nms.finalize();
  std::vector<double> apart;  // 20 boxes that do not touch: all are kept
  for (int i = 0; i < 20; ++i) apart.insert(apart.end(), {0, 2.0 * i, 1, 2.0 * i + 1});
  Feeds all{{"boxes", reference::make_tensor(DType::kFloat32, {1, 20, 4}, apart)}, {"scores", random_tensor(DType::kFloat32, {1, 2, 20}, rng)}};
  builder::BuildOptions ten;
  ten.data_dependent_bounds = {{"nms_out_0", 10}};
  auto nms_engine = runtime::Engine::create(plan_for(nms, {all}, ten));
  auto nms_context = nms_engine->create_context();
  try {
    runtime::run_with_host_tensors(*nms_context, *nms_engine, all);
    ADD_FAILURE() << "40 boxes ran under a bound of 10";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(node 'nms', NonMaxSuppression): its data-dependent size is 40"), std::string::npos)
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

  expect_capture_refused(*context, stream, "tensor 'nz_out_0'");
  cudaStreamDestroy(stream);
}

// ---- ImageDecoder ----------------------------------------------------------------

// A P6 or P5 stream of random pixels, as the graph input "encoded".
Feeds image_feeds(int64_t width, int64_t height, int64_t channels, std::mt19937& rng) {
  std::vector<uint8_t> pixels(size_t(width * height * channels));
  for (auto& p : pixels) p = uint8_t(rng());
  std::vector<uint8_t> bytes = pnm(width, height, channels, pixels);
  ir::TensorData t;
  t.dtype = DType::kUInt8;
  t.dims = {int64_t(bytes.size())};
  t.data = Buffer::copy_of(bytes.data(), bytes.size());
  return {{"encoded", std::move(t)}};
}

// The image, and the image as float [C, H, W]: kernels after the decode run at its sizes.
ir::Network image_net(const std::string& format) {
  ir::Network net;
  ValueId encoded = net.add_input("encoded", DType::kUInt8, {Dim::symbol("bytes")});
  ValueId image = net.add_op1(OpKind::kImageDecoder, {encoded}, attrs({{"pixel_format", format}}), "decode");
  net.add_output(image);
  ValueId floats = net.add_op1(OpKind::kCast, {image}, attrs({{"to", int64_t(DType::kFloat32)}}), "cast");
  net.add_output(net.add_op1(OpKind::kTranspose, {floats}, attrs({{"perm", std::vector<int64_t>{2, 0, 1}}}), "chw"));
  net.finalize();
  return net;
}

builder::BuildOptions image_bound(int64_t bound) {
  builder::BuildOptions options;
  options.data_dependent_bounds = {{"decode_out_0", bound}};
  return options;
}

// Sizes that change from call to call on one context (1 x 1 to 1000 wide),
// gray and colour sources, every pixel format, exactly the reference's pixels.
TEST(GpuDataDependent, ImageDecoderMatchesReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(21);
  for (const char* format : {"RGB", "BGR", "Grayscale"}) {
    SCOPED_TRACE(format);
    std::vector<Feeds> runs;
    for (auto [width, height, channels] : {std::tuple{7, 5, 3}, {1, 1, 3}, {1000, 3, 1}, {33, 17, 3}, {7, 5, 1}, {1000, 3, 3}})
      runs.push_back(image_feeds(width, height, channels, rng));
    expect_runs_match(image_net(format), runs, image_bound(1000));
  }
}

// An image that is a weight has dims the plan knows; enqueue still decodes it on the host.
TEST(GpuDataDependent, ImageDecoderOfAWeight) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(22);
  ir::Network net;
  ValueId encoded = net.add_weight("encoded", image_feeds(9, 4, 3, rng).at("encoded"));
  net.add_output(net.add_op1(OpKind::kImageDecoder, {encoded}, attrs({{"pixel_format", std::string("BGR")}}), "decode"));
  net.finalize();
  auto engine = runtime::Engine::create(builder::build(net, {}));
  auto context = engine->create_context();
  for (int i = 0; i < 2; ++i) expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, {}), reference::run(net, {}), 0);
}

// An image over the bound, and a stream that is no image, fail naming the
// tensor or the node; the context decodes the next image as usual. Such
// engines are not capturable.
TEST(GpuDataDependent, ImageDecoderErrors) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(23);
  ir::Network net = image_net("RGB");
  Feeds small = image_feeds(7, 5, 3, rng);
  auto engine = runtime::Engine::create(plan_for(net, {small, image_feeds(33, 17, 3, rng)}, image_bound(16)));
  auto context = engine->create_context();
  try {
    runtime::run_with_host_tensors(*context, *engine, image_feeds(16, 17, 3, rng));
    ADD_FAILURE() << "17 rows ran under a bound of 16";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("tensor 'decode_out_0' (node 'decode', ImageDecoder): its data-dependent size is 17"),
              std::string::npos)
        << e.what();
  }
  Feeds garbage = small;
  std::vector<std::byte> bytes(garbage.at("encoded").data.bytes().begin(), garbage.at("encoded").data.bytes().end());
  bytes[0] = std::byte{'Q'};
  garbage.at("encoded").data = Buffer::from_bytes(std::move(bytes));
  try {
    runtime::run_with_host_tensors(*context, *engine, garbage);
    ADD_FAILURE() << "a stream without a signature decoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("node 'decode' (ImageDecoder): input 0 ('encoded'): the encoded stream"), std::string::npos)
        << e.what();
  }
  expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, small), reference::run(net, small), 0);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  EXPECT_FALSE(context->is_stream_capturable(stream));
  EXPECT_NE(context->capture_obstacle(stream).find("(node 'decode', ImageDecoder)"), std::string::npos) << context->capture_obstacle(stream);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace kiln::testing
