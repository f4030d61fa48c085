// Hostile sizes and shapes: element counts that overflow, parameters that do
// not fit their op, attributes that are not numbers, and tiny models whose
// shape inference would take unbounded time or memory. Each must end in a
// kiln::Error naming the node, quickly.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>

#include "kiln/error.h"
#include "kiln/ir/attention.h"
#include "kiln/ir/limits.h"
#include "kiln/ir/network.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::ir {
namespace {

TensorData floats(std::vector<int64_t> dims) {
  TensorData t;
  t.dims = dims;
  t.data = Buffer::from_bytes(std::vector<std::byte>(size_t(checked_numel(dims)) * 4));
  return t;
}

TensorData ints(std::vector<int64_t> v, std::vector<int64_t> dims = {}) {
  TensorData t;
  t.dtype = DType::kInt64;
  t.dims = dims.empty() ? std::vector<int64_t>{int64_t(v.size())} : dims;
  t.data = Buffer::copy_of(v.data(), v.size() * sizeof(int64_t));
  return t;
}

// Sanitizer builds run several times slower.
#if defined(__SANITIZE_ADDRESS__)
constexpr double kSeconds = 20;
#else
constexpr double kSeconds = 2;
#endif

// finalize() must throw `code` with every needle in the message, within kSeconds.
void expect_finalize_error(Network& net, ErrorCode code, std::vector<std::string> needles) {
  auto start = std::chrono::steady_clock::now();
  try {
    net.finalize();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "no '" << n << "' in: " << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), kSeconds);
}

const int64_t kTwo32 = int64_t(1) << 32, kTwo62 = int64_t(1) << 62;

TEST(Limits, ElementCountAndByteSize) {
  EXPECT_EQ(checked_element_count({2, 3, 4}, "t"), 24);
  EXPECT_EQ(checked_element_count({}, "t"), 1);
  EXPECT_EQ(checked_element_count({kTwo32, 0}, "t"), 0);
  EXPECT_EQ(checked_byte_size({1024, 1024}, DType::kFloat16, "t"), 2 << 20);
  for (auto dims : std::vector<std::vector<int64_t>>{{kTwo32, kTwo32}, {4, kTwo62 + 1}, {kTwo62}, {-1, 3}, {0, kTwo32, kTwo32}}) {
    try {
      checked_element_count(dims, "tensor 'x'");
      ADD_FAILURE() << shape_to_string(shape_of(dims));
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kShapeError);
      EXPECT_NE(std::string(e.what()).find("tensor 'x'"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(checked_element_count({int64_t(1) << 41}, "t"), int64_t(1) << 41);
  EXPECT_THROW(checked_byte_size({int64_t(1) << 41}, DType::kBool, "t"), Error);  // 2 TiB
}

TEST(Limits, ConvWhosePadsOverflowTheOutput) {
  // x[1,1,1], w[4,1,1], pads [2^62, 0]: output [1, 4, 2^62+1], 4*(2^62+1) elements.
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(1), Dim(1), Dim(1)});
  Attributes a;
  a.set("pads", std::vector<int64_t>{kTwo62, 0});
  net.add_output(net.add_op1(OpKind::kConv, {x, net.add_weight("w", floats({4, 1, 1}))}, a, "big_conv"));
  expect_finalize_error(net, ErrorCode::kShapeError, {"big_conv", "4611686018427387905", "elements"});
}

TEST(Limits, GemmOfEmptyOperandsWithAHugeOutput) {
  Network net;
  ValueId a = net.add_input("a", DType::kFloat32, {Dim(kTwo32), Dim(0)});
  ValueId b = net.add_input("b", DType::kFloat32, {Dim(0), Dim(kTwo32)});
  net.add_output(net.add_op1(OpKind::kGemm, {a, b}, {}, "gemm"));
  expect_finalize_error(net, ErrorCode::kShapeError, {"gemm", "4294967296", "elements"});
}

TEST(Limits, SizesAtTheProfileMaximum) {
  // Symbolic, so finalize cannot tell, unless a range bounds N: then its maximum must fit.
  Network net;
  Dim n = Dim::symbol("N");
  ValueId x = net.add_input("x", DType::kBool, {n, Dim(int64_t(1) << 31)});
  Attributes to_float;
  to_float.set("to", int64_t(DType::kFloat32));
  net.add_output(net.add_op1(OpKind::kCast, {x}, to_float, "cast"));
  net.finalize();
  EXPECT_NO_THROW(check_value_sizes(net, {{"N", 4}}));
  try {
    check_value_sizes(net, {{"N", 256}});  // x: 512 GiB of bool; its cast: 2 TiB of float
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("node 'cast'"), std::string::npos) << e.what();
  }
  net.set_dim_range("N", {1, 1, kTwo32});
  expect_finalize_error(net, ErrorCode::kShapeError, {"tensor 'x'"});
}

