// ONNX If, Loop and Scan through the layers: import (subgraphs, outer-scope
// reads made inputs), the reference interpreter's values, plans holding
// subgraphs, and `kiln build` inlining an If it can decide and unrolling a
// Loop or Scan it can count.
#include <gtest/gtest.h>

#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/onnx.h"
#include "kiln/plan.h"
#include "kiln/reference.h"
#include "model_builder.h"

namespace kiln::onnx {
namespace {

using kiln::testing::ModelBuilder;
using ::onnx::TensorProto;

constexpr int kFloat = TensorProto::FLOAT;

void value_info(::google::protobuf::RepeatedPtrField<::onnx::ValueInfoProto>* list, const std::string& name, int elem_type,
                const std::vector<int64_t>& dims) {
  auto* v = list->Add();
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(elem_type);
  auto* shape = t->mutable_shape();
  for (int64_t d : dims) shape->add_dim()->set_dim_value(d);
}

::onnx::NodeProto* add_node(::onnx::GraphProto& g, const std::string& op, const std::vector<std::string>& in,
                            const std::vector<std::string>& out) {
  auto* n = g.add_node();
  n->set_op_type(op);
  n->set_name(op + "_" + std::to_string(g.node_size()));
  for (auto& i : in) n->add_input(i);
  for (auto& o : out) n->add_output(o);
  return n;
}

::onnx::GraphProto& graph_attr(::onnx::NodeProto& node, const std::string& name) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::GRAPH);
  a->mutable_g()->set_name(name);
  return *a->mutable_g();
}

std::vector<double> values_of(const reference::Tensor& t) { return ir::read_doubles(t); }

int count_op(const ir::Network& net, ir::OpKind op) {
  int n = 0;
  for (const ir::Node& node : net.nodes()) n += node.op == op;
  return n;
}

// x [N, 4]; If(Shape(x)[1] == 4) then Relu(x) else Neg(x), the branches reading x from the outer graph.
ModelBuilder if_on_shape(int opset = 13) {
  ModelBuilder m(opset);
  m.input("x", kFloat, {"N", "4"});
  m.int_initializer("one", {}, {1});
  m.int_initializer("four", {}, {4});
  m.node("Shape", {"x"}, {"shape"});
  m.node("Gather", {"shape", "one"}, {"width"});
  m.node("Equal", {"width", "four"}, {"wide"});
  auto& node = m.node("If", {"wide"}, {"y"});
  auto& then_g = graph_attr(node, "then_branch");
  add_node(then_g, "Relu", {"x"}, {"r"});
  value_info(then_g.mutable_output(), "r", kFloat, {});
  auto& else_g = graph_attr(node, "else_branch");
  add_node(else_g, "Neg", {"x"}, {"n"});
  value_info(else_g.mutable_output(), "n", kFloat, {});
  m.output("y");
  return m;
}

TEST(OnnxControlFlow, IfReadsOuterValuesAsInputs) {
  ir::Network net = load_model_bytes(if_on_shape().bytes());
  ASSERT_EQ(count_op(net, ir::OpKind::kIf), 1);
  const ir::Node& node = net.nodes().back();
  ASSERT_EQ(node.inputs.size(), 2u);  // the condition, then x
  EXPECT_EQ(net.value(node.inputs[1]).name, "x");
  const ir::Network* then_branch = node.attrs.get_graph("then_branch");
  ASSERT_NE(then_branch, nullptr);
  ASSERT_EQ(then_branch->inputs().size(), 1u);
  EXPECT_EQ(then_branch->value(then_branch->inputs()[0]).name, "x");
  // The condition is a comparison of a static dim: inference takes the then branch's shape.
  EXPECT_EQ(ir::shape_to_string(net.value(net.outputs()[0]).shape), ir::shape_to_string({ir::Dim::symbol("N"), ir::Dim(4)}));

  reference::Tensor x = reference::make_tensor(DType::kFloat32, {2, 4}, {-1, 2, -3, 4, 5, -6, 7, -8});
  std::vector<reference::Tensor> out = reference::run(net, {{"x", x}});
  EXPECT_EQ(values_of(out[0]), (std::vector<double>{0, 2, 0, 4, 5, 0, 7, 0}));
}

TEST(OnnxControlFlow, KilnBuildInlinesAnIfOnAShapeComparison) {
  ir::Network net = load_model_bytes(if_on_shape().bytes());
  builder::BuildOptions options;
  builder::add_input_profile(net, "x", {1, 4}, {2, 4}, {8, 4}, options);
  plan::Plan p = builder::build(net, options, "if");
  EXPECT_EQ(count_op(p.network, ir::OpKind::kIf), 0) << ir::dump_network(p.network);
  reference::Tensor x = reference::make_tensor(DType::kFloat32, {3, 4}, {-1, 2, -3, 4, 5, -6, 7, -8, 9, -1, 0, 2});
  EXPECT_EQ(values_of(reference::run(p.network, {{"x", x}})[0]), values_of(reference::run(net, {{"x", x}})[0]));
}

