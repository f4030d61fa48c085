// The recurrent family's reference kernels against values worked out by hand
// from the ONNX equations: one-unit layers whose steps can be written out,
// sequence_lens in both directions, GRU's two reset orders, LSTM's peepholes,
// input_forget and clip, and layout 1 as the transpose of layout 0.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/reference.h"

namespace kiln::reference {
namespace {

using ir::OpKind;

std::vector<double> values(const Tensor& t) {
  std::vector<double> out;
  for (int64_t i = 0; i < t.numel(); ++i) out.push_back(t.data.as<double>()[i]);
  return out;
}

ir::Attributes attrs(std::initializer_list<std::pair<const char*, ir::AttrValue>> list) {
  ir::Attributes a;
  for (auto& [name, value] : list) a.set(name, value);
  return a;
}

Tensor f64(std::vector<int64_t> dims, std::vector<double> v) { return make_tensor(DType::kFloat64, std::move(dims), v); }

// Inputs in ONNX's order (X, W, R, B, sequence_lens, initial_h, initial_c, P); nullopt: absent.
std::vector<Tensor> run_layer(OpKind op, const ir::Attributes& a, const std::vector<std::optional<Tensor>>& in, int outputs) {
  ir::Network net;
  std::vector<ir::ValueId> ids;
  std::map<std::string, Tensor> feed;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i]) {
      ids.push_back(ir::kNoValue);
      continue;
    }
    std::string name = str("in", i);
    ids.push_back(net.add_input(name, in[i]->dtype, ir::shape_of(in[i]->dims)));
    feed[name] = *in[i];
  }
  std::vector<ir::ValueId> out = net.add_op(op, ids, a, outputs, "layer");
  for (ir::ValueId v : out) net.add_output(v);
  net.finalize();
  return run(net, feed);
}

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

TEST(ReferenceRecurrent, RnnStepsByHand) {
  // One unit: h_t = tanh(2 x_t + 0.5 h_{t-1} + 0.1 + 0.2).
  auto out = run_layer(OpKind::kRNN, {}, {f64({2, 1, 1}, {1, -1}), f64({1, 1, 1}, {2}), f64({1, 1, 1}, {0.5}), f64({1, 2}, {0.1, 0.2})}, 2);
  double h1 = std::tanh(2.3), h2 = std::tanh(-2 + 0.5 * h1 + 0.3);
  ASSERT_EQ(out[0].dims, (std::vector<int64_t>{2, 1, 1, 1}));
  EXPECT_DOUBLE_EQ(values(out[0])[0], h1);
  EXPECT_DOUBLE_EQ(values(out[0])[1], h2);
  EXPECT_DOUBLE_EQ(values(out[1])[0], h2);
}

TEST(ReferenceRecurrent, SequenceLensInEitherDirection) {
  // Affine(1, 0) is the identity: h = x + 0.5 h. Rows of lengths 2 and 1, initial states 0.5 and -1.
  ir::Attributes a = attrs({{"activations", std::vector<std::string>{"Affine"}}, {"activation_alpha", std::vector<double>{1.0}},
                            {"activation_beta", std::vector<double>{0.0}}, {"direction", std::string("reverse")}});
  Tensor x = f64({2, 2, 1}, {1, 3, 2, 4});  // [t][b]: row 0 is 1, 2; row 1 is 3, 4
  Tensor lens = make_tensor(DType::kInt32, {2}, {2, 1});
  auto in = std::vector<std::optional<Tensor>>{x, f64({1, 1, 1}, {1}), f64({1, 1, 1}, {0.5}), std::nullopt, lens, f64({1, 2, 1}, {0.5, -1})};
  auto out = run_layer(OpKind::kRNN, a, in, 2);
  // Row 0 walks t = 1 (2 + 0.25), then t = 0 (1 + 1.125); row 1 runs t = 0 only (3 - 0.5) and its t = 1 is zero.
  EXPECT_EQ(values(out[0]), (std::vector<double>{2.125, 2.5, 2.25, 0}));
  EXPECT_EQ(values(out[1]), (std::vector<double>{2.125, 2.5}));
  a.set("direction", std::string("forward"));
  out = run_layer(OpKind::kRNN, a, in, 2);
  // Row 0: t = 0 gives 1.25, t = 1 gives 2.625; row 1: 2.5, then it stops.
  EXPECT_EQ(values(out[0]), (std::vector<double>{1.25, 2.5, 2.625, 0}));
  EXPECT_EQ(values(out[1]), (std::vector<double>{2.625, 2.5}));
  // A length of 0 keeps the initial state; lengths beyond the sequence are errors.
  in[4] = make_tensor(DType::kInt32, {2}, {0, 2});
  EXPECT_EQ(values(run_layer(OpKind::kRNN, a, in, 2)[1]), (std::vector<double>{0.5, 4 + 0.5 * (3 - 0.5)}));
  in[4] = make_tensor(DType::kInt32, {2}, {3, 1});
  try {
    run_layer(OpKind::kRNN, a, in, 2);
    FAIL() << "a length past the sequence ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sequence_lens[0] is 3; it must lie in [0, 2]"), std::string::npos) << e.what();
  }
}

