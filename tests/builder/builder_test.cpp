// Every pass must keep the network's meaning: the lowered network is run on
// the reference interpreter next to the original on seeded random inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "../core/log_capture.h"
#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/reference.h"

namespace kiln::builder {
namespace {

using ir::Dim;
using ir::OpKind;
using ir::ValueId;

ir::TensorData random_weight(std::vector<int64_t> dims, uint32_t seed, double lo = -0.5, double hi = 0.5) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(size_t(ir::checked_numel(dims)));
  for (auto& x : v) x = u(rng);
  return reference::make_tensor(DType::kFloat32, dims, v);
}

int count_ops(const ir::Network& net, OpKind op) {
  int n = 0;
  for (auto& node : net.nodes()) n += node.op == op;
  return n;
}

// Runs both networks on the same random inputs (symbols bound to `bindings`)
// and checks every output within `tolerance` (relative to the output's scale).
void expect_same_results(const ir::Network& original, const ir::Network& lowered, const ir::SymbolBindings& bindings,
                         double tolerance, uint32_t seed = 7) {
  std::map<std::string, reference::Tensor> inputs;
  std::mt19937 rng(seed);
  for (ValueId id : original.inputs()) {
    const ir::Value& v = original.value(id);
    std::vector<int64_t> dims;
    for (auto& d : v.shape) dims.push_back(*d.evaluate(bindings));
    inputs[v.name] = random_weight(dims, rng(), -1, 1);
  }
  auto expected = reference::run(original, inputs);
  auto actual = reference::run(lowered, inputs);
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(expected[i].dims, actual[i].dims) << "output " << i;
    ASSERT_EQ(expected[i].dtype, actual[i].dtype) << "output " << i;
    auto e = ir::read_doubles(expected[i]), a = ir::read_doubles(actual[i]);
    double scale = 0;
    for (double x : e) scale = std::max(scale, std::fabs(x));
    for (size_t k = 0; k < e.size(); ++k)
      ASSERT_NEAR(a[k], e[k], tolerance * std::max(scale, 1e-3)) << "output " << i << " element " << k << " seed " << seed;
  }
}

ir::Network mlp(int layers, bool gemm) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(32)});
  for (int i = 0; i < layers; ++i) {
    ValueId w = net.add_weight(str("w", i), random_weight({32, 32}, 10 + i));
    ValueId b = net.add_weight(str("b", i), random_weight({32}, 20 + i));
    if (gemm) {
      x = net.add_op1(OpKind::kGemm, {x, w, b});
    } else {
      x = net.add_op1(OpKind::kAdd, {net.add_op1(OpKind::kMatMul, {x, w}), b});
    }
    ir::Attributes gelu;
    if (i % 2) gelu.set("approximate", std::string("tanh"));
    x = net.add_op1(i % 3 == 2 ? OpKind::kRelu : OpKind::kGelu, {x}, i % 3 == 2 ? ir::Attributes{} : gelu);
  }
  net.add_output(x);
  net.set_dim_range("batch", {1, 4, 8});
  net.finalize();
  return net;
}

TEST(Builder, MatMulBiasActivationBecomeOneKernelPerLayer) {
  for (bool gemm : {false, true}) {
    ir::Network net = mlp(4, gemm);
    plan::Plan p = build(net, {});
    EXPECT_EQ(count_ops(p.network, OpKind::kFusedMatMul), 4) << dump_network(p.network);
    EXPECT_EQ(p.network.nodes().size(), 4u) << dump_network(p.network);
    expect_same_results(net, p.network, {{"batch", 3}}, 1e-6);
  }
}

// PyTorch's Linear keeps W as [out, in] (Gemm transB=1): the plan stores it
// [in, out] once, and a weight another node reads too is left as it is.
TEST(Builder, TransposedMatMulWeightsAreStoredUntransposed) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(24)});
  ir::Attributes trans_b;
  trans_b.set("transB", int64_t(1));
  ValueId w = net.add_weight("w", random_weight({16, 24}, 3));  // [N, K]
  ValueId shared = net.add_weight("shared", random_weight({16, 16}, 4));
  ValueId y = net.add_op1(OpKind::kGemm, {x, w, net.add_weight("b", random_weight({16}, 5))}, trans_b);
  y = net.add_op1(OpKind::kGemm, {y, shared}, trans_b);
  net.add_output(net.add_op1(OpKind::kMatMul, {y, shared}));
  net.set_dim_range("batch", {1, 2, 8});
  net.finalize();
  plan::Plan p = build(net, {});
  std::vector<std::pair<int64_t, std::vector<int64_t>>> matmuls;  // trans_b and B's dims, in order
  for (const ir::Node& n : p.network.nodes())
    if (n.op == OpKind::kFusedMatMul) matmuls.emplace_back(n.attrs.get_int("trans_b", 0), p.network.value(n.inputs[1]).weight->dims);
  ASSERT_EQ(matmuls.size(), 3u) << dump_network(p.network);
  EXPECT_EQ(matmuls[0], std::make_pair(int64_t(0), std::vector<int64_t>{24, 16}));
  EXPECT_EQ(matmuls[1], std::make_pair(int64_t(1), std::vector<int64_t>{16, 16}));
  EXPECT_EQ(matmuls[2], std::make_pair(int64_t(0), std::vector<int64_t>{16, 16}));
  expect_same_results(net, p.network, {{"batch", 5}}, 1e-6);
}

// A wide half-precision product whose N is off the 8-element grid (an LM head)
// gets a scratch output for the runtime's transposed product; N on the grid,
// float32, narrow products and products with a bias do not.
TEST(Builder, WideOddProductsGetATransposedScratch) {
  auto scratch_shape = [](int64_t n, plan::Precision precision, bool bias) {
    ir::Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim(3), Dim(8)});
    ValueId y = net.add_op1(OpKind::kMatMul, {x, net.add_weight("w", random_weight({8, n}, 3))});
    if (bias) y = net.add_op1(OpKind::kAdd, {y, net.add_weight("b", random_weight({n}, 4))});
    net.add_output(y);
    net.set_dim_range("batch", {1, 2, 4});
    net.finalize();
    BuildOptions options;
    options.precision = precision;
    plan::Plan p = build(net, options);
    std::vector<int64_t> at_batch_2;  // the scratch's dims at batch 2
    for (const ir::Node& node : p.network.nodes())
      if (node.op == OpKind::kFusedMatMul && node.outputs.size() == 2)
        at_batch_2 = *ir::evaluate_dims(p.network.value(node.outputs[1]).shape, {{"batch", 2}});
    if (!at_batch_2.empty()) expect_same_results(net, p.network, {{"batch", 2}}, precision == plan::Precision::kFloat16 ? 1e-2 : 4e-2);
    return at_batch_2;
  };
  using Dims = std::vector<int64_t>;
  EXPECT_EQ(scratch_shape(4101, plan::Precision::kFloat16, false), Dims({4101, 6}));
  EXPECT_EQ(scratch_shape(4101, plan::Precision::kBFloat16, false), Dims({4101, 6}));
  EXPECT_EQ(scratch_shape(4104, plan::Precision::kFloat16, false), Dims());
  EXPECT_EQ(scratch_shape(4101, plan::Precision::kFloat32, false), Dims());
  EXPECT_EQ(scratch_shape(1001, plan::Precision::kFloat16, false), Dims());
  EXPECT_EQ(scratch_shape(4101, plan::Precision::kFloat16, true), Dims());
}

