// The reference interpreter on inputs whose concrete sizes the symbolic
// network could not check: overflowing outputs and parameters that do not fit
// must fail in shape inference, before any kernel runs, naming the node.
#include <gtest/gtest.h>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/reference.h"

namespace kiln::reference {
namespace {

using ir::Dim;
using ir::OpKind;

const Dim M = Dim::symbol("M"), K = Dim::symbol("K"), N = Dim::symbol("N");

void expect_run_error(const ir::Network& net, const std::map<std::string, Tensor>& inputs, ErrorCode code,
                      std::vector<std::string> needles) {
  try {
    run(net, inputs);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "no '" << n << "' in: " << e.what();
  }
}

Tensor zeros(std::vector<int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return make_tensor(DType::kFloat32, dims, std::vector<double>(size_t(n), 0.0));
}

TEST(ReferenceLimits, GemmOfEmptyOperandsWithAHugeOutput) {
  // A[2^32, 0] . B[0, 2^32]: no data at all, 2^64 output elements.
  ir::Network net;
  ir::ValueId a = net.add_input("a", DType::kFloat32, {M, K});
  ir::ValueId b = net.add_input("b", DType::kFloat32, {K, N});
  net.add_output(net.add_op1(OpKind::kGemm, {a, b}, {}, "gemm"));
  net.finalize();
  const int64_t big = int64_t(1) << 32;
  expect_run_error(net, {{"a", zeros({big, 0})}, {"b", zeros({0, big})}}, ErrorCode::kShapeError,
                   {"node 'gemm'", "[4294967296,4294967296]", "elements"});
  auto out = run(net, {{"a", zeros({3, 0})}, {"b", zeros({0, 2})}});  // small and empty: fine
  EXPECT_EQ(out[0].dims, (std::vector<int64_t>{3, 2}));
}

TEST(ReferenceLimits, ConvWhosePadsOverflowTheOutput) {
  // x[N,1,1], w[4,1,1], pads [2^62, 0]: output [N, 4, 2^62+1].
  ir::Network net;
  ir::ValueId x = net.add_input("x", DType::kFloat32, {N, Dim(1), Dim(1)});
  ir::Attributes a;
  a.set("pads", std::vector<int64_t>{int64_t(1) << 62, 0});
  net.add_output(net.add_op1(OpKind::kConv, {x, net.add_weight("w", zeros({4, 1, 1}))}, a, "conv"));
  net.finalize();
  expect_run_error(net, {{"x", zeros({1, 1, 1})}}, ErrorCode::kShapeError, {"node 'conv'", "4611686018427387905"});
}

TEST(ReferenceLimits, LayerNormalizationParametersAgainstConcreteDims) {
  // D is symbolic, so finalize accepts the weights; the run knows D = 4.
  struct Case {
    std::vector<int64_t> scale, bias;
    const char* tensor;
  };
  for (Case k : {Case{{3, 4}, {4}, "'scale'"}, Case{{3}, {4}, "'scale'"}, Case{{4}, {0}, "'bias'"}}) {
    ir::Network net;
    ir::ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim::symbol("D")});
    ir::ValueId s = net.add_weight("scale", zeros(k.scale)), b = net.add_weight("bias", zeros(k.bias));
    net.add_output(net.add_op1(OpKind::kLayerNormalization, {x, s, b}, {}, "ln"));
    if (k.scale.size() > 1) {  // more dims than the normalized ones: no D makes it fit
      EXPECT_THROW(net.finalize(), Error);
      continue;
    }
    net.finalize();
    expect_run_error(net, {{"x", zeros({2, 4})}}, ErrorCode::kShapeError, {"node 'ln'", k.tensor});
  }
}

TEST(ReferenceLimits, PReluSlopeAgainstConcreteDims) {
  ir::Network net;
  ir::ValueId x = net.add_input("x", DType::kFloat32, {N, Dim::symbol("C")});
  net.add_output(net.add_op1(OpKind::kPRelu, {x, net.add_weight("slope", zeros({3}))}, {}, "prelu"));
  net.finalize();
  expect_run_error(net, {{"x", zeros({2, 1})}}, ErrorCode::kShapeError, {"node 'prelu'", "'slope'"});
  EXPECT_NO_THROW(run(net, {{"x", zeros({2, 3})}}));
}

}  // namespace
}  // namespace kiln::reference