TEST(ReferenceRecurrent, GruResetsBeforeOrAfterItsProduct) {
  // One unit, one step: gates z, r, h with W = (0.5, -1, 2), R = (0.3, 0.7, -0.4), biases Wb = (0.1, 0.2, 0.3), Rb = (-0.1, 0.4, 0.6).
  double x = 0.8, h0 = -0.6;
  std::vector<std::optional<Tensor>> in{f64({1, 1, 1}, {x}), f64({1, 3, 1}, {0.5, -1, 2}), f64({1, 3, 1}, {0.3, 0.7, -0.4}),
                                        f64({1, 6}, {0.1, 0.2, 0.3, -0.1, 0.4, 0.6}), std::nullopt, f64({1, 1, 1}, {h0})};
  double z = sigmoid(0.5 * x + 0.3 * h0 + 0.1 - 0.1), r = sigmoid(-x + 0.7 * h0 + 0.2 + 0.4);
  double reset_first = std::tanh(2 * x + (r * h0) * -0.4 + 0.3 + 0.6);
  double reset_after = std::tanh(2 * x + r * (h0 * -0.4 + 0.6) + 0.3);
  auto out = run_layer(OpKind::kGRU, {}, in, 2);
  EXPECT_NEAR(values(out[1])[0], (1 - z) * reset_first + z * h0, 1e-12);
  out = run_layer(OpKind::kGRU, attrs({{"linear_before_reset", int64_t(1)}}), in, 2);
  EXPECT_NEAR(values(out[1])[0], (1 - z) * reset_after + z * h0, 1e-12);
  EXPECT_GT(std::fabs(reset_first - reset_after), 1e-3);  // the case tells the two apart
}

TEST(ReferenceRecurrent, LstmPeepholesInputForgetAndClip) {
  // One unit, one step; gates i, o, f, c; peepholes i, o, f.
  double x = 0.5, h0 = 0.25, c0 = -0.8;
  std::vector<double> w{1, -2, 0.5, 3}, r{0.2, 0.4, -0.6, 0.8}, p{0.3, -0.7, 0.9};
  std::vector<std::optional<Tensor>> in{f64({1, 1, 1}, {x}), f64({1, 4, 1}, w), f64({1, 4, 1}, r), std::nullopt, std::nullopt,
                                        f64({1, 1, 1}, {h0}), f64({1, 1, 1}, {c0}), f64({1, 3}, p)};
  auto pre = [&](int g) { return w[size_t(g)] * x + r[size_t(g)] * h0; };
  double i = sigmoid(pre(0) + p[0] * c0), f = sigmoid(pre(2) + p[2] * c0), c = std::tanh(pre(3));
  double cell = f * c0 + i * c, o = sigmoid(pre(1) + p[1] * cell);
  auto out = run_layer(OpKind::kLSTM, {}, in, 3);
  EXPECT_NEAR(values(out[0])[0], o * std::tanh(cell), 1e-12);
  EXPECT_NEAR(values(out[1])[0], o * std::tanh(cell), 1e-12);
  EXPECT_NEAR(values(out[2])[0], cell, 1e-12);
  // input_forget: f = 1 - i. clip 0.5 bounds each gate's input (here c's, 1.7), not the cell state.
  double cf = (1 - i) * c0 + i * std::tanh(0.5);
  double of = sigmoid(std::clamp(pre(1) + p[1] * cf, -0.5, 0.5));
  out = run_layer(OpKind::kLSTM, attrs({{"input_forget", int64_t(1)}, {"clip", 0.5}}), in, 3);
  ASSERT_GT(std::fabs(pre(3)), 0.5);
  EXPECT_NEAR(values(out[2])[0], cf, 1e-12);
  EXPECT_NEAR(values(out[1])[0], of * std::tanh(cf), 1e-12);
}