// An If on data stays in the plan: its subgraphs survive serialization, and an
// output whose branches disagree on a dim gets a dim of its own.
TEST(OnnxControlFlow, PlansHoldSubgraphs) {
  ModelBuilder m(13);
  m.input("x", kFloat, {"3"});
  m.input("c", TensorProto::BOOL, {});
  auto& node = m.node("If", {"c"}, {"y"});
  auto& then_g = graph_attr(node, "then_branch");
  add_node(then_g, "Relu", {"x"}, {"r"});
  value_info(then_g.mutable_output(), "r", kFloat, {});
  auto& else_g = graph_attr(node, "else_branch");
  add_node(else_g, "Concat", {"x", "x"}, {"n"})->add_attribute()->set_name("axis");
  else_g.mutable_node(0)->mutable_attribute(0)->set_type(::onnx::AttributeProto::INT);
  value_info(else_g.mutable_output(), "n", kFloat, {});
  m.output("y");
  ir::Network net = load_model_bytes(m.bytes());
  const ir::Dim& d = net.value(net.outputs()[0]).shape.at(0);
  EXPECT_FALSE(d.is_constant());
  EXPECT_TRUE(net.data_dependent_symbols().count(d.to_string())) << d.to_string();

  builder::BuildOptions options;
  options.default_data_dependent_bound = 6;
  plan::Plan p = builder::build(net, options, "if");
  EXPECT_EQ(count_op(p.network, ir::OpKind::kIf), 1);
  plan::Plan back = plan::deserialize(Buffer::copy_of(plan::serialize(p).data(), plan::serialize(p).size()), "round trip");
  EXPECT_EQ(back.format_version, 5u);
  EXPECT_EQ(ir::dump_network(back.network), ir::dump_network(p.network));
  reference::Tensor x = reference::make_tensor(DType::kFloat32, {3}, {-1, 2, -3});
  for (bool c : {true, false}) {
    std::map<std::string, reference::Tensor> in{{"x", x}, {"c", reference::make_tensor(DType::kBool, {}, {double(c)})}};
    EXPECT_EQ(values_of(reference::run(back.network, in)[0]),
              (c ? std::vector<double>{0, 2, 0} : std::vector<double>{-1, 2, -3, -1, 2, -3}));
  }
}

// for i in 0..M: acc = acc * 2 + w (w outer), scan output acc + i; no condition input: M trips.
ModelBuilder doubling_loop(int64_t trips) {
  ModelBuilder m(16);
  m.input("a", kFloat, {"2"});
  m.initializer("w", {2}, {1, -1});
  m.int_initializer("M", {}, {trips});
  auto& node = m.node("Loop", {"M", "", "a"}, {"acc", "trace"});
  auto& body = graph_attr(node, "body");
  value_info(body.mutable_input(), "i", TensorProto::INT64, {});
  value_info(body.mutable_input(), "cond_in", TensorProto::BOOL, {});
  value_info(body.mutable_input(), "acc_in", kFloat, {2});
  add_node(body, "Add", {"acc_in", "acc_in"}, {"twice"});
  add_node(body, "Add", {"twice", "w"}, {"acc_out"});
  add_node(body, "Cast", {"i"}, {"i_float"});
  auto* cast = body.mutable_node(2)->add_attribute();
  cast->set_name("to");
  cast->set_type(::onnx::AttributeProto::INT);
  cast->set_i(kFloat);
  add_node(body, "Add", {"acc_out", "i_float"}, {"slice"});
  add_node(body, "Identity", {"cond_in"}, {"cond_out"});
  for (const char* out : {"cond_out", "acc_out", "slice"}) value_info(body.mutable_output(), out, kFloat, {});
  m.output("acc");
  m.output("trace");
  return m;
}

