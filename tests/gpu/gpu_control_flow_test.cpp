// Control flow on the GPU. `kiln build` inlines an If whose condition is a
// shape comparison and unrolls a Loop and a Scan of constant iteration counts
// (the plans hold no control-flow node). What it leaves decides by data what
// runs: enqueue reads the condition or trip count back and runs the subgraph
// `kiln build` built, per iteration for a Loop or Scan. Both forms match the
// reference interpreter running the subgraphs.
#include <gtest/gtest.h>

#include <functional>

#include "gpu_test_util.h"
#include "kiln/onnx.h"

namespace kiln::testing {
namespace {

using ir::OpKind;
using ir::ValueId;

constexpr DType f32 = DType::kFloat32;

ir::Subgraph subgraph(const std::vector<std::pair<DType, ir::Shape>>& inputs,
                      const std::function<std::vector<ValueId>(ir::Network&, const std::vector<ValueId>&)>& make) {
  auto g = std::make_shared<ir::Network>();
  std::vector<ValueId> in;
  for (auto& [dtype, shape] : inputs) in.push_back(g->add_input(str("b", in.size()), dtype, shape));
  for (ValueId v : make(*g, in)) g->add_output(v);
  g->finalize();
  return g;
}

// x [n, w]: If(Shape(x)[1] == w) then Tanh(x) * 2 else Neg(x), the branches reading x.
ir::Network if_on_width(int64_t w) {
  ir::Network net;
  ir::Shape shape{ir::Dim::symbol("n"), ir::Dim(w)};
  ValueId x = net.add_input("x", f32, shape);
  ValueId dims = net.add_op1(OpKind::kShape, {x});
  ValueId width = net.add_op1(OpKind::kGather, {dims, scalar(net, "one", DType::kInt64, 1)});
  ValueId cond = net.add_op1(OpKind::kEqual, {width, scalar(net, "w", DType::kInt64, double(w))});
  auto then_branch = subgraph({{f32, shape}}, [](ir::Network& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{g.add_op1(OpKind::kMul, {g.add_op1(OpKind::kTanh, {in[0]}), scalar(g, "two", f32, 2)})};
  });
  auto else_branch = subgraph({{f32, shape}}, [](ir::Network& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{g.add_op1(OpKind::kNeg, {in[0]})};
  });
  net.add_output(net.add_op1(OpKind::kIf, {cond, x}, attrs({{"then_branch", then_branch}, {"else_branch", else_branch}}), "if"));
  net.finalize();
  return net;
}

// acc [w] doubled plus bias (captured) `trips` times, each step's acc a slice of the trace.
ir::Network loop_of(int64_t trips, int64_t w) {
  ir::Network net;
  ValueId acc = net.add_input("acc", f32, {ir::Dim(w)});
  ValueId bias = net.add_input("bias", f32, {ir::Dim(w)});
  auto body = subgraph({{DType::kInt64, {}}, {DType::kBool, {}}, {f32, {ir::Dim(w)}}, {f32, {ir::Dim(w)}}},
                       [](ir::Network& g, const std::vector<ValueId>& in) {
                         ValueId next = g.add_op1(OpKind::kAdd, {g.add_op1(OpKind::kAdd, {in[2], in[2]}), in[3]});
                         return std::vector<ValueId>{in[1], next, g.add_op1(OpKind::kSigmoid, {next})};
                       });
  for (ValueId v : net.add_op(OpKind::kLoop, {scalar(net, "trips", DType::kInt64, double(trips)), ir::kNoValue, acc, bias},
                              attrs({{"body", body}, {"captured", int64_t(1)}}), 2, "loop"))
    net.add_output(v);
  net.finalize();
  return net;
}

// A running sum over the columns of xs [w, steps], last column first.
ir::Network scan_of(int64_t steps, int64_t w) {
  ir::Network net;
  ValueId init = net.add_input("init", f32, {ir::Dim(w)});
  ValueId xs = net.add_input("xs", f32, {ir::Dim(w), ir::Dim(steps)});
  auto body = subgraph({{f32, {ir::Dim(w)}}, {f32, {ir::Dim(w)}}}, [](ir::Network& g, const std::vector<ValueId>& in) {
    ValueId sum = g.add_op1(OpKind::kAdd, {in[0], in[1]});
    return std::vector<ValueId>{sum, g.add_op1(OpKind::kRelu, {sum})};
  });
  for (ValueId v : net.add_op(OpKind::kScan, {init, xs},
                              attrs({{"body", body}, {"num_scan_inputs", int64_t(1)}, {"scan_input_axes", std::vector<int64_t>{1}},
                                     {"scan_input_directions", std::vector<int64_t>{1}}, {"scan_output_axes", std::vector<int64_t>{-1}}}),
                              2, "scan"))
    net.add_output(v);
  net.finalize();
  return net;
}

// Builds `net` for the shapes of `feeds`, checks that no control flow is left
// and the GPU runs every node, then compares each precision and kernel
// specialization with the reference.
void expect_runs_on_gpu(const ir::Network& net, const Feeds& feeds, const std::string& label) {
  builder::BuildOptions options;
  add_profiles_spanning(net, {feeds}, options);
  plan::Plan plan = builder::build(net, options);
  for (const ir::Node& n : plan.network.nodes())
    ASSERT_NE(ir::family_of(n.op), ir::OpFamily::kControlFlow) << label << ":\n" << ir::dump_network(plan.network);
  for (const runtime::NodeSupport& s : runtime::gpu_support(plan)) ASSERT_TRUE(s.supported) << label << ": " << s.node << ": " << s.reason;
  for (auto [precision, tolerance] : {std::pair{plan::Precision::kFloat32, 1e-5}, std::pair{plan::Precision::kFloat16, 1e-2},
                                      std::pair{plan::Precision::kBFloat16, 5e-2}})
    for (auto strategy : {runtime::KernelSpecialization::kNone, runtime::KernelSpecialization::kEager})
      expect_gpu_matches_reference(net, feeds, precision, tolerance,
                                   str(label, " ", plan::precision_name(precision), " ", spec_name(strategy)), strategy);
}

TEST(GpuControlFlow, IfOnAShapeComparisonIsInlined) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(7);
  for (int64_t rows : {1, 7, 33, 1031}) {
    ir::Network net = if_on_width(5);
    expect_runs_on_gpu(net, {{"x", random_tensor(f32, {rows, 5}, rng, -2, 2)}}, str("rows ", rows));
  }
}

TEST(GpuControlFlow, LoopOfConstantTripsIsUnrolled) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(8);
  for (auto [trips, w] : {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {5, 33}, {2, 1000}}) {
    ir::Network net = loop_of(trips, w);
    expect_runs_on_gpu(net, {{"acc", random_tensor(f32, {w}, rng, -1, 1)}, {"bias", random_tensor(f32, {w}, rng, -1, 1)}},
                       str("trips ", trips, ", width ", w));
  }
}