TEST(Builder, PassLinesGoToTheLogUnlessACallbackTakesThem) {
  ir::Network net = mlp(2, false);
  {
    testing::LogCapture log(Severity::kInfo);
    build(net, {});
    EXPECT_EQ(log.count(Severity::kInfo, "fold constants: "), 1u) << log.text();
  }
  testing::LogCapture log(Severity::kVerbose);
  BuildOptions options;
  std::vector<std::string> lines;
  options.progress = [&](const std::string& line) { lines.push_back(line); };
  build(net, options);
  EXPECT_TRUE(log.entries().empty()) << log.text();
  EXPECT_FALSE(lines.empty());
}

TEST(Builder, ResidualAddIsAbsorbed) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim::symbol("seq"), Dim(16)});
  ValueId w = net.add_weight("w", random_weight({16, 16}, 1));
  ValueId h = net.add_op1(OpKind::kMatMul, {x, w});
  ValueId y = net.add_op1(OpKind::kAdd, {x, h});
  net.add_output(y);
  net.set_dim_range("seq", {1, 8, 32});
  net.finalize();
  plan::Plan p = build(net, {});
  ASSERT_EQ(p.network.nodes().size(), 1u) << dump_network(p.network);
  EXPECT_EQ(p.network.nodes()[0].inputs.size(), 4u);
  expect_same_results(net, p.network, {{"seq", 5}}, 1e-6);
}

TEST(Builder, BatchNormFoldsIntoConvAndEltwiseChainsFuse) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("n"), Dim(3), Dim(8), Dim(8)});
  ir::Attributes pads;
  pads.set("pads", std::vector<int64_t>{1, 1, 1, 1});
  ValueId c = net.add_op1(OpKind::kConv, {x, net.add_weight("w", random_weight({4, 3, 3, 3}, 3))}, pads);
  ValueId bn = net.add_op1(OpKind::kBatchNormalization,
                           {c, net.add_weight("s", random_weight({4}, 4, 0.5, 1.5)), net.add_weight("b", random_weight({4}, 5)),
                            net.add_weight("m", random_weight({4}, 6)), net.add_weight("v", random_weight({4}, 7, 0.5, 2))});
  // x * sigmoid(x) written out, then a clip: three elementwise ops -> one kernel.
  ValueId sig = net.add_op1(OpKind::kSigmoid, {bn});
  ValueId swish = net.add_op1(OpKind::kMul, {bn, sig});
  ValueId lo = net.add_weight("lo", reference::make_tensor(DType::kFloat32, {}, {-0.25}));
  ValueId hi = net.add_weight("hi", reference::make_tensor(DType::kFloat32, {}, {0.75}));
  net.add_output(net.add_op1(OpKind::kClip, {swish, lo, hi}));
  net.set_dim_range("n", {1, 1, 4});
  net.finalize();
  plan::Plan p = build(net, {});
  EXPECT_EQ(count_ops(p.network, OpKind::kBatchNormalization), 0);
  EXPECT_EQ(count_ops(p.network, OpKind::kFusedElementwise), 1) << dump_network(p.network);
  EXPECT_EQ(p.network.nodes().size(), 2u) << dump_network(p.network);
  expect_same_results(net, p.network, {{"n", 2}}, 1e-6);
}

// ResNet's shape: stem Conv + ReLU, MaxPool, a residual block, a strided 1x1
// Conv, global pooling and a classifier.
ir::Network small_resnet() {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("n"), Dim(3), Dim(16), Dim(16)});
  uint32_t seed = 40;
  auto conv = [&](ValueId in, int64_t cin, int64_t cout, int64_t k, int64_t stride) {
    ir::Attributes a;
    a.set("pads", std::vector<int64_t>(4, k / 2));
    a.set("strides", std::vector<int64_t>{stride, stride});
    return net.add_op1(OpKind::kConv, {in, net.add_weight(str("w", seed), random_weight({cout, cin, k, k}, seed++)),
                                       net.add_weight(str("b", seed), random_weight({cout}, seed++))},
                       a);
  };
  ValueId stem = net.add_op1(OpKind::kRelu, {conv(x, 3, 8, 3, 1)});
  ir::Attributes pool;
  pool.set("kernel_shape", std::vector<int64_t>{2, 2});
  pool.set("strides", std::vector<int64_t>{2, 2});
  ValueId pooled = net.add_op1(OpKind::kMaxPool, {stem}, pool);
  ValueId a = net.add_op1(OpKind::kRelu, {conv(pooled, 8, 8, 3, 1)});
  ValueId block = net.add_op1(OpKind::kRelu, {net.add_op1(OpKind::kAdd, {conv(a, 8, 8, 3, 1), pooled})});
  ValueId down = conv(block, 8, 16, 1, 2);
  ValueId features = net.add_op1(OpKind::kFlatten, {net.add_op1(OpKind::kGlobalAveragePool, {down})});
  ir::Attributes trans_b;
  trans_b.set("transB", int64_t(1));
  net.add_output(net.add_op1(OpKind::kGemm, {features, net.add_weight("fc", random_weight({5, 16}, seed++)),
                                             net.add_weight("fc_b", random_weight({5}, seed++))},
                             trans_b));
  net.set_dim_range("n", {1, 2, 4});
  net.finalize();
  return net;
}

// In half precision the Convs and the MaxPool run channels-last; the layout
// transposes cancel between them, leaving the input's; biases ride in the
// ReLU kernels.
TEST(Builder, HalfPrecisionConvsRunChannelsLast) {
  ir::Network net = small_resnet();
  BuildOptions options;
  options.precision = plan::Precision::kFloat16;
  plan::Plan p = build(net, options);
  EXPECT_EQ(count_ops(p.network, OpKind::kConv), 0) << dump_network(p.network);
  EXPECT_EQ(count_ops(p.network, OpKind::kConvChannelsLast), 4);
  EXPECT_EQ(count_ops(p.network, OpKind::kTranspose), 1) << dump_network(p.network);
  EXPECT_EQ(count_ops(p.network, OpKind::kMaxPoolChannelsLast), 1);
  EXPECT_EQ(count_ops(p.network, OpKind::kGlobalAveragePool), 0);
  EXPECT_EQ(count_ops(p.network, OpKind::kFusedElementwise), 3) << dump_network(p.network);
  int biased = 0;
  for (auto& node : p.network.nodes())
    if (node.op == OpKind::kConvChannelsLast) biased += node.inputs.size() > 2;
  EXPECT_EQ(biased, 1);  // only the Conv read by the pooling keeps its bias
  expect_same_results(net, p.network, {{"n", 2}}, 1e-2);

  plan::Plan fp32 = build(net, {});
  EXPECT_EQ(count_ops(fp32.network, OpKind::kConvChannelsLast), 0);
  EXPECT_EQ(count_ops(fp32.network, OpKind::kTranspose), 0);
  expect_same_results(net, fp32.network, {{"n", 2}}, 1e-6);
}

ValueId int_weight(ir::Network& net, const std::string& name, const std::vector<int64_t>& v) {
  return net.add_weight(name, reference::make_tensor(DType::kInt64, {int64_t(v.size())}, std::vector<double>(v.begin(), v.end())));
}

ir::Attributes perm(std::vector<int64_t> p) {
  ir::Attributes a;
  a.set("perm", p);
  return a;
}

