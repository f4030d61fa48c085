// ONNX's Attention, RMSNormalization and RotaryEmbedding (opset 23 on) as kiln
// ops: results against direct implementations of ONNX's definitions, the
// forms refused, and the builder fusing the decomposed attention.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>

#include "kiln/builder.h"
#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/onnx.h"
#include "kiln/reference.h"
#include "load_error.h"
#include "model_builder.h"

namespace kiln::onnx {
namespace {

using kiln::testing::ModelBuilder;
using kiln::testing::expect_load_error;
using ::onnx::TensorProto;
using Tensors = std::map<std::string, reference::Tensor>;

std::vector<double> numbers(size_t n, int seed) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(double(i) * 0.7 + seed) * 1.5;
  return v;
}

std::vector<std::string> dims_text(const std::vector<int64_t>& dims) {
  std::vector<std::string> out;
  for (int64_t d : dims) out.push_back(std::to_string(d));
  return out;
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << what << " element " << i;
}

// ---- Attention -------------------------------------------------------------------

// ONNX's Attention on [B, H, S, D] tensors, written out: query head h reads KV
// head h / (H / Hkv); mask[b][h][i][j] false (or -inf added) leaves key j out;
// causal leaves out j > i + offset; an empty row is zero.
struct AttentionCase {
  int64_t batch = 1, heads = 2, kv_heads = 2, q_len = 3, kv_len = 3, head_dim = 4;
  bool causal = false;
  int64_t offset = 0;
  double softcap = 0;
  std::vector<double> q, k, v;
  std::vector<bool> allowed;  // [B, H, Sq, Skv] when given
};

std::vector<double> naive_attention(const AttentionCase& c) {
  std::vector<double> out(size_t(c.batch * c.heads * c.q_len * c.head_dim), 0.0);
  double scale = 1.0 / std::sqrt(double(c.head_dim));
  int64_t group = c.heads / c.kv_heads;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.q_len; ++i) {
        std::vector<double> s(size_t(c.kv_len), -INFINITY);
        double top = -INFINITY;
        for (int64_t j = 0; j < c.kv_len; ++j) {
          bool keep = !(c.causal && j > i + c.offset) &&
                      (c.allowed.empty() || c.allowed[size_t(((b * c.heads + h) * c.q_len + i) * c.kv_len + j)]);
          if (!keep) continue;
          double dot = 0;
          for (int64_t d = 0; d < c.head_dim; ++d)
            dot += c.q[size_t(((b * c.heads + h) * c.q_len + i) * c.head_dim + d)] *
                   c.k[size_t(((b * c.kv_heads + h / group) * c.kv_len + j) * c.head_dim + d)];
          s[size_t(j)] = c.softcap > 0 ? c.softcap * std::tanh(dot * scale / c.softcap) : dot * scale;
          top = std::max(top, s[size_t(j)]);
        }
        if (top == -INFINITY) continue;  // every key left out: a zero row
        double sum = 0;
        for (double& x : s) sum += x = std::exp(x - top);
        for (int64_t d = 0; d < c.head_dim; ++d)
          for (int64_t j = 0; j < c.kv_len; ++j)
            out[size_t(((b * c.heads + h) * c.q_len + i) * c.head_dim + d)] +=
                s[size_t(j)] / sum * c.v[size_t(((b * c.kv_heads + h / group) * c.kv_len + j) * c.head_dim + d)];
      }
  return out;
}

AttentionCase make_case(int64_t heads, int64_t kv_heads, int64_t q_len, int64_t kv_len) {
  AttentionCase c;
  c.heads = heads;
  c.kv_heads = kv_heads;
  c.q_len = q_len;
  c.kv_len = kv_len;
  c.q = numbers(size_t(heads * q_len * c.head_dim), 1);
  c.k = numbers(size_t(kv_heads * kv_len * c.head_dim), 2);
  c.v = numbers(size_t(kv_heads * kv_len * c.head_dim), 3);
  return c;
}