TEST(GpuControlFlow, ScanOfStaticLengthIsUnrolled) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(9);
  for (auto [steps, w] : {std::pair<int64_t, int64_t>{1, 1}, {7, 3}, {4, 33}, {3, 1000}}) {
    ir::Network net = scan_of(steps, w);
    expect_runs_on_gpu(net, {{"init", random_tensor(f32, {w}, rng, -1, 1)}, {"xs", random_tensor(f32, {w, steps}, rng, -1, 1)}},
                       str("steps ", steps, ", width ", w));
  }
}

// ---- control flow that decides by data ----------------------------------------------

using ir::Dim;

constexpr DType i64 = DType::kInt64;
constexpr DType boolean = DType::kBool;

ir::TensorData flag(bool v) { return reference::make_tensor(boolean, {}, {double(v)}); }

// If(c) then Tanh(x) * 2 + bias else Concat(x, -x) along dim 0: the condition
// is data, the branches' outputs differ in rows, bias is read from the outer graph.
ir::Network if_on_data(int64_t w) {
  ir::Network net;
  ir::Shape shape{Dim::symbol("n"), Dim(w)};
  ValueId x = net.add_input("x", f32, shape);
  ValueId c = net.add_input("c", boolean, {});
  ValueId bias = net.add_input("bias", f32, {Dim(w)});
  std::vector<std::pair<DType, ir::Shape>> captured{{f32, shape}, {f32, {Dim(w)}}};
  auto then_branch = subgraph(captured, [](ir::Network& g, const std::vector<ValueId>& in) {
    ValueId twice = g.add_op1(OpKind::kMul, {g.add_op1(OpKind::kTanh, {in[0]}), scalar(g, "two", f32, 2)});
    return std::vector<ValueId>{g.add_op1(OpKind::kAdd, {twice, in[1]})};
  });
  auto else_branch = subgraph(captured, [](ir::Network& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{g.add_op1(OpKind::kConcat, {in[0], g.add_op1(OpKind::kNeg, {in[0]})}, attrs({{"axis", int64_t(0)}}))};
  });
  net.add_output(net.add_op1(OpKind::kIf, {c, x, bias}, attrs({{"then_branch", then_branch}, {"else_branch", else_branch}}), "if"));
  net.finalize();
  return net;
}