// PyTorch's exported multi-head attention: a packed QKV projection split into
// heads by Reshape/Unsqueeze/Transpose/Squeeze/Gather chains, scaled scores,
// softmax, the product with V and the heads put back together.
// seq 0: a symbolic length (reshapes keep it with 0 and -1, as exporters do).
// With batch > 1 the heads' reshape to [S, B*H, D] merges dims that the
// transpose before it separated: a view of the packed projection only once
// the reshape to [B, H, S, D] splits them back.
ir::Network exported_attention(int64_t seq_len, int64_t heads, int64_t head_dim, int64_t batch = 1) {
  ir::Network net;
  int64_t e = heads * head_dim;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(batch), seq_len ? Dim(seq_len) : Dim::symbol("seq"), Dim(e)});
  const int64_t seq = seq_len ? seq_len : 0, any = seq_len ? seq_len : -1;  // Reshape: 0 copies the dim, -1 infers it
  auto ints = [&](const std::string& name, std::vector<int64_t> v) { return int_weight(net, name, v); };
  ValueId xt = net.add_op1(OpKind::kTranspose, {x}, perm({1, 0, 2}));
  ValueId qkv = net.add_op1(OpKind::kAdd, {net.add_op1(OpKind::kMatMul, {xt, net.add_weight("w_in", random_weight({e, 3 * e}, 60))}),
                                           net.add_weight("b_in", random_weight({3 * e}, 61))});
  ValueId split = net.add_op1(OpKind::kReshape, {qkv, ints("s1", {seq, batch, 3, e})});
  split = net.add_op1(OpKind::kUnsqueeze, {split, ints("a0", {0})});
  split = net.add_op1(OpKind::kTranspose, {split}, perm({3, 1, 2, 0, 4}));
  split = net.add_op1(OpKind::kSqueeze, {split, ints("a3", {3})});
  std::vector<ValueId> qkv_heads;
  for (int i = 0; i < 3; ++i) {
    ir::Attributes axis;
    axis.set("axis", int64_t(0));
    ValueId part = net.add_op1(OpKind::kGather, {split, net.add_weight(str("i", i), reference::make_tensor(DType::kInt64, {}, {double(i)}))}, axis);
    part = net.add_op1(OpKind::kReshape, {part, ints(str("h", i), {seq, batch * heads, head_dim})});
    part = net.add_op1(OpKind::kTranspose, {part}, perm({1, 0, 2}));
    qkv_heads.push_back(net.add_op1(OpKind::kReshape, {part, ints(str("b", i), {batch, heads, any, head_dim})}));
  }
  ValueId q = net.add_op1(OpKind::kMul, {qkv_heads[0], net.add_weight("scale", reference::make_tensor(DType::kFloat32, {}, {0.35}))});
  ValueId kt = net.add_op1(OpKind::kTranspose, {qkv_heads[1]}, perm({0, 1, 3, 2}));
  ir::Attributes last;
  last.set("axis", int64_t(-1));
  ValueId probs = net.add_op1(OpKind::kSoftmax, {net.add_op1(OpKind::kMatMul, {q, kt})}, last);
  ValueId heads_out = net.add_op1(OpKind::kTranspose, {net.add_op1(OpKind::kMatMul, {probs, qkv_heads[2]})}, perm({2, 0, 1, 3}));
  ValueId merged = net.add_op1(OpKind::kReshape, {heads_out, ints("m", {seq_len ? seq_len * batch : -1, e})});
  ir::Attributes trans_b;
  trans_b.set("transB", int64_t(1));
  ValueId projected = net.add_op1(OpKind::kGemm, {merged, net.add_weight("w_out", random_weight({e, e}, 62)),
                                                  net.add_weight("b_out", random_weight({e}, 63))},
                                  trans_b);
  projected = net.add_op1(OpKind::kTranspose, {net.add_op1(OpKind::kReshape, {projected, ints("r", {any, batch, e})})}, perm({1, 0, 2}));
  ValueId residual = net.add_op1(OpKind::kAdd, {x, projected});
  net.add_output(net.add_op1(OpKind::kLayerNormalization, {residual, net.add_weight("ln_g", random_weight({e}, 64))}));
  if (!seq_len) net.set_dim_range("seq", {1, 6, 40});
  net.finalize();
  return net;
}

// How the scores are masked: Where(upper triangle, -inf, scores), or scores
// plus a constant triangle of -inf or of float32's lowest value (dynamo
// exports), or plus a triangle that is off by one entry (not causal).
enum class Mask { kWhere, kAddInf, kAddLowest, kAddNotCausal };

// A GPT-2 block's attention: Split of the QKV projection, heads by Reshape and
// Transpose, scores divided by sqrt(D) and masked causally.
// With `merged_k`, K^T as dynamo exports write it for any batch: heads merged
// into the batch, a 3-D transpose, and split back.
ir::Network causal_attention(int64_t seq, int64_t heads, int64_t head_dim, Mask masking = Mask::kWhere, int64_t batch = 1,
                             bool merged_k = false) {
  ir::Network net;
  int64_t e = heads * head_dim;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(batch), Dim(seq), Dim(e)});
  auto ints = [&](const std::string& name, std::vector<int64_t> v) { return int_weight(net, name, v); };
  ValueId qkv = net.add_op1(OpKind::kMatMul, {x, net.add_weight("w_qkv", random_weight({e, 3 * e}, 70))});
  ir::Attributes axis2;
  axis2.set("axis", int64_t(2));
  auto parts = net.add_op(OpKind::kSplit, {qkv, ints("sizes", {e, e, e})}, axis2, 3);
  std::vector<ValueId> heads_of;
  for (int i = 0; i < 3; ++i)
    heads_of.push_back(net.add_op1(OpKind::kTranspose, {net.add_op1(OpKind::kReshape, {parts[size_t(i)], ints(str("h", i), {batch, seq, heads, head_dim})})},
                                   perm({0, 2, 1, 3})));
  ValueId k_t = net.add_op1(OpKind::kTranspose, {heads_of[1]}, perm({0, 1, 3, 2}));
  if (merged_k) {
    ValueId merged = net.add_op1(OpKind::kReshape, {heads_of[1], ints("k_merged", {batch * heads, seq, head_dim})});
    k_t = net.add_op1(OpKind::kReshape, {net.add_op1(OpKind::kTranspose, {merged}, perm({0, 2, 1})), ints("k_split", {batch, heads, head_dim, seq})});
  }
  ValueId scores = net.add_op1(OpKind::kMatMul, {heads_of[0], k_t});
  scores = net.add_op1(OpKind::kDiv, {scores, net.add_weight("root_d", reference::make_tensor(DType::kFloat32, {}, {std::sqrt(double(head_dim))}))});
  std::vector<double> upper(size_t(seq * seq));
  for (int64_t i = 0; i < seq; ++i)
    for (int64_t j = 0; j < seq; ++j) upper[size_t(i * seq + j)] = j > i;
  ir::Attributes last;
  last.set("axis", int64_t(-1));
  double masked = masking == Mask::kAddLowest ? double(std::numeric_limits<float>::lowest()) : -std::numeric_limits<double>::infinity();
  if (masking == Mask::kWhere) {
    ValueId mask = net.add_weight("mask", reference::make_tensor(DType::kBool, {seq, seq}, upper));
    ValueId minus_inf = net.add_weight("minus_inf", reference::make_tensor(DType::kFloat32, {}, {masked}));
    scores = net.add_op1(OpKind::kWhere, {mask, minus_inf, scores});
  } else {
    std::vector<double> add(upper.size());
    for (size_t i = 0; i < add.size(); ++i) add[i] = upper[i] ? masked : 0;
    if (masking == Mask::kAddNotCausal) add[size_t(seq)] = masked;  // row 1 also loses key 0
    scores = net.add_op1(OpKind::kAdd, {scores, net.add_weight("mask", reference::make_tensor(DType::kFloat32, {1, 1, seq, seq}, add))});
  }
  ValueId probs = net.add_op1(OpKind::kSoftmax, {scores}, last);
  ValueId merged = net.add_op1(OpKind::kTranspose, {net.add_op1(OpKind::kMatMul, {probs, heads_of[2]})}, perm({0, 2, 1, 3}));
  merged = net.add_op1(OpKind::kReshape, {merged, ints("m", {batch, seq, e})});
  net.add_output(net.add_op1(OpKind::kMatMul, {merged, net.add_weight("w_out", random_weight({e, e}, 71))}));
  net.finalize();
  return net;
}