// An Attention node over 4-D inputs Q, K, V (the model's node 0).
ModelBuilder attention_model(const AttentionCase& c, int opset) {
  ModelBuilder m(opset);
  m.input("q", TensorProto::FLOAT, dims_text({c.batch, c.heads, c.q_len, c.head_dim}));
  m.input("k", TensorProto::FLOAT, dims_text({c.batch, c.kv_heads, c.kv_len, c.head_dim}));
  m.input("v", TensorProto::FLOAT, dims_text({c.batch, c.kv_heads, c.kv_len, c.head_dim}));
  auto& n = m.node("Attention", {"q", "k", "v"}, {"y"});
  if (c.causal) ModelBuilder::attr(n, "is_causal", int64_t(1));
  if (c.softcap > 0) ModelBuilder::attr(n, "softcap", float(c.softcap));
  m.output("y");
  return m;
}

Tensors attention_inputs(const AttentionCase& c) {
  return {{"q", reference::make_tensor(DType::kFloat32, {c.batch, c.heads, c.q_len, c.head_dim}, c.q)},
          {"k", reference::make_tensor(DType::kFloat32, {c.batch, c.kv_heads, c.kv_len, c.head_dim}, c.k)},
          {"v", reference::make_tensor(DType::kFloat32, {c.batch, c.kv_heads, c.kv_len, c.head_dim}, c.v)}};
}

std::vector<reference::Tensor> run(const ModelBuilder& m, const Tensors& inputs) {
  return reference::run(load_model_bytes(m.bytes()), inputs);
}

TEST(OnnxAttention, PlainCausalGroupedAndSoftCapped) {
  for (auto [heads, kv_heads] : {std::pair<int64_t, int64_t>{2, 2}, {4, 2}, {4, 1}})
    for (bool causal : {false, true})
      for (double softcap : {0.0, 2.0}) {
        AttentionCase c = make_case(heads, kv_heads, 3, causal ? 3 : 5);
        c.causal = causal;
        c.softcap = softcap;
        auto y = run(attention_model(c, 23), attention_inputs(c));
        expect_near(ir::read_doubles(y[0]), naive_attention(c), 1e-5,
                    str(heads, "/", kv_heads, " heads, causal ", causal, ", softcap ", softcap));
      }
}

// 3-D inputs [B, S, H*D] with q_num_heads and kv_num_heads: heads split off
// the last dim and merged back.
TEST(OnnxAttention, ThreeDimensionalInputsWithHeadCounts) {
  AttentionCase c = make_case(4, 2, 3, 5);
  auto to_3d = [](const std::vector<double>& x, int64_t heads, int64_t len, int64_t d) {  // [1, H, S, D] -> [1, S, H*D]
    std::vector<double> out(x.size());
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t s = 0; s < len; ++s)
        for (int64_t e = 0; e < d; ++e) out[size_t((s * heads + h) * d + e)] = x[size_t((h * len + s) * d + e)];
    return out;
  };
  ModelBuilder m(23);
  m.input("q", TensorProto::FLOAT, {"1", "3", "16"});
  m.input("k", TensorProto::FLOAT, {"1", "5", "8"});
  m.input("v", TensorProto::FLOAT, {"1", "5", "8"});
  auto& n = m.node("Attention", {"q", "k", "v"}, {"y"});
  ModelBuilder::attr(n, "q_num_heads", int64_t(4));
  ModelBuilder::attr(n, "kv_num_heads", int64_t(2));
  m.output("y");
  auto y = run(m, {{"q", reference::make_tensor(DType::kFloat32, {1, 3, 16}, to_3d(c.q, 4, 3, 4))},
                   {"k", reference::make_tensor(DType::kFloat32, {1, 5, 8}, to_3d(c.k, 2, 5, 4))},
                   {"v", reference::make_tensor(DType::kFloat32, {1, 5, 8}, to_3d(c.v, 2, 5, 4))}});
  EXPECT_EQ(y[0].dims, (std::vector<int64_t>{1, 3, 16}));
  expect_near(ir::read_doubles(y[0]), to_3d(naive_attention(c), 4, 3, 4), 1e-5, "3-D");
}

