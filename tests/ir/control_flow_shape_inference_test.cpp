// Shape inference of If, Loop and Scan: types from their subgraphs inferred
// with the node's inputs, dims that only data tells as fresh symbols, and
// errors naming the node.
#include <gtest/gtest.h>

#include <functional>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "inference_test_util.h"

namespace kiln::ir {
namespace {

using inference_test::attrs;

constexpr DType f32 = DType::kFloat32;

Subgraph subgraph(const std::vector<std::pair<DType, Shape>>& inputs,
                  const std::function<std::vector<ValueId>(Network&, const std::vector<ValueId>&)>& make) {
  auto g = std::make_shared<Network>();
  std::vector<ValueId> in;
  for (auto& [dtype, shape] : inputs) in.push_back(g->add_input(str("b", in.size()), dtype, shape));
  for (ValueId v : make(*g, in)) g->add_output(v);
  g->finalize();
  return g;
}

TensorData int64_scalar(int64_t v) {
  TensorData t;
  t.dtype = DType::kInt64;
  t.data = Buffer::copy_of(&v, sizeof(v));
  return t;
}

// body(i, cond, x [n]) -> (cond, x + x, x): doubling, each step's x a slice.
Subgraph doubling_body() {
  return subgraph({{DType::kInt64, {}}, {DType::kBool, {}}, {f32, {Dim::symbol("n")}}}, [](Network& g, const std::vector<ValueId>& in) {
    return std::vector<ValueId>{in[1], g.add_op1(OpKind::kAdd, {in[2], in[2]}), in[2]};
  });
}

TEST(ControlFlowShapes, LoopScanOutputsCountTripsWhereTheyCan) {
  for (bool with_condition : {false, true}) {
    Network net;
    ValueId x = net.add_input("x", f32, {Dim::symbol("w")});
    ValueId cond = with_condition ? net.add_input("c", DType::kBool, {}) : kNoValue;
    ValueId trips = net.add_weight("M", int64_scalar(5));
    auto out = net.add_op(OpKind::kLoop, {trips, cond, x}, attrs({{"body", doubling_body()}}), 2, "loop");
    net.add_output(out[0]);
    net.add_output(out[1]);
    net.finalize();
    EXPECT_EQ(net.value(out[0]).shape, (Shape{Dim::symbol("w")}));  // carried: its shape stays
    const Shape& trace = net.value(out[1]).shape;
    ASSERT_EQ(trace.size(), 2u);
    EXPECT_EQ(trace[1], Dim::symbol("w"));
    if (!with_condition) EXPECT_EQ(trace[0], Dim(5));
    else EXPECT_TRUE(net.data_dependent_symbols().count(trace[0].to_string())) << trace[0].to_string();  // it may stop early
  }
}

TEST(ControlFlowShapes, ScanOutputsInsertTheLengthAtTheirAxis) {
  Network net;
  ValueId init = net.add_input("init", f32, {Dim(2)});
  ValueId xs = net.add_input("xs", f32, {Dim(2), Dim::symbol("t")});
  auto body = subgraph({{f32, {Dim(2)}}, {f32, {Dim(2)}}}, [](Network& g, const std::vector<ValueId>& in) {
    ValueId sum = g.add_op1(OpKind::kAdd, {in[0], in[1]});
    return std::vector<ValueId>{sum, sum};
  });
  auto out = net.add_op(OpKind::kScan, {init, xs},
                        attrs({{"body", body}, {"num_scan_inputs", int64_t(1)}, {"scan_input_axes", std::vector<int64_t>{-1}},
                               {"scan_output_axes", std::vector<int64_t>{1}}}),
                        2, "scan");
  net.add_output(out[0]);
  net.add_output(out[1]);
  net.finalize();
  EXPECT_EQ(net.value(out[1]).shape, (Shape{Dim(2), Dim::symbol("t")}));
}

TEST(ControlFlowShapes, ErrorsNameTheNodeAndTheSubgraphInput) {
  Network net;
  ValueId x = net.add_input("x", DType::kInt32, {Dim(3)});
  ValueId trips = net.add_weight("M", int64_scalar(2));
  auto out = net.add_op(OpKind::kLoop, {trips, kNoValue, x}, attrs({{"body", doubling_body()}}), 2, "loop");
  net.add_output(out[0]);
  try {
    net.finalize();
    ADD_FAILURE() << "finalized";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kTypeError);
    EXPECT_NE(std::string(e.what()).find("node 'loop' (Loop): subgraph 'body' input 2 ('b2') is float32; the node gives it int32"),
              std::string::npos)
        << e.what();
  }
  Network endless;
  ValueId y = endless.add_input("y", f32, {Dim(3)});
  endless.add_output(endless.add_op(OpKind::kLoop, {kNoValue, kNoValue, y}, attrs({{"body", doubling_body()}}), 2, "loop")[0]);
  EXPECT_THROW(endless.finalize(), Error);
}

}  // namespace
}  // namespace kiln::ir
