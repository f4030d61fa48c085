// Control flow on the GPU: `kiln build` inlines an If whose condition is a
// shape comparison and unrolls a Loop and a Scan of constant iteration counts;
// the plans hold no control-flow node, every node runs on the GPU, and the
// results match the reference interpreter running the subgraphs.
#include <gtest/gtest.h>

#include <functional>

#include "gpu_test_util.h"

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

}  // namespace
}  // namespace kiln::testing