// A bool mask (with a row it empties: zero, not NaN) and a float mask shorter
// than the keys (the keys after it are left out).
TEST(OnnxAttention, BoolAndFloatMasks) {
  AttentionCase c = make_case(2, 2, 3, 4);
  c.allowed.resize(size_t(2 * 3 * 4));
  for (size_t i = 0; i < c.allowed.size(); ++i) c.allowed[i] = (i * 7) % 3 != 0;
  for (size_t j = 0; j < 4; ++j) c.allowed[4 + j] = false;  // head 0, row 1: every key out
  ModelBuilder m = attention_model(c, 23);
  m.input("mask", TensorProto::BOOL, {"1", "2", "3", "4"});
  m.graph().mutable_node(0)->add_input("mask");
  std::vector<double> bits(c.allowed.begin(), c.allowed.end());
  Tensors in = attention_inputs(c);
  in["mask"] = reference::make_tensor(DType::kBool, {1, 2, 3, 4}, bits);
  expect_near(ir::read_doubles(run(m, in)[0]), naive_attention(c), 1e-5, "bool mask");

  AttentionCase f = make_case(2, 2, 3, 4);
  ModelBuilder mf = attention_model(f, 23);
  mf.input("mask", TensorProto::FLOAT, {"3", "3"});
  mf.graph().mutable_node(0)->add_input("mask");
  std::vector<double> bias = {0, -1, 0.5, -INFINITY, 0, 0, 1, -2, 0};
  Tensors fin = attention_inputs(f);
  fin["mask"] = reference::make_tensor(DType::kFloat32, {3, 3}, bias);
  // The same as a 4-key mask whose last key is -inf: compare with the additive bias written out.
  std::vector<double> want(size_t(2 * 3 * 4), 0.0);
  double scale = 0.5;
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t i = 0; i < 3; ++i) {
      std::vector<double> s(4, -INFINITY);
      double top = -INFINITY, sum = 0;
      for (int64_t j = 0; j < 3; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < 4; ++d) dot += f.q[size_t((h * 3 + i) * 4 + d)] * f.k[size_t((h * 4 + j) * 4 + d)];
        s[size_t(j)] = dot * scale + bias[size_t(i * 3 + j)];
        top = std::max(top, s[size_t(j)]);
      }
      for (double& x : s) sum += x = std::exp(x - top);
      for (int64_t d = 0; d < 4; ++d)
        for (int64_t j = 0; j < 4; ++j) want[size_t((h * 3 + i) * 4 + d)] += s[size_t(j)] / sum * f.v[size_t((h * 4 + j) * 4 + d)];
    }
  expect_near(ir::read_doubles(run(mf, fin)[0]), want, 1e-5, "float mask");
}