TEST(Builder, CausalAttentionFromASplitIsFused) {
  ir::Network net = causal_attention(7, 4, 8);
  plan::Plan p = build(net, {});
  ASSERT_EQ(count_ops(p.network, OpKind::kAttention), 1) << dump_network(p.network);
  for (OpKind gone : {OpKind::kSoftmax, OpKind::kWhere, OpKind::kSplit, OpKind::kTranspose, OpKind::kFusedElementwise})
    EXPECT_EQ(count_ops(p.network, gone), 0) << ir::op_name(gone) << "\n" << dump_network(p.network);
  for (auto& node : p.network.nodes())
    if (node.op == OpKind::kAttention) {
      EXPECT_EQ(node.attrs.get_int("causal", 0), 1);
    }
  expect_same_results(net, p.network, {}, 1e-6);
}

// Dynamo exports add a constant triangle instead; it is the same causal mask.
TEST(Builder, CausalAttentionWithAnAddedMaskIsFused) {
  for (Mask masking : {Mask::kAddInf, Mask::kAddLowest}) {
    ir::Network net = causal_attention(7, 4, 8, masking);
    plan::Plan p = build(net, {});
    ASSERT_EQ(count_ops(p.network, OpKind::kAttention), 1) << dump_network(p.network);
    EXPECT_EQ(count_ops(p.network, OpKind::kSoftmax) + count_ops(p.network, OpKind::kFusedElementwise), 0) << dump_network(p.network);
    for (auto& node : p.network.nodes())
      if (node.op == OpKind::kAttention) EXPECT_EQ(node.attrs.get_int("causal", 0), 1);
    expect_same_results(net, p.network, {}, 1e-6);
  }
  // A triangle off by one entry is no causal mask: it rides along as the mask input.
  ir::Network net = causal_attention(7, 4, 8, Mask::kAddNotCausal);
  plan::Plan p = build(net, {});
  ASSERT_EQ(count_ops(p.network, OpKind::kAttention), 1) << dump_network(p.network);
  for (auto& node : p.network.nodes())
    if (node.op == OpKind::kAttention) {
      EXPECT_EQ(node.attrs.get_int("causal", 0), 0);
      EXPECT_EQ(node.inputs.size(), 4u);
    }
  expect_same_results(net, p.network, {}, 1e-6);
}

// How attention is masked by data: a BERT-style additive padding mask
// ((1 - keep) * -10000, [B, 1, 1, S]), Where on a bool padding mask keeping
// the scores (fill -inf) or dropping them (fill -1e9), a position bias
// [1, H, S, S] added (T5), each after a causal Where where `causal`; and a
// padding mask added before the scale, which the fused node cannot express.
enum class DataMask { kAdditive, kWhereKeep, kWhereDrop, kBias, kBeforeScale };

// x [B, S, E], keep [B, S] (a key takes part where keep > 0): self-attention
// over heads by Reshape and Transpose, masked by `form`.
ir::Network padded_attention(DataMask form, bool causal, Dim seq, int64_t batch = 3, int64_t heads = 2, int64_t head_dim = 8) {
  ir::Network net;
  int64_t e = heads * head_dim;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(batch), seq, Dim(e)});
  ValueId keep = net.add_input("keep", DType::kFloat32, {Dim(batch), seq});
  auto ints = [&](const std::string& name, std::vector<int64_t> v) { return int_weight(net, name, v); };
  auto scalar = [&](const std::string& name, double v) { return net.add_weight(name, reference::make_tensor(DType::kFloat32, {}, {v})); };
  std::vector<ValueId> qkv;
  for (int i = 0; i < 3; ++i) {
    ValueId proj = net.add_op1(OpKind::kMatMul, {x, net.add_weight(str("w", i), random_weight({e, e}, uint32_t(80 + i)))});
    qkv.push_back(net.add_op1(OpKind::kTranspose, {net.add_op1(OpKind::kReshape, {proj, ints(str("h", i), {batch, -1, heads, head_dim})})},
                              perm({0, 2, 1, 3})));
  }
  ValueId scores = net.add_op1(OpKind::kMatMul, {qkv[0], net.add_op1(OpKind::kTranspose, {qkv[1]}, perm({0, 1, 3, 2}))});
  // Key 0 always takes part (a padding mask keeps the first token), so no row is left without keys.
  ValueId first = net.add_op1(OpKind::kSlice, {keep, ints("starts", {0}), ints("ends", {1}), ints("slice_axes", {1})});
  ValueId keep_first = net.add_op1(OpKind::kConcat, {net.add_op1(OpKind::kAbs, {first}),
                                                     net.add_op1(OpKind::kSlice, {keep, ints("starts1", {1}), ints("ends1", {INT64_MAX}), ints("slice_axes1", {1})})},
                                   [] { ir::Attributes a; a.set("axis", int64_t(1)); return a; }());
  ValueId kept = net.add_op1(OpKind::kUnsqueeze, {net.add_op1(OpKind::kGreater, {keep_first, scalar("zero", 0)}), ints("axes", {1, 2})});
  ir::Attributes to_float;
  to_float.set("to", int64_t(DType::kFloat32));
  ValueId additive = net.add_op1(OpKind::kMul, {net.add_op1(OpKind::kSub, {scalar("one", 1), net.add_op1(OpKind::kCast, {kept}, to_float)}),
                                                scalar("big", -10000)});
  ValueId root_d = scalar("root_d", std::sqrt(double(head_dim)));
  if (form == DataMask::kBeforeScale) scores = net.add_op1(OpKind::kAdd, {scores, additive});
  scores = net.add_op1(OpKind::kDiv, {scores, root_d});
  if (causal) {  // (a constant length)
    int64_t len = seq.constant();
    std::vector<double> upper(size_t(len * len));
    for (int64_t i = 0; i < len; ++i)
      for (int64_t j = 0; j < len; ++j) upper[size_t(i * len + j)] = j > i;
    ValueId triangle = net.add_weight("triangle", reference::make_tensor(DType::kBool, {len, len}, upper));
    scores = net.add_op1(OpKind::kWhere, {triangle, scalar("minus_inf", -INFINITY), scores});
  }
  switch (form) {
    case DataMask::kAdditive: scores = net.add_op1(OpKind::kAdd, {scores, additive}); break;
    case DataMask::kWhereKeep: scores = net.add_op1(OpKind::kWhere, {kept, scores, scalar("fill", -INFINITY)}); break;
    case DataMask::kWhereDrop:
      scores = net.add_op1(OpKind::kWhere, {net.add_op1(OpKind::kNot, {kept}), scalar("fill", -1e9), scores});
      break;
    case DataMask::kBias: {
      int64_t s = seq.constant();
      scores = net.add_op1(OpKind::kAdd, {scores, net.add_weight("bias", random_weight({1, heads, s, s}, 90, -2, 2))});
      break;
    }
    case DataMask::kBeforeScale: break;
  }
  ir::Attributes last;
  last.set("axis", int64_t(-1));
  ValueId probs = net.add_op1(OpKind::kSoftmax, {scores}, last);
  ValueId merged = net.add_op1(OpKind::kTranspose, {net.add_op1(OpKind::kMatMul, {probs, qkv[2]})}, perm({0, 2, 1, 3}));
  net.add_output(net.add_op1(OpKind::kReshape, {merged, ints("m", {batch, -1, e})}));
  if (!seq.is_constant()) net.set_dim_range(seq.to_string(), {1, 6, 40});
  net.finalize();
  return net;
}