// ---- parameter shapes ---------------------------------------------------------

Network layer_norm(std::vector<int64_t> scale, std::vector<int64_t> bias) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(3), Dim(4)});
  std::vector<ValueId> in{x, net.add_weight("scale", floats(scale))};
  if (!bias.empty() || scale.empty()) in.push_back(net.add_weight("bias", floats(bias)));
  Attributes a;
  a.set("axis", int64_t(-1));
  net.add_output(net.add_op1(OpKind::kLayerNormalization, in, a, "ln"));
  return net;
}

TEST(ParameterShapes, LayerNormalization) {
  Network ok = layer_norm({4}, {1});
  EXPECT_NO_THROW(ok.finalize());
  Network higher_rank = layer_norm({3, 4}, {4});  // normalized dims are [4]
  expect_finalize_error(higher_rank, ErrorCode::kShapeError, {"node 'ln'", "'scale'", "[3,4]", "[4]"});
  Network shorter = layer_norm({3}, {4});
  expect_finalize_error(shorter, ErrorCode::kShapeError, {"node 'ln'", "'scale'", "[3]"});
  Network empty_bias = layer_norm({4}, {0});
  expect_finalize_error(empty_bias, ErrorCode::kShapeError, {"node 'ln'", "'bias'", "[0]"});
}

TEST(ParameterShapes, OtherNormalizations) {
  for (OpKind op : {OpKind::kBatchNormalization, OpKind::kInstanceNormalization, OpKind::kGroupNormalization}) {
    Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(1), Dim(4), Dim(5)});
    std::vector<ValueId> in{x, net.add_weight("scale", floats({4})), net.add_weight("bias", floats({3}))};
    if (op == OpKind::kBatchNormalization) {
      in.push_back(net.add_weight("mean", floats({4})));
      in.push_back(net.add_weight("var", floats({4})));
    }
    Attributes a;
    if (op == OpKind::kGroupNormalization) a.set("num_groups", int64_t(2));
    net.add_output(net.add_op1(op, in, a, "norm"));
    expect_finalize_error(net, ErrorCode::kShapeError, {"node 'norm'", "'bias'", "3 values for 4 channels"});
  }
}

TEST(ParameterShapes, PReluSlopeAndGemmC) {
  Network prelu;
  ValueId x = prelu.add_input("x", DType::kFloat32, {Dim(2), Dim(1)});
  prelu.add_output(prelu.add_op1(OpKind::kPRelu, {x, prelu.add_weight("slope", floats({3}))}, {}, "prelu"));
  expect_finalize_error(prelu, ErrorCode::kShapeError, {"node 'prelu'", "'slope'", "[2,1]"});

  Network gemm;
  ValueId a = gemm.add_input("a", DType::kFloat32, {Dim(1), Dim(3)});
  ValueId b = gemm.add_weight("b", floats({3, 4}));
  gemm.add_output(gemm.add_op1(OpKind::kGemm, {a, b, gemm.add_weight("c", floats({2, 1}))}, {}, "gemm"));
  expect_finalize_error(gemm, ErrorCode::kShapeError, {"node 'gemm'", "'c'", "[1,4]"});
}

TEST(ParameterShapes, ConvBiasAndScalarInputs) {
  Network conv;
  ValueId x = conv.add_input("x", DType::kFloat32, {Dim(1), Dim(1), Dim(5)});
  conv.add_output(conv.add_op1(OpKind::kConv, {x, conv.add_weight("w", floats({4, 1, 1})), conv.add_weight("b", floats({0}))},
                               {}, "conv"));
  expect_finalize_error(conv, ErrorCode::kShapeError, {"node 'conv'", "bias"});

  Network cumsum;
  ValueId y = cumsum.add_input("y", DType::kFloat32, {Dim(3)});
  cumsum.add_output(cumsum.add_op1(OpKind::kCumSum, {y, cumsum.add_weight("axis", ints({}, {0}))}, {}, "cumsum"));
  expect_finalize_error(cumsum, ErrorCode::kShapeError, {"node 'cumsum'", "'axis'", "single value"});
}