// past_key/past_value go in front of K and V (present_key/value); causal
// attention then sees the past too (offset = the past's length).
TEST(OnnxAttention, PastAndPresentWithCausalOffset) {
  AttentionCase c = make_case(2, 2, 2, 5);  // 3 past keys and 2 new ones
  c.causal = true;
  c.offset = 3;
  auto slice = [](const std::vector<double>& x, int64_t heads, int64_t len, int64_t from, int64_t count) {
    std::vector<double> out;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t s = from; s < from + count; ++s)
        for (int64_t d = 0; d < 4; ++d) out.push_back(x[size_t((h * len + s) * 4 + d)]);
    return out;
  };
  ModelBuilder m(23);
  m.input("q", TensorProto::FLOAT, {"1", "2", "2", "4"});
  for (const char* name : {"k", "v"}) m.input(name, TensorProto::FLOAT, {"1", "2", "2", "4"});
  for (const char* name : {"past_k", "past_v"}) m.input(name, TensorProto::FLOAT, {"1", "2", "3", "4"});
  ModelBuilder::attr(m.node("Attention", {"q", "k", "v", "", "past_k", "past_v"}, {"y", "present_k", "present_v"}), "is_causal",
                     int64_t(1));
  for (const char* name : {"y", "present_k", "present_v"}) m.output(name);
  auto t = [](const std::vector<double>& x, int64_t len) { return reference::make_tensor(DType::kFloat32, {1, 2, len, 4}, x); };
  auto out = run(m, {{"q", t(c.q, 2)},
                     {"k", t(slice(c.k, 2, 5, 3, 2), 2)},
                     {"v", t(slice(c.v, 2, 5, 3, 2), 2)},
                     {"past_k", t(slice(c.k, 2, 5, 0, 3), 3)},
                     {"past_v", t(slice(c.v, 2, 5, 0, 3), 3)}});
  expect_near(ir::read_doubles(out[0]), naive_attention(c), 1e-5, "y");
  expect_near(ir::read_doubles(out[1]), c.k, 1e-6, "present_key");
  expect_near(ir::read_doubles(out[2]), c.v, 1e-6, "present_value");
}

// The fourth output at each qk_matmul_output_mode: the scaled scores, after
// the softcap, after the bias, after the softmax.
TEST(OnnxAttention, QkMatmulOutputModes) {
  AttentionCase c = make_case(1, 1, 2, 2);
  c.causal = true;
  c.softcap = 3;
  double s = 0.5;
  std::vector<double> raw(4);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 2; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < 4; ++d) dot += c.q[size_t(i * 4 + d)] * c.k[size_t(j * 4 + d)];
      raw[size_t(i * 2 + j)] = dot * s;
    }
  std::vector<double> capped(4), biased(4), probs(4);
  for (size_t i = 0; i < 4; ++i) capped[i] = 3 * std::tanh(raw[i] / 3);
  biased = capped;
  biased[1] = -INFINITY;
  double e0 = std::exp(capped[2] - std::max(capped[2], capped[3])), e1 = std::exp(capped[3] - std::max(capped[2], capped[3]));
  probs = {1, 0, e0 / (e0 + e1), e1 / (e0 + e1)};
  std::vector<std::vector<double>> want = {raw, capped, biased, probs};
  for (int64_t mode = 0; mode < 4; ++mode) {
    ModelBuilder m = attention_model(c, 24);
    ::onnx::NodeProto* n = m.graph().mutable_node(0);
    ModelBuilder::attr(*n, "qk_matmul_output_mode", mode);
    for (const char* extra : {"", "", "qk"}) n->add_output(extra);
    m.output("qk");
    auto out = run(m, attention_inputs(c));
    std::vector<double> got = ir::read_doubles(out[1]);
    ASSERT_EQ(got.size(), 4u);
    for (size_t i = 0; i < 4; ++i) {
      if (std::isinf(want[size_t(mode)][i])) EXPECT_EQ(got[i], want[size_t(mode)][i]) << mode;
      else EXPECT_NEAR(got[i], want[size_t(mode)][i], 1e-5) << "mode " << mode << " element " << i;
    }
  }
}