const ir::Node* attention_node(const ir::Network& net) {
  for (const ir::Node& node : net.nodes())
    if (node.op == OpKind::kAttention) return &node;
  return nullptr;
}

TEST(Builder, AttentionMaskedByDataIsFusedWithItsMask) {
  for (DataMask form : {DataMask::kAdditive, DataMask::kWhereKeep, DataMask::kWhereDrop, DataMask::kBias})
    for (bool causal : {false, true}) {
      if (causal && form == DataMask::kWhereDrop) continue;  // a finite fill after the causal mask: see below
      SCOPED_TRACE(str("form ", int(form), causal ? " causal" : ""));
      ir::Network net = padded_attention(form, causal, Dim(7));
      plan::Plan p = build(net, {});
      const ir::Node* attention = attention_node(p.network);
      ASSERT_NE(attention, nullptr) << dump_network(p.network);
      EXPECT_EQ(count_ops(p.network, OpKind::kSoftmax), 0) << dump_network(p.network);
      ASSERT_EQ(attention->inputs.size(), 4u);
      EXPECT_EQ(attention->attrs.get_int("causal", 0), int64_t(causal));
      bool where = form == DataMask::kWhereKeep || form == DataMask::kWhereDrop;
      EXPECT_EQ(p.network.value(attention->inputs[3]).dtype, where ? DType::kBool : DType::kFloat32);
      if (where) {
        EXPECT_EQ(attention->attrs.get_int("mask_keep", 1), form == DataMask::kWhereKeep ? 1 : 0);
        EXPECT_EQ(attention->attrs.get_float("mask_fill", -INFINITY), form == DataMask::kWhereKeep ? -INFINITY : -1e9);
      }
      for (uint32_t seed : {7u, 8u, 9u}) expect_same_results(net, p.network, {}, 1e-6, seed);
    }
}

// A padding mask over a length only the run knows: the mask's [B, 1, 1, S]
// broadcasts at every length of the profile.
TEST(Builder, AttentionWithAPaddingMaskOfARunTimeLengthIsFused) {
  for (DataMask form : {DataMask::kAdditive, DataMask::kWhereKeep}) {
    ir::Network net = padded_attention(form, false, Dim::symbol("seq"));
    plan::Plan p = build(net, {});
    const ir::Node* attention = attention_node(p.network);
    ASSERT_NE(attention, nullptr) << dump_network(p.network);
    EXPECT_EQ(attention->inputs.size(), 4u);
    for (int64_t len : {1, 6, 17, 40}) expect_same_results(net, p.network, {{"seq", len}}, 1e-6, uint32_t(len));
  }
}

// ONNX's Attention as the import writes it with attn_mask: the mask added,
// and after the softmax Where(ReduceMax(mask) == -inf, 0, probs), which
// zeroes the rows the mask leaves without keys (here rows 2 and 5): fused
// as empty_rows_zero, the rows still 0.
TEST(Builder, OnnxAttentionZeroingRowsWithoutKeysIsFused) {
  ir::Network net;
  const int64_t b = 2, h = 3, s = 7, d = 8;
  std::vector<ValueId> qkv;
  for (const char* name : {"q", "k", "v"}) qkv.push_back(net.add_input(name, DType::kFloat32, {Dim(b), Dim(h), Dim(s), Dim(d)}));
  // The mask from data: bias where bias > -0.5, else -inf, and rows 2 and 5 all -inf.
  auto scalar = [&](const std::string& name, double v) { return net.add_weight(name, reference::make_tensor(DType::kFloat32, {}, {v})); };
  ValueId bias = net.add_input("bias", DType::kFloat32, {Dim(s), Dim(s)});
  std::vector<double> rows(size_t(s), 0.0);
  rows[2] = rows[5] = -INFINITY;
  ValueId m = net.add_op1(OpKind::kAdd, {net.add_op1(OpKind::kWhere, {net.add_op1(OpKind::kGreater, {bias, scalar("cut", -0.5)}), bias,
                                                                      scalar("minus_inf_fill", -INFINITY)}),
                                         net.add_weight("empty_rows", reference::make_tensor(DType::kFloat32, {s, 1}, rows))});
  ValueId scores = net.add_op1(OpKind::kMul, {net.add_op1(OpKind::kMatMul, {qkv[0], net.add_op1(OpKind::kTranspose, {qkv[1]}, perm({0, 1, 3, 2}))}),
                                              scalar("scale", 0.35)});
  ir::Attributes last, keep;
  last.set("axis", int64_t(-1));
  keep.set("keepdims", int64_t(1));
  ValueId probs = net.add_op1(OpKind::kSoftmax, {net.add_op1(OpKind::kAdd, {scores, m})}, last);
  ValueId row_max = net.add_op1(OpKind::kReduceMax, {m, int_weight(net, "row_axis", {-1})}, keep);
  ValueId empty = net.add_op1(OpKind::kEqual, {row_max, scalar("minus_inf", -INFINITY)});
  probs = net.add_op1(OpKind::kWhere, {empty, scalar("zero", 0), probs});
  net.add_output(net.add_op1(OpKind::kMatMul, {probs, qkv[2]}));
  net.finalize();
  plan::Plan p = build(net, {});
  const ir::Node* attention = attention_node(p.network);
  ASSERT_NE(attention, nullptr) << dump_network(p.network);
  EXPECT_EQ(attention->inputs.size(), 4u);
  EXPECT_EQ(attention->attrs.get_int("empty_rows_zero", 0), 1);
  EXPECT_EQ(count_ops(p.network, OpKind::kReduceMax) + count_ops(p.network, OpKind::kWhere), 0) << dump_network(p.network);
  expect_same_results(net, p.network, {}, 1e-6);
  std::map<std::string, reference::Tensor> inputs;
  for (const char* name : {"q", "k", "v"}) inputs[name] = random_weight({b, h, s, d}, 11, -1, 1);
  inputs["bias"] = random_weight({s, s}, 12, -1, 1);
  std::vector<double> out = ir::read_doubles(reference::run(p.network, inputs)[0]);
  for (int64_t row : {2, 5})
    for (int64_t e = 0; e < d; ++e) EXPECT_EQ(out[size_t(row * d + e)], 0.0) << "row " << row;
}

// A mask added before the scale would be scaled with the scores: not fused, same results.
TEST(Builder, AttentionMaskedBeforeItsScaleIsLeftAsItIs) {
  ir::Network net = padded_attention(DataMask::kBeforeScale, false, Dim(7));
  plan::Plan p = build(net, {});
  EXPECT_EQ(attention_node(p.network), nullptr) << dump_network(p.network);
  expect_same_results(net, p.network, {}, 1e-6);
}