TEST(ParameterShapes, GatherElementsIndicesInsideTheData) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(3)});
  ValueId i = net.add_weight("i", ints({0, 0, 0, 0, 0, 0, 0, 0}, {2, 4}));  // dim 1 is 4 > 3 (axis is 0)
  net.add_output(net.add_op1(OpKind::kGatherElements, {x, i}, {}, "gather"));
  expect_finalize_error(net, ErrorCode::kShapeError, {"node 'gather'", "[2,4]", "[2,3]"});
}

TEST(ParameterShapes, ResizeScales) {
  for (double bad : {0.0, -2.0, std::numeric_limits<double>::infinity(), std::nan(""), 1e30}) {
    Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(1), Dim(1), Dim(4), Dim(4)});
    std::vector<float> s{1, 1, 2, float(bad)};
    TensorData scales;
    scales.dims = {4};
    scales.data = Buffer::copy_of(s.data(), 16);
    net.add_output(net.add_op1(OpKind::kResize, {x, kNoValue, net.add_weight("scales", scales)}, {}, "resize"));
    EXPECT_THROW(net.finalize(), Error) << bad;
  }
}

TEST(ParameterShapes, AttentionViewsStayInsideTheirInputs) {
  // Narrow rows 2..6 of a 4-row Q, or pick head 5 of 2: the runtime would read past the input.
  for (std::vector<int64_t> view : {std::vector<int64_t>{3, 3, 1, 2, 4}, std::vector<int64_t>{2, 3, 0, 5, 1}}) {
    Network net;
    ValueId q = net.add_input("q", DType::kFloat32, {Dim(2), Dim(4), Dim(8)});
    ValueId k = net.add_input("k", DType::kFloat32, {Dim(2), Dim(4), Dim(8)});
    ValueId v = net.add_input("v", DType::kFloat32, {Dim(2), Dim(4), Dim(8)});
    Attributes a;
    a.set("q_view", view);
    net.add_output(net.add_op1(OpKind::kAttention, {q, k, v}, a, "attention"));
    expect_finalize_error(net, ErrorCode::kInvalidModel, {"node 'attention'", "q_view", "outside a dim of"});
  }
}

// A plan's view program may narrow a merged dim to nothing and then again: the
// geometry is empty, not a division by the emptied dim.
TEST(ParameterShapes, AttentionViewsNarrowedToNothingTwiceHaveAnEmptyGeometry) {
  // [2, 3, 4] transposed to [3, 2, 4], merged to [6, 4] (two atoms), narrowed to [0, 4] twice, reshaped to [2, 0, 4].
  Attributes a;
  a.set("q_view", std::vector<int64_t>{1, 3, 1, 0, 2, 0, 2, 6, 4, 3, 3, 0, 0, 0, 3, 3, 0, 0, 0, 0, 3, 2, 0, 4});
  Node node{"attention", OpKind::kAttention, {}, {}, a};
  AttentionGeometry g = attention_geometry(node, {2, 3, 4}, {2, 3, 4}, {2, 3, 4});
  EXPECT_EQ(g.q_len, 0);
  EXPECT_EQ(g.kv_len, 3);
}

// ---- attributes -----------------------------------------------------------------

TEST(Attributes, FloatsMustBeNumbers) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  struct Case {
    OpKind op;
    const char* attr;
    double value;
    bool ok;
  };
  for (Case k : {Case{OpKind::kLeakyRelu, "alpha", nan, false}, Case{OpKind::kElu, "alpha", inf, false},
                 Case{OpKind::kHardSigmoid, "beta", -inf, false}, Case{OpKind::kClip, "min", -inf, true},
                 Case{OpKind::kClip, "max", nan, false}, Case{OpKind::kLeakyRelu, "alpha", 0.1, true}}) {
    Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(3)});
    Attributes a;
    a.set(k.attr, k.value);
    net.add_output(net.add_op1(k.op, {x}, a, "act"));
    if (k.ok) {
      EXPECT_NO_THROW(net.finalize()) << k.attr;
      continue;
    }
    expect_finalize_error(net, ErrorCode::kInvalidModel, {"node 'act'", str("'", k.attr, "'")});
  }
  Network norm;
  ValueId x = norm.add_input("x", DType::kFloat32, {Dim(2), Dim(4)});
  Attributes a;
  a.set("epsilon", nan);
  norm.add_output(norm.add_op1(OpKind::kLayerNormalization, {x, norm.add_weight("s", floats({4}))}, a, "ln"));
  expect_finalize_error(norm, ErrorCode::kInvalidModel, {"node 'ln'", "'epsilon'"});
}

// ---- shape-inference bombs ----------------------------------------------------------