// Loop(M, go) over acc [w] (float) and count (int64), bias read from the
// outer graph: acc = acc * 0.5 + bias + i, count + 1, going on while
// count < stop; each iteration's Sigmoid(acc) is a slice of `trace`.
ir::Network loop_on_data(int64_t w) {
  ir::Network net;
  ValueId m = net.add_input("M", i64, {});
  ValueId go = net.add_input("go", boolean, {});
  ValueId acc = net.add_input("acc", f32, {Dim(w)});
  ValueId count = net.add_input("count", i64, {});
  ValueId bias = net.add_input("bias", f32, {Dim(w)});
  ValueId stop = net.add_input("stop", i64, {});
  auto body = subgraph({{i64, {}}, {boolean, {}}, {f32, {Dim(w)}}, {i64, {}}, {f32, {Dim(w)}}, {i64, {}}},
                       [](ir::Network& g, const std::vector<ValueId>& in) {
                         ValueId half = g.add_op1(OpKind::kMul, {in[2], scalar(g, "half", f32, 0.5)});
                         ValueId i = g.add_op1(OpKind::kCast, {in[0]}, attrs({{"to", int64_t(DType::kFloat32)}}));
                         ValueId next = g.add_op1(OpKind::kAdd, {g.add_op1(OpKind::kAdd, {half, in[4]}), i});
                         ValueId counted = g.add_op1(OpKind::kAdd, {in[3], scalar(g, "one", i64, 1)});
                         ValueId more = g.add_op1(OpKind::kLess, {counted, in[5]});
                         return std::vector<ValueId>{more, next, counted, g.add_op1(OpKind::kSigmoid, {next})};
                       });
  std::vector<ValueId> out = net.add_op(OpKind::kLoop, {m, go, acc, count, bias, stop},
                                        attrs({{"body", body}, {"captured", int64_t(2)}}), 3, "loop");
  const char* names[] = {"acc_out", "count_out", "trace"};
  for (size_t k = 0; k < out.size(); ++k) net.add_output(net.add_op1(OpKind::kIdentity, {out[k]}, {}, names[k]));
  net.finalize();
  return net;
}