TEST(ReferenceRecurrent, BatchFirstIsTheTransposeOfSequenceFirst) {
  // A bidirectional LSTM on [seq 3, batch 2, input 2], hidden 2, with every input, both layouts.
  auto ramp = [](std::vector<int64_t> dims, double scale) {
    std::vector<double> v(size_t(ir::checked_numel(dims)));
    for (size_t k = 0; k < v.size(); ++k) v[k] = std::sin(double(k) * 1.7 + scale) * 0.8;
    return f64(dims, v);
  };
  Tensor x = ramp({3, 2, 2}, 0.1), h0 = ramp({2, 2, 2}, 0.2), c0 = ramp({2, 2, 2}, 0.3);
  std::vector<std::optional<Tensor>> seq_first{x, ramp({2, 8, 2}, 0.4), ramp({2, 8, 2}, 0.5), ramp({2, 16}, 0.6),
                                               make_tensor(DType::kInt32, {2}, {3, 2}), h0, c0, ramp({2, 6}, 0.7)};
  // [a, b, c] -> [b, a, c]
  auto swap01 = [](const Tensor& t) {
    std::vector<double> v = values(t), out(v.size());
    int64_t a = t.dims[0], b = t.dims[1], c = t.dims[2];
    for (int64_t i = 0; i < a; ++i)
      for (int64_t j = 0; j < b; ++j)
        for (int64_t k = 0; k < c; ++k) out[size_t((j * a + i) * c + k)] = v[size_t((i * b + j) * c + k)];
    return f64({b, a, c}, out);
  };
  std::vector<std::optional<Tensor>> batch_first = seq_first;
  batch_first[0] = swap01(x);
  batch_first[5] = swap01(h0);
  batch_first[6] = swap01(c0);
  ir::Attributes a = attrs({{"direction", std::string("bidirectional")}});
  auto s = run_layer(OpKind::kLSTM, a, seq_first, 3);
  a.set("layout", int64_t(1));
  auto b = run_layer(OpKind::kLSTM, a, batch_first, 3);
  ASSERT_EQ(b[0].dims, (std::vector<int64_t>{2, 3, 2, 2}));
  std::vector<double> ys = values(s[0]), yb = values(b[0]);  // [seq, dir, batch, hidden] and [batch, seq, dir, hidden]
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t d = 0; d < 2; ++d)
      for (int64_t n = 0; n < 2; ++n)
        for (int64_t j = 0; j < 2; ++j)
          EXPECT_EQ(ys[size_t(((t * 2 + d) * 2 + n) * 2 + j)], yb[size_t(((n * 3 + t) * 2 + d) * 2 + j)]);
  EXPECT_EQ(values(swap01(s[1])), values(b[1]));
  EXPECT_EQ(values(swap01(s[2])), values(b[2]));
  EXPECT_EQ(ys[size_t(((2 * 2 + 0) * 2 + 1) * 2)], 0.0);  // row 1 has 2 steps: Y at t = 2 is zero
}

}  // namespace
}  // namespace kiln::reference