TEST(InferenceBombs, RankOfInputsAndOutputs) {
  Network wide;
  wide.add_output(wide.add_input("x", DType::kFloat32, Shape(size_t(kMaxRank + 1), Dim(1))));
  expect_finalize_error(wide, ErrorCode::kUnsupported, {"'x'", "65 dims"});

  // A shape input of 4e9 elements: one symbol per element unless refused first.
  for (OpKind op : {OpKind::kReshape, OpKind::kConstantOfShape, OpKind::kExpand}) {
    Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim(2)});
    ValueId s = net.add_input("s", DType::kInt64, {Dim(4000000000)});
    std::vector<ValueId> in = op == OpKind::kConstantOfShape ? std::vector<ValueId>{s} : std::vector<ValueId>{x, s};
    net.add_output(net.add_op1(op, in, {}, "bomb"));
    expect_finalize_error(net, ErrorCode::kUnsupported, {"node 'bomb'", "4000000000 dims", "limit of 64"});
  }
}

// x's first dim through Shape/Gather as a known scalar, for shape arithmetic.
ValueId first_dim(Network& net, ValueId x) {
  Attributes axis0;
  axis0.set("axis", int64_t(0));
  ValueId index = net.add_weight(str("index", net.values().size()), ints({0}));
  return net.add_op1(OpKind::kGather, {net.add_op1(OpKind::kShape, {x}), index}, axis0);
}

TEST(InferenceBombs, NestedMaxDoublesItsExpression) {
  // X = Max(X, X + 1), 40 levels: the expression doubles each level.
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("N")});
  ValueId v = first_dim(net, x), one = net.add_weight("one", ints({1}));
  for (int i = 0; i < 40; ++i) v = net.add_op1(OpKind::kMax, {v, net.add_op1(OpKind::kAdd, {v, one})}, {}, str("max", i));
  net.add_output(net.add_op1(OpKind::kReshape, {x, v}));
  expect_finalize_error(net, ErrorCode::kUnsupported, {"node 'max", "limit of 2048"});
}

TEST(InferenceBombs, PolynomialExpansion) {
  // (a + b + ... + z)^8: 26 symbols, 351 terms squared, then 20475 at the fourth power.
  Network net;
  ValueId sum = kNoValue;
  for (char c = 'a'; c <= 'z'; ++c) {
    ValueId d = first_dim(net, net.add_input(std::string(1, c), DType::kFloat32, {Dim::symbol(std::string(1, c))}));
    sum = sum == kNoValue ? d : net.add_op1(OpKind::kAdd, {sum, d});
  }
  ValueId p = sum;
  for (int i = 0; i < 3; ++i) p = net.add_op1(OpKind::kMul, {p, p}, {}, str("square", i));
  net.add_output(net.add_op1(OpKind::kConstantOfShape, {p}));
  expect_finalize_error(net, ErrorCode::kUnsupported, {"node 'square", "limit of 2048"});
}

TEST(InferenceBombs, LongDivChain) {
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("N")});
  ValueId v = first_dim(net, x), two = net.add_weight("two", ints({2}));
  for (int i = 0; i < 20000; ++i) v = net.add_op1(OpKind::kDiv, {v, two}, {}, str("div", i));
  net.add_output(net.add_op1(OpKind::kConstantOfShape, {v}));
  expect_finalize_error(net, ErrorCode::kUnsupported, {"node 'div", "limit of 2048"});
}

TEST(InferenceBombs, SymbolsPerModel) {
  // Every Reshape to a shape known only at run time makes 64 symbols.
  Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(1)});
  ValueId s = net.add_input("s", DType::kInt64, {Dim(64)});
  for (int i = 0; i < 300; ++i) net.add_output(net.add_op1(OpKind::kReshape, {x, s}, {}, str("reshape", i)));
  expect_finalize_error(net, ErrorCode::kUnsupported, {"node 'reshape256'", "16384 symbols"});
}

TEST(InferenceBombs, WorkBudget) {
  // Each dim is a sum of 100 symbols: well under the per-Dim limit, but two
  // nodes carrying 64 of them pass a four-node model's budget.
  Dim sum(0);
  for (int t = 0; t < 100; ++t) sum = sum + Dim::symbol(str("s", t));
  Shape big(64, sum);
  Network net;
  ValueId v = net.add_input("x", DType::kFloat32, big);
  for (int i = 0; i < 4; ++i) v = net.add_op1(OpKind::kRelu, {v}, {}, str("relu", i));
  net.add_output(v);
  expect_finalize_error(net, ErrorCode::kUnsupported, {"node 'relu1'", "budget"});
}

}  // namespace
}  // namespace kiln::ir