// A Scan over a length only the input shapes tell: states s [w] and the
// step count (int64); xs scanned forward, ys last to first, both along axis
// `axis` of [L, w] (or [w, L]); slices Relu(s) forward and s * 2 written last
// to first, stacked along `axis`.
ir::Network scan_on_length(int64_t w, int64_t axis) {
  ir::Network net;
  ir::Shape shape = axis == 0 ? ir::Shape{Dim::symbol("L"), Dim(w)} : ir::Shape{Dim(w), Dim::symbol("L")};
  ValueId s = net.add_input("s", f32, {Dim(w)});
  ValueId steps = net.add_input("steps", i64, {});
  ValueId xs = net.add_input("xs", f32, shape);
  ValueId ys = net.add_input("ys", f32, shape);
  auto body = subgraph({{f32, {Dim(w)}}, {i64, {}}, {f32, {Dim(w)}}, {f32, {Dim(w)}}}, [](ir::Network& g, const std::vector<ValueId>& in) {
    ValueId next = g.add_op1(OpKind::kAdd, {in[0], g.add_op1(OpKind::kMul, {in[2], in[3]})});
    ValueId counted = g.add_op1(OpKind::kAdd, {in[1], scalar(g, "one", i64, 1)});
    return std::vector<ValueId>{next, counted, g.add_op1(OpKind::kRelu, {next}),
                                g.add_op1(OpKind::kMul, {next, scalar(g, "two", f32, 2)})};
  });
  ir::Attributes a = attrs({{"body", body}, {"num_scan_inputs", int64_t(2)}, {"scan_input_axes", std::vector<int64_t>{axis, axis}},
                            {"scan_input_directions", std::vector<int64_t>{0, 1}}, {"scan_output_axes", std::vector<int64_t>{axis, axis}},
                            {"scan_output_directions", std::vector<int64_t>{0, 1}}});
  for (ValueId v : net.add_op(OpKind::kScan, {s, steps, xs, ys}, a, 4, "scan")) net.add_output(v);
  net.finalize();
  return net;
}

// Scan-8's form: a batch of running sums, states [B, w], xs [B, L, w].
ir::Network batched_scan(int64_t w) {
  ir::Network net;
  ValueId s = net.add_input("s", f32, {Dim::symbol("B"), Dim(w)});
  ValueId xs = net.add_input("xs", f32, {Dim::symbol("B"), Dim::symbol("L"), Dim(w)});
  auto body = subgraph({{f32, {Dim(w)}}, {f32, {Dim(w)}}}, [](ir::Network& g, const std::vector<ValueId>& in) {
    ValueId sum = g.add_op1(OpKind::kAdd, {in[0], in[1]});
    return std::vector<ValueId>{sum, g.add_op1(OpKind::kTanh, {sum})};
  });
  for (ValueId v : net.add_op(OpKind::kScan, {s, xs}, attrs({{"body", body}, {"num_scan_inputs", int64_t(1)}, {"batched", int64_t(1)}}),
                              2, "scan"))
    net.add_output(v);
  net.finalize();
  return net;
}

// A Loop of M trips whose body takes one of two branches by the parity of
// its iteration: acc + x on even ones, acc * 0.5 - x on odd ones.
ir::Network nested_on_data(int64_t w) {
  ir::Network net;
  ValueId m = net.add_input("M", i64, {});
  ValueId acc = net.add_input("acc", f32, {Dim(w)});
  ValueId x = net.add_input("x", f32, {Dim(w)});
  auto body = subgraph({{i64, {}}, {boolean, {}}, {f32, {Dim(w)}}, {f32, {Dim(w)}}}, [w](ir::Network& g, const std::vector<ValueId>& in) {
    ValueId parity = g.add_op1(OpKind::kMod, {in[0], scalar(g, "two", i64, 2)});
    ValueId even = g.add_op1(OpKind::kEqual, {parity, scalar(g, "zero", i64, 0)});
    std::vector<std::pair<DType, ir::Shape>> captured{{f32, {Dim(w)}}, {f32, {Dim(w)}}};
    auto add = subgraph(captured, [](ir::Network& b, const std::vector<ValueId>& v) {
      return std::vector<ValueId>{b.add_op1(OpKind::kAdd, {v[0], v[1]})};
    });
    auto halve = subgraph(captured, [](ir::Network& b, const std::vector<ValueId>& v) {
      return std::vector<ValueId>{b.add_op1(OpKind::kSub, {b.add_op1(OpKind::kMul, {v[0], scalar(b, "half", f32, 0.5)}), v[1]})};
    });
    ValueId next = g.add_op1(OpKind::kIf, {even, in[2], in[3]}, attrs({{"then_branch", add}, {"else_branch", halve}}), "parity");
    return std::vector<ValueId>{in[1], next, next};
  });
  std::vector<ValueId> out =
      net.add_op(OpKind::kLoop, {m, ir::kNoValue, acc, x}, attrs({{"body", body}, {"captured", int64_t(1)}}), 2, "loop");
  for (ValueId v : out) net.add_output(v);
  net.finalize();
  return net;
}