// Opset 24's nonpad_kv_seqlen (keys past it left out, the causal diagonal
// shifted per batch) and opset 25's windows.
TEST(OnnxAttention, NonpadLengthsAndWindows) {
  AttentionCase c = make_case(1, 1, 2, 4);
  c.batch = 2;
  c.q = numbers(size_t(2 * 2 * 4), 4);
  c.k = numbers(size_t(2 * 4 * 4), 5);
  c.v = numbers(size_t(2 * 4 * 4), 6);
  ModelBuilder m = attention_model(c, 24);
  ModelBuilder::attr(*m.graph().mutable_node(0), "is_causal", int64_t(1));
  m.int_initializer("nonpad", {2}, {3, 4});
  for (const char* in : {"", "", "", "nonpad"}) m.graph().mutable_node(0)->add_input(in);
  c.allowed.resize(size_t(2 * 2 * 4));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 4; ++j) c.allowed[size_t((b * 2 + i) * 4 + j)] = j < 3 + b && j <= i + (3 + b) - 2;
  expect_near(ir::read_doubles(run(m, attention_inputs(c))[0]), naive_attention(c), 1e-5, "nonpad");

  AttentionCase w = make_case(1, 1, 4, 4);
  ModelBuilder mw = attention_model(w, 25);
  ModelBuilder::attr(*mw.graph().mutable_node(0), "left_window_size", int64_t(1));
  ModelBuilder::attr(*mw.graph().mutable_node(0), "right_window_size", int64_t(0));
  w.allowed.resize(16);
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 4; ++j) w.allowed[size_t(i * 4 + j)] = j >= i - 1 && j <= i;
  expect_near(ir::read_doubles(run(mw, attention_inputs(w))[0]), naive_attention(w), 1e-5, "window");
}

TEST(OnnxAttention, RefusedForms) {
  AttentionCase c = make_case(2, 2, 3, 3);
  ModelBuilder window = attention_model(c, 23);
  ModelBuilder::attr(*window.graph().mutable_node(0), "left_window_size", int64_t(2));
  expect_load_error(window, ErrorCode::kUnsupported,
               {"node 'Attention_0' (Attention, opset 23)", "attribute 'left_window_size' is not one of Attention-23's"});

  ModelBuilder heads = attention_model(c, 25);
  ModelBuilder::attr(*heads.graph().mutable_node(0), "q_num_heads", int64_t(2));
  expect_load_error(heads, ErrorCode::kInvalidModel, {"(Attention, opset 25)", "for 3-D inputs only"});

  ModelBuilder old = attention_model(c, 22);
  expect_load_error(old, ErrorCode::kInvalidModel, {"ONNX opset 22 has no Attention"});

  // Read before a node makes it: kiln needs the nodes in order to see Q's type.
  ModelBuilder unsorted(23);
  unsorted.input("x", TensorProto::FLOAT, {"1", "2", "3", "4"});
  unsorted.node("Attention", {"q", "x", "x"}, {"y"});
  unsorted.node("Relu", {"x"}, {"q"});
  unsorted.output("y");
  expect_load_error(unsorted, ErrorCode::kInvalidModel, {"input 0 (Q, 'q') is read before a node makes it", "topological order"});
}

// ONNX's Attention is ONNX's, not kiln's fused op of the same name: the import
// holds no kiln Attention node, and the builder fuses plain and causal
// attention (4-D, and 3-D with its head split) into one.
TEST(OnnxAttention, TheBuilderFusesPlainAndCausalAttention) {
  auto count = [](const ir::Network& net, ir::OpKind op) {
    return std::count_if(net.nodes().begin(), net.nodes().end(), [&](const ir::Node& n) { return n.op == op; });
  };
  for (bool causal : {false, true}) {
    AttentionCase c = make_case(2, 2, 4, 4);
    c.causal = causal;
    ir::Network net = load_model_bytes(attention_model(c, 23).bytes());
    EXPECT_EQ(count(net, ir::OpKind::kAttention), 0);
    builder::BuildOptions options;
    options.progress = [](const std::string&) {};
    plan::Plan p = builder::build(net, options);
    EXPECT_EQ(count(p.network, ir::OpKind::kAttention), 1) << ir::dump_network(p.network);
    EXPECT_EQ(count(p.network, ir::OpKind::kSoftmax), 0) << ir::dump_network(p.network);
    for (const ir::Node& n : p.network.nodes()) {
      if (n.op == ir::OpKind::kAttention) {
        EXPECT_EQ(n.attrs.get_int("causal", 0), causal ? 1 : 0);
      }
    }
    expect_near(ir::read_doubles(reference::run(p.network, attention_inputs(c))[0]), naive_attention(c), 1e-5, "fused");
  }
  ModelBuilder m(23);
  m.input("q", TensorProto::FLOAT, {"1", "4", "8"});
  m.input("kv", TensorProto::FLOAT, {"1", "4", "8"});
  auto& n = m.node("Attention", {"q", "kv", "kv"}, {"y"});
  ModelBuilder::attr(n, "q_num_heads", int64_t(2));
  ModelBuilder::attr(n, "kv_num_heads", int64_t(2));
  m.output("y");
  builder::BuildOptions options;
  options.progress = [](const std::string&) {};
  plan::Plan p = builder::build(load_model_bytes(m.bytes()), options);
  EXPECT_EQ(count(p.network, ir::OpKind::kAttention), 1) << ir::dump_network(p.network);
}