// A bool mask after the causal Where, filling with a finite value, would
// differ from the fused order (mask, then causal) on rows it empties: not fused.
TEST(Builder, AFiniteFillAfterTheCausalMaskIsLeftAsItIs) {
  ir::Network net = padded_attention(DataMask::kWhereDrop, true, Dim(7));
  plan::Plan p = build(net, {});
  const ir::Node* attention = attention_node(p.network);
  EXPECT_TRUE(attention == nullptr || attention->inputs.size() == 3) << dump_network(p.network);
  expect_same_results(net, p.network, {}, 1e-6);
}

// K^T through heads merged into the batch is not a view of the projection
// step by step, but is one as a whole: attention reads the projection itself.
TEST(Builder, AttentionReadsKThroughMergedHeadsFromTheProjection) {
  ir::Network net = causal_attention(7, 4, 8, Mask::kAddInf, 3, true);
  plan::Plan p = build(net, {});
  ASSERT_EQ(count_ops(p.network, OpKind::kAttention), 1) << dump_network(p.network);
  for (OpKind gone : {OpKind::kSoftmax, OpKind::kSplit, OpKind::kTranspose, OpKind::kFusedElementwise})
    EXPECT_EQ(count_ops(p.network, gone), 0) << ir::op_name(gone) << "\n" << dump_network(p.network);
  expect_same_results(net, p.network, {}, 1e-6);
}

// With a symbolic length the views are programs over the projection's dims.
TEST(Builder, DynamicLengthAttentionIsFusedToo) {
  ir::Network net = exported_attention(0, 4, 8);
  plan::Plan p = build(net, {});
  EXPECT_EQ(count_ops(p.network, OpKind::kAttention), 1) << dump_network(p.network);
  EXPECT_EQ(count_ops(p.network, OpKind::kSoftmax) + count_ops(p.network, OpKind::kTranspose), 0) << dump_network(p.network);
  for (int64_t seq : {1, 5, 33}) expect_same_results(net, p.network, {{"seq", seq}}, 1e-6);
}

// nn.MultiheadAttention at batch 3: the heads go through [S, B*H, D], which
// merges dims no single stride steps through, and come back as [B, H, S, D],
// which is a view again: attention reads the packed projection itself.
TEST(Builder, AttentionReadsHeadsMergedThroughTheBatchFromThePackedProjection) {
  ir::Network net = exported_attention(5, 4, 8, 3);
  plan::Plan p = build(net, {});
  EXPECT_EQ(count_ops(p.network, OpKind::kAttention), 1) << dump_network(p.network);
  EXPECT_EQ(count_ops(p.network, OpKind::kSoftmax), 0) << dump_network(p.network);
  for (const ir::Node& node : p.network.nodes())
    if (node.op == OpKind::kAttention)
      for (ir::ValueId operand : node.inputs) {
        auto producer = std::find_if(p.network.nodes().begin(), p.network.nodes().end(), [&](const ir::Node& n) {
          return std::find(n.outputs.begin(), n.outputs.end(), operand) != n.outputs.end();
        });
        ASSERT_NE(producer, p.network.nodes().end());
        EXPECT_EQ(producer->op, OpKind::kFusedMatMul) << dump_network(p.network);
        // The batch-first transpose before the in-projection became the views' first step.
        EXPECT_EQ(producer->inputs[0], p.network.inputs()[0]) << dump_network(p.network);
      }
  EXPECT_EQ(count_ops(p.network, OpKind::kTranspose), 1) << dump_network(p.network);  // the output's, after the out-projection
  expect_same_results(net, p.network, {}, 1e-6);
  BuildOptions half;
  half.precision = plan::Precision::kFloat16;
  expect_same_results(net, build(net, half).network, {}, 1e-2);
}

TEST(Builder, ExportedAttentionBecomesOneKernelAndTheResidualRidesInTheProjection) {
  ir::Network net = exported_attention(6, 4, 8);
  plan::Plan p = build(net, {});
  EXPECT_EQ(count_ops(p.network, OpKind::kAttention), 1) << dump_network(p.network);
  for (OpKind gone : {OpKind::kSoftmax, OpKind::kGather, OpKind::kTranspose})
    EXPECT_EQ(count_ops(p.network, gone), 0) << ir::op_name(gone) << "\n" << dump_network(p.network);
  EXPECT_EQ(count_ops(p.network, OpKind::kFusedMatMul), 2) << dump_network(p.network);  // the projections
  // The residual Add, behind the output projection's reshapes, rides in its epilogue.
  EXPECT_EQ(count_ops(p.network, OpKind::kAdd) + count_ops(p.network, OpKind::kFusedElementwise), 0) << dump_network(p.network);
  expect_same_results(net, p.network, {}, 1e-6);
  BuildOptions half;
  half.precision = plan::Precision::kFloat16;
  expect_same_results(net, build(net, half).network, {}, 1e-2);
}

// The exported attention's shape shuffles: transposes that only move unit dims
// are views, and scalar scales of matmul operands ride in alpha.
TEST(Builder, UnitTransposesBecomeViewsAndScalesFoldIntoMatMul) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("seq"), Dim(1), Dim(8)});
  ir::Attributes perm;
  perm.set("perm", std::vector<int64_t>{1, 0, 2});
  ValueId t = net.add_op(OpKind::kTranspose, {x}, perm)[0];  // [1, seq, 8]: no data moves
  ValueId c = net.add_weight("c", reference::make_tensor(DType::kFloat32, {}, {0.35}));
  ValueId scaled = net.add_op1(OpKind::kMul, {t, c});
  ValueId y = net.add_op1(OpKind::kMatMul, {scaled, net.add_weight("w", random_weight({8, 4}, 2))});
  ir::Attributes swap;
  swap.set("perm", std::vector<int64_t>{0, 2, 1});
  net.add_output(net.add_op(OpKind::kTranspose, {y}, swap)[0]);  // [1, 4, seq]: a real transpose stays
  net.set_dim_range("seq", {1, 8, 32});
  net.finalize();
  plan::Plan p = build(net, {});
  EXPECT_EQ(count_ops(p.network, OpKind::kTranspose), 1) << dump_network(p.network);
  EXPECT_EQ(count_ops(p.network, OpKind::kMul), 0) << dump_network(p.network);
  EXPECT_EQ(count_ops(p.network, OpKind::kFusedElementwise), 0) << dump_network(p.network);
  for (const ir::Node& node : p.network.nodes()) {
    if (node.op == OpKind::kFusedMatMul) {
      EXPECT_NEAR(node.attrs.get_float("alpha", 1.0), 0.35, 1e-7);  // the float32 weight
    }
  }
  expect_same_results(net, p.network, {{"seq", 5}}, 1e-6);
  expect_same_results(net, p.network, {{"seq", 1}}, 1e-6);
}

// Q @ K^T with K^T a Transpose of K's last two dims: the matmul reads K with trans_b.
TEST(Builder, BatchedTransposeFoldsIntoMatMul) {
  ir::Network net;
  ValueId q = net.add_input("q", DType::kFloat32, {Dim(2), Dim(3), Dim::symbol("seq"), Dim(8)});
  ValueId k = net.add_input("k", DType::kFloat32, {Dim(2), Dim(3), Dim::symbol("seq"), Dim(8)});
  ir::Attributes perm;
  perm.set("perm", std::vector<int64_t>{0, 1, 3, 2});
  ValueId kt = net.add_op(OpKind::kTranspose, {k}, perm)[0];
  net.add_output(net.add_op1(OpKind::kMatMul, {q, kt}));
  net.set_dim_range("seq", {1, 4, 16});
  net.finalize();
  plan::Plan p = build(net, {});
  EXPECT_EQ(count_ops(p.network, OpKind::kTranspose), 0) << dump_network(p.network);
  ASSERT_EQ(count_ops(p.network, OpKind::kFusedMatMul), 1);
  expect_same_results(net, p.network, {{"seq", 5}}, 1e-9);
}