constexpr int64_t kTripBound = 40;

// Every precision and kernel specialization strategy, each on one context
// running every feed in turn (branches and trip counts change from call to call).
void expect_control_flow_matches(const ir::Network& net, OpKind op, const std::vector<Feeds>& runs, int64_t bound = -1) {
  for (auto [precision, tolerance] : {std::pair{plan::Precision::kFloat32, 1e-5}, std::pair{plan::Precision::kFloat16, 1e-2},
                                      std::pair{plan::Precision::kBFloat16, 5e-2}})
    for (auto strategy : {runtime::KernelSpecialization::kNone, runtime::KernelSpecialization::kEager}) {
      SCOPED_TRACE(str(plan::precision_name(precision), " ", spec_name(strategy)));
      expect_op_matches_reference(net, op, runs, precision, strategy, tolerance, bound, /*exact_integers=*/true);
    }
}

// What the tests above build, made without a GPU: the control flow stays,
// its subgraphs are built (memory plans beside them), and the GPU runs every
// node, also after a round trip through the plan file.
TEST(GpuControlFlow, PlansOfControlFlowOnDataRunEveryNodeOnTheGpu) {
  builder::BuildOptions bounded;
  bounded.default_data_dependent_bound = kTripBound;
  std::vector<std::pair<ir::Network, std::vector<std::string>>> nets;
  nets.push_back({if_on_data(5), {"then_branch", "else_branch"}});
  nets.push_back({loop_on_data(5), {"body"}});
  nets.push_back({scan_on_length(5, 0), {"body"}});
  nets.push_back({scan_on_length(5, 1), {"body"}});
  nets.push_back({batched_scan(5), {"body"}});
  nets.push_back({nested_on_data(5), {"body"}});
  for (auto& [net, graphs] : nets) {
    builder::BuildOptions options = bounded;
    for (ir::ValueId id : net.inputs()) {
      std::vector<int64_t> lo, hi;
      for (const Dim& d : net.value(id).shape) {
        lo.push_back(d.is_constant() ? d.constant() : 0);
        hi.push_back(d.is_constant() ? d.constant() : 16);
      }
      builder::add_input_profile(net, net.value(id).name, lo, hi, hi, options);
    }
    plan::Plan p = builder::build(net, options);
    auto flow = std::find_if(p.network.nodes().begin(), p.network.nodes().end(),
                             [](const ir::Node& n) { return ir::family_of(n.op) == ir::OpFamily::kControlFlow; });
    ASSERT_NE(flow, p.network.nodes().end()) << ir::dump_network(p.network);
    for (const std::string& g : graphs) EXPECT_TRUE(flow->attrs.has(g + "_memory")) << g;
    std::string bytes = plan::serialize(p);
    plan::Plan back = plan::deserialize(Buffer::copy_of(bytes.data(), bytes.size()), "round trip");
    for (const plan::Plan* plan : {&p, &back})
      for (const runtime::NodeSupport& s : runtime::gpu_support(*plan)) EXPECT_TRUE(s.supported) << s.node << ": " << s.reason;
  }
  // A scan axis other than the first reaches the GPU through Transposes.
  plan::Plan moved = builder::build(scan_on_length(5, 1), [&] {
    builder::BuildOptions o;
    builder::add_input_profile(scan_on_length(5, 1), "xs", {5, 1}, {5, 8}, {5, 16}, o);
    builder::add_input_profile(scan_on_length(5, 1), "ys", {5, 1}, {5, 8}, {5, 16}, o);
    return o;
  }());
  for (const ir::Node& n : moved.network.nodes()) {
    if (n.op == OpKind::kScan) EXPECT_EQ(n.attrs.get_ints("scan_input_axes"), (std::vector<int64_t>{0, 0}));
  }
}

