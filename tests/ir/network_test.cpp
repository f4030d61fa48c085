#include <gtest/gtest.h>

#include "kiln/error.h"
#include "kiln/ir/network.h"

namespace kiln::ir {
namespace {

TensorData float_weight(std::vector<int64_t> dims, float value = 0.5f) {
  TensorData t;
  t.dims = dims;
  std::vector<float> v(size_t(checked_numel(dims)), value);
  t.data = Buffer::copy_of(v.data(), v.size() * sizeof(float));
  return t;
}

// Expects finalize() to throw with `code` and a message containing `needle`.
void expect_finalize_error(Network& net, ErrorCode code, const std::string& needle) {
  try {
    net.finalize();
    FAIL() << "finalize() did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Network, BuildsAnMlpWithSymbolicBatch) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(64)});
  ValueId w = net.add_weight("w", float_weight({64, 32}));
  ValueId b = net.add_weight("b", float_weight({32}));
  ValueId h = net.add_op1(OpKind::kMatMul, {x, w});
  ValueId y = net.add_op1(OpKind::kAdd, {h, b});
  ValueId z = net.add_op1(OpKind::kRelu, {y});
  net.add_output(z);
  net.set_dim_range("batch", {1, 4, 16});
  net.finalize();
  EXPECT_EQ(shape_to_string(net.value(z).shape), "[batch,32]");
  EXPECT_EQ(net.value(z).dtype, DType::kFloat32);
  EXPECT_EQ(net.parameter_count(), 64 * 32 + 32);
  std::string dump = dump_network(net);
  EXPECT_NE(dump.find("MatMul(x, w)"), std::string::npos) << dump;
  EXPECT_NE(dump.find("range  batch in [1, 16], opt 4"), std::string::npos) << dump;
}

TEST(Network, SortsNodesAddedOutOfOrder) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(4)});
  ValueId mid = net.add_value("mid");
  ValueId out = net.add_value("out");
  net.add_node(Node{"second", OpKind::kExp, {mid}, {out}, {}});
  net.add_node(Node{"first", OpKind::kRelu, {x}, {mid}, {}});
  net.add_output(out);
  net.finalize();
  EXPECT_EQ(net.nodes()[0].name, "first");
  EXPECT_EQ(net.nodes()[1].name, "second");
}

TEST(Network, RejectsCycles) {
  Network net;
  ValueId a = net.add_value("a"), b = net.add_value("b");
  net.add_node(Node{"n1", OpKind::kRelu, {a}, {b}, {}});
  net.add_node(Node{"n2", OpKind::kRelu, {b}, {a}, {}});
  net.add_output(b);
  expect_finalize_error(net, ErrorCode::kInvalidModel, "cycle");
}

TEST(Network, RejectsDanglingInputsNamingNodeAndTensor) {
  Network net;
  ValueId ghost = net.add_value("ghost");
  ValueId y = net.add_op1(OpKind::kRelu, {ghost}, {}, "reader");
  net.add_output(y);
  expect_finalize_error(net, ErrorCode::kInvalidModel, "node 'reader' reads tensor 'ghost'");
}

TEST(Network, RejectsWrongArity) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(4)});
  net.add_output(net.add_op1(OpKind::kAdd, {x}, {}, "lonely_add"));
  expect_finalize_error(net, ErrorCode::kInvalidModel, "'lonely_add' (Add) has 1 inputs; expected 2");
}

TEST(Network, RejectsDtypeMismatch) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(4)});
  ValueId i = net.add_input("i", DType::kInt64, {Dim(4)});
  net.add_output(net.add_op1(OpKind::kAdd, {x, i}, {}, "mixed"));
  expect_finalize_error(net, ErrorCode::kTypeError, "float32 and int64");
}

TEST(Network, RejectsRankMismatch) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(4)});
  ValueId w = net.add_weight("w", float_weight({3, 3}));
  net.add_output(net.add_op1(OpKind::kGemm, {x, w}, {}, "gemm"));
  expect_finalize_error(net, ErrorCode::kShapeError, "rank 1");
}

TEST(Network, RejectsIncompatibleBroadcast) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(4), Dim(3)});
  ValueId y = net.add_input("y", DType::kFloat32, {Dim(5)});
  net.add_output(net.add_op1(OpKind::kMul, {x, y}, {}, "mul"));
  expect_finalize_error(net, ErrorCode::kShapeError, "do not broadcast");
}

TEST(Network, RejectsUnknownAndMistypedAttributes) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(4)});
  Attributes bad;
  bad.set("beta", 2.0);
  net.add_output(net.add_op1(OpKind::kLeakyRelu, {x}, bad, "leaky"));
  expect_finalize_error(net, ErrorCode::kUnsupported, "attribute 'beta'");

  Network net2;
  ValueId x2 = net2.add_input("x", DType::kFloat32, {Dim(4)});
  Attributes mistyped;
  mistyped.set("alpha", std::string("big"));
  net2.add_output(net2.add_op1(OpKind::kLeakyRelu, {x2}, mistyped, "leaky"));
  expect_finalize_error(net2, ErrorCode::kInvalidModel, "is string; expected float");
}

TEST(Network, RejectsDuplicateNamesAndDoubleWrites) {
  Network net;
  net.add_input("x", DType::kFloat32, {Dim(4)});
  EXPECT_THROW(net.add_input("x", DType::kFloat32, {Dim(4)}), Error);
  ValueId x = *net.find_value("x");
  EXPECT_THROW(net.add_node(Node{"overwrite", OpKind::kRelu, {x}, {x}, {}}), Error);
}

TEST(Network, RejectsWeightsShorterThanTheirDims) {
  Network net;
  TensorData t = float_weight({4});
  t.dims = {5};
  EXPECT_THROW(net.add_weight("w", t), Error);
}

TEST(Network, RejectsBadRanges) {
  Network net;
  EXPECT_THROW(net.set_dim_range("n", {4, 2, 8}), Error);
  EXPECT_THROW(net.set_dim_range("n", {-1, 2, 8}), Error);
}

TEST(Network, NeedsOutputs) {
  Network net;
  net.add_input("x", DType::kFloat32, {Dim(4)});
  expect_finalize_error(net, ErrorCode::kInvalidModel, "no outputs");
}

}  // namespace
}  // namespace kiln::ir