TEST(Builder, StaticShapeArithmeticIsFolded) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim(3), Dim(4)});
  ValueId shape = net.add_op1(OpKind::kShape, {x});
  ir::Attributes axis;
  axis.set("axis", int64_t(0));
  ValueId first = net.add_op1(OpKind::kGather, {shape, net.add_weight("i", reference::make_tensor(DType::kInt64, {1}, {0}))}, axis);
  ValueId minus1 = net.add_weight("m1", reference::make_tensor(DType::kInt64, {1}, {-1}));
  ValueId target = net.add_op1(OpKind::kConcat, {first, minus1}, axis);
  net.add_output(net.add_op1(OpKind::kReshape, {x, target}));
  net.finalize();
  plan::Plan p = build(net, {});
  EXPECT_EQ(p.network.nodes().size(), 1u) << dump_network(p.network);
  EXPECT_EQ(p.network.nodes()[0].op, OpKind::kReshape);
  expect_same_results(net, p.network, {}, 0);
}

// A vision transformer's patch embedding (kernel == stride, no padding) runs
// as a MatMul over the image's patches; overlapping or padded Convs stay Convs.
TEST(Builder, PatchEmbeddingConvBecomesAMatMul) {
  for (bool with_bias : {true, false}) {
    ir::Network net;
    ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("n"), Dim(3), Dim(16), Dim(24)});
    ir::Attributes patch;
    patch.set("strides", std::vector<int64_t>{8, 4});
    std::vector<ValueId> inputs = {x, net.add_weight("w", random_weight({6, 3, 8, 4}, 3))};
    if (with_bias) inputs.push_back(net.add_weight("b", random_weight({6}, 4)));
    ValueId embedded = net.add_op1(OpKind::kConv, inputs, patch);
    ir::Attributes padded;
    padded.set("pads", std::vector<int64_t>{1, 1, 1, 1});
    ValueId next = net.add_op1(OpKind::kConv, {embedded, net.add_weight("w2", random_weight({5, 6, 3, 3}, 5))}, padded);
    net.add_output(next);
    net.add_output(embedded);
    net.set_dim_range("n", {1, 2, 4});
    net.finalize();
    plan::Plan p = build(net, {});
    EXPECT_EQ(count_ops(p.network, OpKind::kConv), 1) << dump_network(p.network);
    EXPECT_EQ(count_ops(p.network, OpKind::kFusedMatMul), 1) << dump_network(p.network);
    for (int64_t n : {1, 3}) expect_same_results(net, p.network, {{"n", n}}, 1e-6);
  }
}

// The vision transformer's tokens: Conv, flatten(2), transpose(1, 2). After
// the Conv becomes a MatMul the channels-first round trip moves no data, so
// only the image's own patch transpose is left.
TEST(Builder, PatchTokensNeedOnlyTheImageTranspose) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("n"), Dim(3), Dim(32), Dim(32)});
  ir::Attributes patch;
  patch.set("strides", std::vector<int64_t>{8, 8});
  ValueId grid = net.add_op1(OpKind::kConv, {x, net.add_weight("w", random_weight({12, 3, 8, 8}, 3)),
                                             net.add_weight("b", random_weight({12}, 4))}, patch);
  ValueId flat = net.add_op1(OpKind::kReshape, {grid, net.add_weight("s", reference::make_tensor(DType::kInt64, {3}, {0, 12, 16}))});
  ir::Attributes swap;
  swap.set("perm", std::vector<int64_t>{0, 2, 1});
  ValueId tokens = net.add_op1(OpKind::kTranspose, {flat}, swap);
  net.add_output(net.add_op1(OpKind::kRelu, {tokens}));
  net.set_dim_range("n", {1, 2, 4});
  net.finalize();
  plan::Plan p = build(net, {});
  EXPECT_EQ(count_ops(p.network, OpKind::kTranspose), 1) << dump_network(p.network);
  for (int64_t n : {1, 4}) expect_same_results(net, p.network, {{"n", n}}, 1e-6);
}

TEST(Builder, HalfPrecisionStaysClose) {
  ir::Network net = mlp(3, false);
  for (plan::Precision precision : {plan::Precision::kFloat16, plan::Precision::kBFloat16}) {
    BuildOptions options;
    options.precision = precision;
    plan::Plan p = build(net, options);
    EXPECT_EQ(p.network.value(p.network.outputs()[0]).dtype, DType::kFloat32);  // the interface stays float32
    expect_same_results(net, p.network, {{"batch", 2}}, precision == plan::Precision::kFloat16 ? 1e-2 : 4e-2);
  }
}

// The signal generators make their float32 outputs in the plan's precision,
// and MelWeightMatrix's edge frequencies stay float32 (7999 Hz would round to
// 8000 in fp16). Sizes from the input's shape and an edge that is an input
// keep both from being folded into weights.
TEST(Builder, HalfPrecisionSignalGenerators) {
  ir::Network net;
  auto weight = [&](const std::string& name, DType dtype, double v) { return net.add_weight(name, reference::make_tensor(dtype, {}, {v})); };
  ValueId x = net.add_input("x", DType::kFloat32, {Dim(2), Dim::symbol("n")});
  ValueId n = net.add_op1(OpKind::kGather, {net.add_op1(OpKind::kShape, {x}), weight("one", DType::kInt64, 1)});
  net.add_output(net.add_op1(OpKind::kMul, {x, net.add_op1(OpKind::kHannWindow, {n})}));
  net.add_output(net.add_op1(OpKind::kMelWeightMatrix, {weight("mels", DType::kInt64, 33), weight("dft", DType::kInt64, 1000),
                                                         weight("rate", DType::kInt64, 16000), weight("lower", DType::kFloat32, 20),
                                                         weight("upper", DType::kFloat32, 7999)}));
  net.set_dim_range("n", {1, 16, 64});
  net.finalize();
  BuildOptions options;
  options.precision = plan::Precision::kFloat16;
  plan::Plan p = build(net, options);
  EXPECT_EQ(count_ops(p.network, OpKind::kHannWindow), 1) << dump_network(p.network);
  for (const ir::Node& node : p.network.nodes()) {
    if (node.op != OpKind::kMelWeightMatrix) continue;
    for (size_t edge : {3, 4}) EXPECT_EQ(p.network.value(node.inputs[edge]).dtype, DType::kFloat32) << edge;
  }
  std::map<std::string, reference::Tensor> inputs{{"x", random_weight({2, 16}, 5, -1, 1)}};
  auto expected = reference::run(net, inputs), actual = reference::run(p.network, inputs);
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    auto e = ir::read_doubles(expected[i]), a = ir::read_doubles(actual[i]);
    ASSERT_EQ(e.size(), a.size());
    for (size_t k = 0; k < e.size(); ++k) ASSERT_NEAR(a[k], e[k], 2e-3) << "output " << i << " element " << k;
  }
}