// ---- RMSNormalization and RotaryEmbedding --------------------------------------------

TEST(OnnxRmsNormalization, OverTheLastAxesInTheStashType) {
  std::vector<double> x = numbers(24, 7), scale = {0.5, -2, 1.5, 1};
  for (int64_t axis : {-1, 1}) {
    ModelBuilder m(23);
    m.input("x", TensorProto::FLOAT, {"2", "3", "4"});
    int64_t width = axis == -1 ? 4 : 12;
    std::vector<float> s(static_cast<size_t>(width));
    for (size_t i = 0; i < s.size(); ++i) s[i] = float(scale[i % 4]);
    m.initializer("scale", axis == -1 ? std::vector<int64_t>{4} : std::vector<int64_t>{3, 4}, s);
    auto& n = m.node("RMSNormalization", {"x", "scale"}, {"y"});
    ModelBuilder::attr(n, "axis", axis);
    ModelBuilder::attr(n, "epsilon", 0.01f);
    m.output("y");
    std::vector<double> want(x.size());
    for (size_t row = 0; row < x.size() / size_t(width); ++row) {
      double mean_square = 0;
      for (int64_t i = 0; i < width; ++i) mean_square += x[row * size_t(width) + size_t(i)] * x[row * size_t(width) + size_t(i)] / double(width);
      for (int64_t i = 0; i < width; ++i)
        want[row * size_t(width) + size_t(i)] = x[row * size_t(width) + size_t(i)] / std::sqrt(mean_square + 0.01) * s[size_t(i)];
    }
    expect_near(ir::read_doubles(run(m, {{"x", reference::make_tensor(DType::kFloat32, {2, 3, 4}, x)}})[0]), want, 1e-5,
                str("axis ", axis));
  }
  ModelBuilder bad(23);
  bad.input("x", TensorProto::FLOAT, {"2", "4"});
  bad.initializer("scale", {4}, {1, 1, 1, 1});
  ModelBuilder::attr(bad.node("RMSNormalization", {"x", "scale"}, {"y"}), "stash_type", int64_t(TensorProto::INT32));
  bad.output("y");
  expect_load_error(bad, ErrorCode::kInvalidModel, {"(RMSNormalization, opset 23)", "stash_type 6"});
}