// A Loop whose trip count is data and that has scan outputs needs a bound for them, and says so at build.
TEST(GpuControlFlow, ScanOutputsOfADataTripCountNeedABound) {
  try {
    builder::build(loop_on_data(3), {});
    ADD_FAILURE() << "built";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--data-dependent-bound trace"), std::string::npos) << e.what();
  }
}

// A size data decides inside a subgraph (a Range up to the iteration number)
// takes its bound by its tensor's name, as one outside does; a name no graph
// has stays an error.
TEST(GpuControlFlow, BoundsNameTensorsInsideSubgraphs) {
  ir::Network net;
  ValueId m = net.add_input("M", i64, {});
  ValueId total = net.add_input("total", i64, {});
  auto body = subgraph({{i64, {}}, {boolean, {}}, {i64, {}}}, [](ir::Network& g, const std::vector<ValueId>& in) {
    ValueId steps = g.add_op1(OpKind::kRange, {scalar(g, "zero", i64, 0), in[0], scalar(g, "one", i64, 1)}, {}, "steps");
    ValueId sum = g.add_op1(OpKind::kReduceSum, {steps}, attrs({{"keepdims", int64_t(0)}}));
    return std::vector<ValueId>{in[1], g.add_op1(OpKind::kAdd, {in[2], sum})};
  });
  net.add_output(net.add_op1(OpKind::kLoop, {m, ir::kNoValue, total}, attrs({{"body", body}}), "loop"));
  net.finalize();
  try {
    builder::build(net, {});
    ADD_FAILURE() << "built without a bound for the Range";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("node 'loop' (Loop), subgraph 'body'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--data-dependent-bound steps_out_0=N"), std::string::npos) << e.what();
  }
  builder::BuildOptions options;
  options.data_dependent_bounds["steps_out_0"] = 16;
  plan::Plan p = builder::build(net, options);
  for (const runtime::NodeSupport& n : runtime::gpu_support(p)) EXPECT_TRUE(n.supported) << n.node << ": " << n.reason;
  options.data_dependent_bounds["nowhere"] = 16;
  EXPECT_THROW(builder::build(net, options), Error);
}

TEST(GpuControlFlow, IfOnDataTakesEitherBranchOnOneContext) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(11);
  for (int64_t w : {1, 7, 33}) {
    SCOPED_TRACE(str("width ", w));
    std::vector<Feeds> runs;
    for (auto [rows, taken] : {std::pair<int64_t, bool>{7, true}, {7, false}, {1, false}, {1, true}, {1031, false}, {33, true}})
      runs.push_back({{"x", random_tensor(f32, {rows, w}, rng, -2, 2)}, {"c", flag(taken)}, {"bias", random_tensor(f32, {w}, rng, -1, 1)}});
    expect_control_flow_matches(if_on_data(w), OpKind::kIf, runs);
  }
}

TEST(GpuControlFlow, LoopOfDataTripsStopsByItsCondition) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(12);
  for (int64_t w : {1, 7, 1000}) {
    SCOPED_TRACE(str("width ", w));
    std::vector<Feeds> runs;
    // (M, go, stop): no iteration at all, one, stopped by the condition after 3, all 30, none as go is false.
    for (auto [m, go, stop] : {std::tuple<int64_t, bool, int64_t>{0, true, 5}, {1, true, 10}, {6, true, 3}, {30, true, 100}, {9, false, 100}})
      runs.push_back({{"M", int64s({}, {m})}, {"go", flag(go)}, {"acc", random_tensor(f32, {w}, rng, -1, 1)},
                      {"count", int64s({}, {0})}, {"bias", random_tensor(f32, {w}, rng, -1, 1)}, {"stop", int64s({}, {stop})}});
    expect_control_flow_matches(loop_on_data(w), OpKind::kLoop, runs, kTripBound);
  }
}