TEST(Builder, ArenaSlotsNeverOverlapWhileLive) {
  ir::Network net = mlp(6, false);
  plan::Plan p = build(net, {});
  const ir::Network& lowered = p.network;
  ASSERT_GT(p.arena_bytes, 0);
  std::vector<std::pair<int64_t, int64_t>> live(lowered.values().size(), {INT64_MAX, -1});
  for (size_t n = 0; n < lowered.nodes().size(); ++n) {
    for (ValueId v : lowered.nodes()[n].outputs) live[size_t(v)].first = std::min<int64_t>(live[size_t(v)].first, n);
    for (ValueId v : lowered.nodes()[n].inputs)
      if (v >= 0) live[size_t(v)].second = std::max<int64_t>(live[size_t(v)].second, n);
  }
  int64_t bytes_each = 8 * 32 * 4;  // batch max 8 x 32 floats
  for (size_t a = 0; a < live.size(); ++a)
    for (size_t b = a + 1; b < live.size(); ++b) {
      int64_t oa = p.arena_offset[a], ob = p.arena_offset[b];
      if (oa < 0 || ob < 0) continue;
      bool time_overlap = live[a].first <= live[b].second && live[b].first <= live[a].second;
      bool space_overlap = oa < ob + bytes_each && ob < oa + bytes_each;
      EXPECT_FALSE(time_overlap && space_overlap) << lowered.values()[a].name << " vs " << lowered.values()[b].name;
    }
  EXPECT_LE(p.arena_bytes, 2 * 1024);  // two 1 KiB slots ping-pong through the layers
}

TEST(Builder, SymbolsNeedRanges) {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("len"), Dim(4)});
  ValueId y = net.add_op1(OpKind::kExp, {x});
  net.add_output(net.add_op1(OpKind::kSoftmax, {y}));
  net.finalize();
  try {
    build(net, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("len"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--profile"), std::string::npos) << e.what();
  }
  BuildOptions options;
  add_input_profile(net, "x", {1, 4}, {8, 4}, {64, 4}, options);
  EXPECT_EQ(options.profiles.at(0).at("len").max, 64);
  EXPECT_GT(build(net, options).arena_bytes, 0);
  EXPECT_THROW(add_input_profile(net, "x", {1, 5}, {8, 5}, {64, 5}, options), Error);
  EXPECT_THROW(add_input_profile(net, "nope", {1}, {1}, {1}, options), Error);
}

// x[batch, len] and mask[batch, 4]: two inputs sharing a symbol.
ir::Network two_input_network() {
  ir::Network net;
  ValueId x = net.add_input("x", DType::kFloat32, {Dim::symbol("batch"), Dim::symbol("len")});
  ValueId mask = net.add_input("mask", DType::kFloat32, {Dim::symbol("batch"), Dim(4)});
  net.add_output(net.add_op1(OpKind::kRelu, {net.add_op1(OpKind::kExp, {x})}));
  net.add_output(net.add_op1(OpKind::kRelu, {net.add_op1(OpKind::kExp, {mask})}));
  net.finalize();
  return net;
}

TEST(BuilderProfiles, ThePlanIsMadeForTheUnionOfItsProfiles) {
  ir::Network net = two_input_network();
  BuildOptions options;
  add_input_profile(net, "x", {1, 8}, {4, 16}, {8, 32}, options, 0);
  add_input_profile(net, "x", {9, 8}, {32, 16}, {64, 16}, options, 1);
  plan::Plan p = build(net, options, "two profiles");
  ASSERT_EQ(p.profiles.size(), 2u);
  // Each profile ranges every symbol; mask's batch comes with x's.
  EXPECT_EQ(p.profiles[0].at("batch").max, 8);
  EXPECT_EQ(p.profiles[1].at("batch").min, 9);
  EXPECT_EQ(p.profiles[1].at("len").opt, 16);
  // The network's ranges, which the passes and the memory plan use: smallest min, profile 0's opt, largest max.
  const ir::DimRange& batch = p.network.dim_ranges().at("batch");
  EXPECT_EQ(std::tuple(batch.min, batch.opt, batch.max), std::tuple(1, 4, 64));
  const ir::DimRange& len = p.network.dim_ranges().at("len");
  EXPECT_EQ(std::tuple(len.min, len.opt, len.max), std::tuple(8, 16, 32));
  // The arena holds the largest shapes of either profile: the same as one profile of the union.
  BuildOptions one;
  add_input_profile(net, "x", {1, 8}, {4, 16}, {64, 32}, one);
  EXPECT_EQ(p.arena_bytes, build(net, one).arena_bytes);
  EXPECT_EQ(build(net, one).profiles.size(), 1u);
}

TEST(BuilderProfiles, EveryProfileNeedsARangeForEverySymbolicInputDim) {
  ir::Network net = two_input_network();
  BuildOptions options;
  add_input_profile(net, "mask", {1, 4}, {2, 4}, {8, 4}, options, 0);
  add_input_profile(net, "x", {1, 8}, {2, 8}, {8, 8}, options, 0);
  add_input_profile(net, "mask", {9, 4}, {9, 4}, {16, 4}, options, 1);  // batch, but no len
  try {
    build(net, options);
    FAIL() << "built a profile without a range for len";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("input 'x' dim 1 ('len') has no range in profile 1; give every symbolic input dim a "
                                         "range in every profile"),
              std::string::npos)
        << e.what();
  }
  options.profiles[1]["length"] = {1, 1, 1};  // a symbol no input has: a typo
  try {
    build(net, options);
    FAIL() << "built with a range for an unknown symbol";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("profile 1 has a range for 'length', which no input dim of the network uses"),
              std::string::npos)
        << e.what();
  }
  options.profiles[1].erase("length");
  options.profiles[1]["len"] = {8, 9, 8};  // opt above max
  try {
    build(net, options);
    FAIL() << "built with a range whose opt is above its max";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the range of 'len' in profile 1 is min 8, opt 9, max 8"), std::string::npos) << e.what();
  }
  // The network's own range fills in for a profile that gives none.
  options.profiles[1].erase("len");
  net.set_dim_range("len", {8, 8, 8});
  net.finalize();
  EXPECT_EQ(build(net, options).profiles[1].at("len").max, 8);
}

TEST(BuilderProfiles, AddInputProfileAddsToAGivenProfile) {
  ir::Network net = two_input_network();
  BuildOptions options;
  // Profiles are added in order: 1 cannot come before 0.
  EXPECT_THROW(add_input_profile(net, "x", {1, 8}, {2, 8}, {8, 8}, options, 1), Error);
  EXPECT_TRUE(options.profiles.empty());
  add_input_profile(net, "x", {1, 8}, {2, 8}, {8, 8}, options, 0);
  add_input_profile(net, "x", {9, 8}, {9, 8}, {9, 8}, options, 1);
  EXPECT_EQ(options.profiles.size(), 2u);
  // mask shares batch with x: in one profile both must give it the same range, and nothing is kept on refusal.
  try {
    add_input_profile(net, "mask", {2, 4}, {2, 4}, {8, 4}, options, 0);
    FAIL() << "two ranges for batch in profile 0";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("gives 'batch' 2/2/8, but profile 0 already has 1/2/8"), std::string::npos) << e.what();
  }
  add_input_profile(net, "mask", {1, 4}, {2, 4}, {8, 4}, options, 0);  // the same range: fine
  EXPECT_EQ(options.profiles[0].size(), 2u);
  EXPECT_EQ(build(net, options).profiles.size(), 2u);
}

}  // namespace
}  // namespace kiln::builder