// RoPE on [B, H, S, D] (halves rotated) and on [B, S, H*D] with num_heads,
// position_ids, interleaved pairs and a partial rotary_embedding_dim.
TEST(OnnxRotaryEmbedding, HalvesAndInterleavedPairs) {
  const int64_t heads = 2, seq = 3, d = 6;
  std::vector<double> x = numbers(size_t(heads * seq * d), 8);
  for (bool interleaved : {false, true}) {
    int64_t rotary = interleaved ? 4 : 0, r = rotary ? rotary : d;
    std::vector<double> angles(size_t(5 * r / 2));
    for (size_t i = 0; i < angles.size(); ++i) angles[i] = 0.3 * double(i);
    std::vector<float> cos(angles.size()), sin(angles.size());
    for (size_t i = 0; i < angles.size(); ++i) {
      cos[i] = float(std::cos(angles[i]));
      sin[i] = float(std::sin(angles[i]));
    }
    std::vector<int64_t> positions = {4, 0, 2};
    ModelBuilder m(23);
    m.initializer("cos", {5, r / 2}, cos);
    m.initializer("sin", {5, r / 2}, sin);
    m.int_initializer("pos", {1, seq}, positions);
    if (interleaved) m.input("x", TensorProto::FLOAT, {"1", "3", "12"});
    else m.input("x", TensorProto::FLOAT, {"1", "2", "3", "6"});
    auto& n = m.node("RotaryEmbedding", {"x", "cos", "sin", "pos"}, {"y"});
    if (interleaved) {
      ModelBuilder::attr(n, "interleaved", int64_t(1));
      ModelBuilder::attr(n, "num_heads", heads);
      ModelBuilder::attr(n, "rotary_embedding_dim", rotary);
    }
    m.output("y");
    // x as [S, H, D] (3-D) or [H, S, D] (4-D); element (h, s, e).
    auto at = [&](int64_t h, int64_t s, int64_t e) { return size_t(interleaved ? (s * heads + h) * d + e : (h * seq + s) * d + e); };
    std::vector<double> input(x.size()), want(x.size());
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t s = 0; s < seq; ++s)
        for (int64_t e = 0; e < d; ++e) input[at(h, s, e)] = x[size_t((h * seq + s) * d + e)];
    want = input;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t s = 0; s < seq; ++s)
        for (int64_t i = 0; i < r / 2; ++i) {
          double c = cos[size_t(positions[size_t(s)] * (r / 2) + i)], sn = sin[size_t(positions[size_t(s)] * (r / 2) + i)];
          int64_t e1 = interleaved ? 2 * i : i, e2 = interleaved ? 2 * i + 1 : i + r / 2;
          double x1 = input[at(h, s, e1)], x2 = input[at(h, s, e2)];
          want[at(h, s, e1)] = c * x1 - sn * x2;
          want[at(h, s, e2)] = sn * x1 + c * x2;
        }
    auto shape = interleaved ? std::vector<int64_t>{1, 3, 12} : std::vector<int64_t>{1, 2, 3, 6};
    auto y = run(m, {{"x", reference::make_tensor(DType::kFloat32, shape, input)}});
    EXPECT_EQ(y[0].dims, shape);
    expect_near(ir::read_doubles(y[0]), want, 1e-5, interleaved ? "interleaved, 3-D" : "halves, 4-D");
  }
}

// Swish-24, SwiGLU-28 and Mish-18 as elementwise ops.
TEST(OnnxActivations, SwishSwiGluAndMish) {
  std::vector<double> a = {-2, -0.5, 0, 1.5}, gate = {3, -1, 2, 0.5};
  auto sigmoid = [](double v) { return 1 / (1 + std::exp(-v)); };
  struct Case {
    const char* op;
    int opset;
    float alpha;
    std::vector<double> want;
  };
  std::vector<Case> cases = {{"Swish", 24, 1.5f, {}}, {"SwiGLU", 28, 1.0f, {}}, {"Mish", 18, 1.0f, {}}};
  for (size_t i = 0; i < a.size(); ++i) {
    cases[0].want.push_back(a[i] * sigmoid(1.5 * a[i]));
    cases[1].want.push_back(a[i] * sigmoid(a[i]) * gate[i]);
    cases[2].want.push_back(a[i] * std::tanh(std::log1p(std::exp(a[i]))));
  }
  for (const Case& c : cases) {
    ModelBuilder m(c.opset);
    m.input("a", TensorProto::FLOAT, {"4"});
    m.input("b", TensorProto::FLOAT, {"4"});
    auto& n = std::string(c.op) == "SwiGLU" ? m.node(c.op, {"a", "b"}, {"y"}) : m.node(c.op, {"a"}, {"y"});
    if (std::string(c.op) == "Swish") ModelBuilder::attr(n, "alpha", c.alpha);
    m.output("y");
    auto y = run(m, {{"a", reference::make_tensor(DType::kFloat32, {4}, a)}, {"b", reference::make_tensor(DType::kFloat32, {4}, gate)}});
    expect_near(ir::read_doubles(y[0]), c.want, 1e-6, c.op);
  }
}