TEST(GpuControlFlow, ScanOverALengthTheShapesTell) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(13);
  for (int64_t axis : {0, 1})
    for (int64_t w : {1, 33}) {
      SCOPED_TRACE(str("axis ", axis, ", width ", w));
      std::vector<Feeds> runs;
      for (int64_t length : {7, 1, 0, 33}) {
        std::vector<int64_t> dims = axis == 0 ? std::vector<int64_t>{length, w} : std::vector<int64_t>{w, length};
        runs.push_back({{"s", random_tensor(f32, {w}, rng, -1, 1)}, {"steps", int64s({}, {3})},
                        {"xs", random_tensor(f32, dims, rng, -1, 1)}, {"ys", random_tensor(f32, dims, rng, -1, 1)}});
      }
      expect_control_flow_matches(scan_on_length(w, axis), OpKind::kScan, runs);
    }
}

TEST(GpuControlFlow, BatchedScanRunsEachBatchEntry) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(14);
  std::vector<Feeds> runs;
  for (auto [batch, length] : {std::pair<int64_t, int64_t>{3, 5}, {1, 1}, {2, 33}, {4, 0}})
    runs.push_back({{"s", random_tensor(f32, {batch, 7}, rng, -1, 1)}, {"xs", random_tensor(f32, {batch, length, 7}, rng, -1, 1)}});
  expect_control_flow_matches(batched_scan(7), OpKind::kScan, runs);
}

TEST(GpuControlFlow, NestedControlFlowOnData) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(15);
  std::vector<Feeds> runs;
  for (int64_t m : {5, 0, 1, 12})
    runs.push_back({{"M", int64s({}, {m})}, {"acc", random_tensor(f32, {33}, rng, -1, 1)}, {"x", random_tensor(f32, {33}, rng, -1, 1)}});
  expect_control_flow_matches(nested_on_data(33), OpKind::kLoop, runs, kTripBound);
}

// More iterations than the scan output's bound: an error naming the node and
// the tensor to bound, never a write past its memory.
TEST(GpuControlFlow, ScanOutputPastItsBoundIsAnError) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(16);
  ir::Network net = loop_on_data(4);
  Feeds feeds{{"M", int64s({}, {9})}, {"go", flag(true)}, {"acc", random_tensor(f32, {4}, rng)}, {"count", int64s({}, {0})},
              {"bias", random_tensor(f32, {4}, rng)}, {"stop", int64s({}, {100})}};
  builder::BuildOptions options;
  options.data_dependent_bounds[net.value(net.outputs()[2]).name] = 6;  // the scan output, through its Identity
  auto engine = runtime::Engine::create(builder::build(net, options));
  auto context = engine->create_context();
  try {
    runtime::run_with_host_tensors(*context, *engine, feeds);
    ADD_FAILURE() << "ran 9 iterations into memory for 6";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("node 'loop' (Loop)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--data-dependent-bound trace"), std::string::npos) << e.what();
  }
  feeds["M"] = int64s({}, {6});  // the context runs on after the error
  expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, feeds), reference::run(net, feeds), 1e-5, true);
}