TEST(OnnxControlFlow, LoopValuesAndUnrolling) {
  ir::Network net = load_model_bytes(doubling_loop(3).bytes());
  const ir::Node& node = net.nodes().back();
  ASSERT_EQ(node.op, ir::OpKind::kLoop);
  EXPECT_EQ(node.attrs.get_int("captured", -1), 1);  // w
  EXPECT_EQ(ir::shape_to_string(net.value(net.outputs()[1]).shape), ir::shape_to_string({ir::Dim(3), ir::Dim(2)}));
  reference::Tensor a = reference::make_tensor(DType::kFloat32, {2}, {1, 2});
  std::vector<reference::Tensor> out = reference::run(net, {{"a", a}});
  // acc: (1,2) -> (3,3) -> (7,5) -> (15,9); trace adds 0, 1, 2.
  EXPECT_EQ(values_of(out[0]), (std::vector<double>{15, 9}));
  EXPECT_EQ(values_of(out[1]), (std::vector<double>{3, 3, 8, 6, 17, 11}));

  plan::Plan p = builder::build(net, {}, "loop");
  EXPECT_EQ(count_op(p.network, ir::OpKind::kLoop), 0) << ir::dump_network(p.network);
  std::vector<reference::Tensor> built = reference::run(p.network, {{"a", a}});
  EXPECT_EQ(values_of(built[0]), values_of(out[0]));
  EXPECT_EQ(values_of(built[1]), values_of(out[1]));

  // Past the unrolling bound the Loop stays (for the CPU device).
  plan::Plan long_loop = builder::build(load_model_bytes(doubling_loop(65).bytes()), {}, "loop");
  EXPECT_EQ(count_op(long_loop.network, ir::OpKind::kLoop), 1);
}

// Scan-9 (axes, directions) and Scan-8 (batch dim): running sums.
ModelBuilder running_sum(int opset) {
  ModelBuilder m(opset);
  bool batched = opset < 9;
  m.input("init", kFloat, batched ? std::vector<std::string>{"1", "2"} : std::vector<std::string>{"2"});
  m.input("xs", kFloat, batched ? std::vector<std::string>{"1", "3", "2"} : std::vector<std::string>{"2", "3"});
  auto& node = m.node("Scan", batched ? std::vector<std::string>{"", "init", "xs"} : std::vector<std::string>{"init", "xs"},
                      {"sum", "sums"});
  ModelBuilder::attr(node, "num_scan_inputs", int64_t(1));
  if (!batched) {
    ModelBuilder::attr(node, "scan_input_axes", std::vector<int64_t>{-1});
    ModelBuilder::attr(node, "scan_input_directions", std::vector<int64_t>{1});
  }
  auto& body = graph_attr(node, "body");
  value_info(body.mutable_input(), "s", kFloat, {2});
  value_info(body.mutable_input(), "x", kFloat, {2});
  add_node(body, "Add", {"s", "x"}, {"s_out"});
  add_node(body, "Identity", {"s_out"}, {"y"});
  value_info(body.mutable_output(), "s_out", kFloat, {2});
  value_info(body.mutable_output(), "y", kFloat, {2});
  m.output("sum");
  m.output("sums");
  return m;
}