// ---- FlexAttention (ai.onnx.preview) ------------------------------------------------

// Q, K, V [1, 2, 3, 4] into FlexAttention with a score_mod of `mod_inputs`
// inputs (an Add of the first two, or an Identity).
ModelBuilder flex_attention_model(int mod_inputs) {
  ModelBuilder m(26);
  auto* preview = m.model().add_opset_import();
  preview->set_domain("ai.onnx.preview");
  preview->set_version(1);
  for (const char* name : {"q", "k", "v"}) m.input(name, TensorProto::FLOAT, {"1", "2", "3", "4"});
  ::onnx::NodeProto& node = m.node("FlexAttention", {"q", "k", "v"}, {"y"});
  node.set_domain("ai.onnx.preview");
  ::onnx::AttributeProto* mod = node.add_attribute();
  mod->set_name("score_mod");
  mod->set_type(::onnx::AttributeProto::GRAPH);
  ::onnx::GraphProto* g = mod->mutable_g();
  g->set_name("score_mod");
  for (int i = 0; i < mod_inputs; ++i) {
    auto* in = g->add_input();
    in->set_name(str("s", i));
    in->mutable_type()->mutable_tensor_type()->set_elem_type(TensorProto::FLOAT);
  }
  ::onnx::NodeProto* body = g->add_node();
  body->set_op_type(mod_inputs > 1 ? "Add" : "Identity");
  body->add_input("s0");
  if (mod_inputs > 1) body->add_input("s1");
  body->add_output("out");
  g->add_output()->set_name("out");
  m.output("y");
  return m;
}

TEST(OnnxFlexAttention, ReadsItsScoreModAndRefusesMalformedOnes) {
  auto net = kiln::onnx::load_model_bytes(flex_attention_model(1).bytes());
  std::map<std::string, ir::TensorData> feeds;
  for (const char* name : {"q", "k", "v"}) feeds[name] = reference::make_tensor(DType::kFloat32, {1, 2, 3, 4}, numbers(24, int(name[0])));
  // With an identity score_mod: softmax(Q K^T / 2) V per head.
  std::vector<double> y = ir::read_doubles(reference::run(net, feeds).at(0)), want;
  std::vector<double> q = numbers(24, 'q'), k = numbers(24, 'k'), v = numbers(24, 'v');
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 3; ++i) {
      std::vector<double> p(3);
      double total = 0;
      for (int j = 0; j < 3; ++j) {
        double dot = 0;
        for (int d = 0; d < 4; ++d) dot += q[size_t((h * 3 + i) * 4 + d)] * k[size_t((h * 3 + j) * 4 + d)];
        total += p[size_t(j)] = std::exp(dot / 2);
      }
      for (int d = 0; d < 4; ++d) {
        double acc = 0;
        for (int j = 0; j < 3; ++j) acc += p[size_t(j)] / total * v[size_t((h * 3 + j) * 4 + d)];
        want.push_back(acc);
      }
    }
  expect_near(y, want, 1e-5, "flex attention");

  expect_load_error(flex_attention_model(2), ErrorCode::kInvalidModel,
                    {"(ai.onnx.preview::FlexAttention)", "has 2 inputs and 1 outputs; a modifier takes one tensor and makes one"});
  ModelBuilder unknown = flex_attention_model(1);
  ModelBuilder::attr(*unknown.graph().mutable_node(0), "window", int64_t(2));
  expect_load_error(unknown, ErrorCode::kUnsupported, {"attribute 'window' is not one of FlexAttention-1's"});
  ModelBuilder other = flex_attention_model(1);
  other.graph().mutable_node(0)->set_op_type("SparseAttention");
  expect_load_error(other, ErrorCode::kUnsupported, {"unsupported ops: ai.onnx.preview::SparseAttention (1)"});
}

}  // namespace
}  // namespace kiln::onnx