// Such an engine enqueues with waits for the GPU: never capturable, and its
// graph stats count the calls it ran without a graph.
TEST(GpuControlFlow, EnginesOfControlFlowOnDataSayTheyAreNotCapturable) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(17);
  ir::Network net = if_on_data(5);
  builder::BuildOptions options;
  builder::add_input_profile(net, "x", {1, 5}, {4, 5}, {8, 5}, options);
  runtime::RuntimeConfig config;
  config.cuda_graph_strategy = runtime::CudaGraphStrategy::kWholeGraphCapture;
  auto engine = runtime::Engine::create(builder::build(net, options), config);
  auto context = engine->create_context();
  Feeds feeds{{"x", random_tensor(f32, {4, 5}, rng)}, {"c", flag(false)}, {"bias", random_tensor(f32, {5}, rng)}};
  expect_outputs_close(runtime::run_with_host_tensors(*context, *engine, feeds), reference::run(net, feeds), 1e-5);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  EXPECT_FALSE(context->is_stream_capturable(stream));
  EXPECT_NE(context->capture_obstacle(stream).find("node 'if' (If) decides by data what runs"), std::string::npos)
      << context->capture_obstacle(stream);
  cudaStreamDestroy(stream);
  runtime::ExecutionContext::GraphStats stats = context->graph_stats();
  EXPECT_EQ(stats.graphs, 0);
  EXPECT_EQ(stats.fallbacks["data-dependent shapes"], stats.calls);
}

// ONNX's AffineGrid expanded into its function body (write_expanded_models.py
// writes it as onnx's node tests do): the import reads in place the If on
// align_corners whose branch does not import alone, and `kiln build` decides
// the Ifs on the size input's length, so the plan holds no If; the grid's
// sizes come from the size input's values, read back stage by stage. Sizes
// 1 to 33 (every size is a data-dependent dim bounded by the largest, so the
// arena grows with its fourth power), generic and shape-specialized kernels,
// float32, float16 and bfloat16 thetas. Batches of 2 and more: the body
// squeezes theta's rows without axes, which drops a batch of 1 too (the
// reference refuses it, as ONNX's own runtime would). The 3-D path with
// align_corners 1 decides an If whose branches differ in rank by D's value:
// refused, saying so.
TEST(GpuControlFlow, ExpandedAffineGridMatchesReference) {
  KILN_REQUIRE_GPU();
  std::mt19937 rng(41);
  for (int64_t spatial : {2, 3})
    for (int64_t align : {0, 1})
      for (DType dtype : {f32, DType::kFloat16, DType::kBFloat16}) {
        std::string path = str(KILN_EXPANDED_MODELS, "/affine_grid_", spatial, "d_align", align, "_", dtype_name(dtype), ".onnx");
        SCOPED_TRACE(path);
        if (spatial == 3 && align == 1) {
          try {
            onnx::load_model(path);
            ADD_FAILURE() << "loaded";
          } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("a data-dependent rank"), std::string::npos) << e.what();
          }
          continue;
        }
        ir::Network net = onnx::load_model(path);
        const std::vector<std::vector<int64_t>> sizes =
            spatial == 2 ? std::vector<std::vector<int64_t>>{{2, 3, 7, 33}, {2, 1, 1, 1}, {3, 1, 33, 7}}
                         : std::vector<std::vector<int64_t>>{{2, 1, 7, 5, 33}, {2, 1, 1, 1, 1}, {3, 2, 3, 33, 7}};
        std::vector<Feeds> runs;
        for (const auto& size : sizes)
          runs.push_back({{"theta", random_tensor(dtype, {size[0], spatial, spatial + 1}, rng)}, {"size", int64s({spatial + 2}, size)}});
        builder::BuildOptions options;
        options.default_data_dependent_bound = 33;
        add_profiles_spanning(net, runs, options);
        plan::Plan plan = builder::build(net, options);
        for (const ir::Node& node : plan.network.nodes()) EXPECT_NE(node.op, OpKind::kIf) << node.name;
        for (auto strategy : {runtime::KernelSpecialization::kNone, runtime::KernelSpecialization::kEager}) {
          SCOPED_TRACE(spec_name(strategy));
          expect_op_matches_reference(net, OpKind::kRange, runs, plan::Precision::kFloat32, strategy, rounding_tolerance(dtype), 33);
        }
      }
}

}  // namespace
}  // namespace kiln::testing