TEST(OnnxControlFlow, ScanValuesAndUnrolling) {
  ir::Network net = load_model_bytes(running_sum(11).bytes());
  reference::Tensor init = reference::make_tensor(DType::kFloat32, {2}, {0, 10});
  // xs [2, 3] scanned along its last axis, last column first: columns (3,6), (2,5), (1,4).
  reference::Tensor xs = reference::make_tensor(DType::kFloat32, {2, 3}, {1, 2, 3, 4, 5, 6});
  std::vector<reference::Tensor> out = reference::run(net, {{"init", init}, {"xs", xs}});
  EXPECT_EQ(values_of(out[0]), (std::vector<double>{6, 25}));
  EXPECT_EQ(out[1].dims, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(values_of(out[1]), (std::vector<double>{3, 16, 5, 21, 6, 25}));

  plan::Plan p = builder::build(net, {}, "scan");
  EXPECT_EQ(count_op(p.network, ir::OpKind::kScan), 0) << ir::dump_network(p.network);
  std::vector<reference::Tensor> built = reference::run(p.network, {{"init", init}, {"xs", xs}});
  EXPECT_EQ(values_of(built[0]), values_of(out[0]));
  EXPECT_EQ(values_of(built[1]), values_of(out[1]));

  ir::Network batched = load_model_bytes(running_sum(8).bytes());
  std::vector<reference::Tensor> b = reference::run(
      batched, {{"init", reference::make_tensor(DType::kFloat32, {1, 2}, {0, 10})},
                {"xs", reference::make_tensor(DType::kFloat32, {1, 3, 2}, {1, 2, 3, 4, 5, 6})}});
  EXPECT_EQ(values_of(b[0]), (std::vector<double>{9, 22}));
  EXPECT_EQ(b[1].dims, (std::vector<int64_t>{1, 3, 2}));
  EXPECT_EQ(values_of(b[1]), (std::vector<double>{1, 12, 4, 16, 9, 22}));
}

// x [1, 3]; If A on a comparison of shapes (Size(x) == 3) whose then_branch
// holds If B on Equal(rows, 1), rows (1) from Shape(x) in the graph around,
// B's branches of different ranks (a scalar 0.5, or x), as in ONNX's
// AffineGrid function body; A's then_branch adds B's output to x. Imported
// alone, A's then_branch cannot decide B; `on_data` makes B's condition the
// input c, which nothing decides before the run.
ModelBuilder nested_if_on_sizes(bool on_data) {
  ModelBuilder m(13);
  m.input("x", kFloat, {"1", "3"});
  m.input("c", TensorProto::BOOL, {});
  m.int_initializer("zero", {}, {0});
  m.int_initializer("one", {}, {1});
  m.int_initializer("three", {}, {3});
  m.initializer("half", {}, {0.5f});
  m.node("Shape", {"x"}, {"shape"});
  m.node("Gather", {"shape", "zero"}, {"rows"});
  m.node("Size", {"x"}, {"count"});
  m.node("Equal", {"count", "three"}, {"is_three"});
  auto& a = m.node("If", {"is_three"}, {"y"});
  auto& a_then = graph_attr(a, "then_branch");
  add_node(a_then, "Equal", {"rows", "one"}, {"single_row"});
  auto& b = *add_node(a_then, "If", {on_data ? "c" : "single_row"}, {"offset"});
  auto& b_then = graph_attr(b, "then_branch");
  add_node(b_then, "Identity", {"half"}, {"scalar"});
  value_info(b_then.mutable_output(), "scalar", kFloat, {});
  auto& b_else = graph_attr(b, "else_branch");
  add_node(b_else, "Identity", {"x"}, {"matrix"});
  value_info(b_else.mutable_output(), "matrix", kFloat, {});
  add_node(a_then, "Add", {"x", "offset"}, {"shifted"});
  value_info(a_then.mutable_output(), "shifted", kFloat, {});
  auto& a_else = graph_attr(a, "else_branch");
  add_node(a_else, "Neg", {"x"}, {"negated"});
  value_info(a_else.mutable_output(), "negated", kFloat, {});
  m.output("y");
  return m;
}

// A's then_branch is read in place (its nodes named under it), B then
// decided by the rows the shape gives; `kiln build` inlines B.
TEST(OnnxControlFlow, IfsDecidedByShapesAroundABranchAreReadInPlace) {
  ir::Network net = load_model_bytes(nested_if_on_sizes(false).bytes());
  ASSERT_EQ(count_op(net, ir::OpKind::kIf), 1) << ir::dump_network(net);
  for (const ir::Node& node : net.nodes())
    if (node.op == ir::OpKind::kIf) EXPECT_EQ(node.name, "If_4/then_branch/If_2");
  reference::Tensor x = reference::make_tensor(DType::kFloat32, {1, 3}, {1, -2, 3});
  std::map<std::string, reference::Tensor> in{{"x", x}, {"c", reference::make_tensor(DType::kBool, {}, {0})}};
  EXPECT_EQ(values_of(reference::run(net, in)[0]), (std::vector<double>{1.5, -1.5, 3.5}));

  builder::BuildOptions options;
  plan::Plan p = builder::build(net, options, "nested");
  EXPECT_EQ(count_op(p.network, ir::OpKind::kIf), 0) << ir::dump_network(p.network);
  EXPECT_EQ(values_of(reference::run(p.network, in)[0]), (std::vector<double>{1.5, -1.5, 3.5}));
}

// An If whose branches differ in rank and whose condition depends on data: an error saying so, naming the node.
TEST(OnnxControlFlow, IfOfDataWithBranchesOfDifferentRanksIsRefused) {
  try {
    load_model_bytes(nested_if_on_sizes(true).bytes());
    ADD_FAILURE() << "loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported) << e.what();
    for (const char* needle : {"node 'If_4/then_branch/If_2' (If)", "rank 0 in then_branch but 2 in else_branch", "a data-dependent rank"})
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(OnnxControlFlow, ErrorsNameTheNode) {
  ModelBuilder m = if_on_shape();
  // then_branch now makes two outputs, else_branch one.
  auto* then_g = m.graph().mutable_node(3)->mutable_attribute(0)->mutable_g();
  value_info(then_g->mutable_output(), "x", kFloat, {});
  try {
    load_model_bytes(m.bytes());
    ADD_FAILURE() << "loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("node 'If_3' (If)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("subgraph"), std::string::npos) << e.what();
  }
  // A subgraph reading a name no enclosing graph makes.
  ModelBuilder unknown = if_on_shape();
  unknown.graph().mutable_node(3)->mutable_attribute(1)->mutable_g()->mutable_node(0)->set_input(0, "nowhere");
  try {
    load_model_bytes(unknown.bytes());
    ADD_FAILURE() << "loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'nowhere'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::onnx
