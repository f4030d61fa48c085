// Shape inference of the recurrent family (RNN, GRU, LSTM): Y, Y_h and Y_c
// for both layouts and every direction over symbolic dims, the scratch the
// builder adds, and the errors that name the node and what was expected.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/error.h"
#include "kiln/ir/network.h"
#include "kiln/ir/recurrent.h"
#include "kiln/ir/shape_inference.h"
#include "inference_test_util.h"

namespace kiln::ir {
namespace {

using inference_test::attrs;

const Dim S = Dim::symbol("S"), N = Dim::symbol("N");

struct Layer {
  OpKind op = OpKind::kLSTM;
  Shape x{S, N, Dim(5)};
  int64_t dirs = 1, hidden = 3;
  Attributes a;
  bool bias = false, lens = false, initial_h = false;
  int outputs = 3;
  DType dtype = DType::kFloat32;
};

int64_t gates(OpKind op) { return op == OpKind::kRNN ? 1 : op == OpKind::kGRU ? 3 : 4; }

// Every output's dtype and shape, "; "-separated, or the error's message.
std::string outcome(const Layer& l) {
  Network net;
  int64_t rows = gates(l.op) * l.hidden;
  std::vector<ValueId> in{net.add_input("X", l.dtype, l.x), net.add_input("W", l.dtype, {Dim(l.dirs), Dim(rows), l.x[2]}),
                          net.add_input("R", l.dtype, {Dim(l.dirs), Dim(rows), Dim(l.hidden)})};
  bool batch_first = l.a.get_int("layout", 0) == 1;
  Dim batch = batch_first ? l.x[0] : l.x[1];
  in.push_back(l.bias ? net.add_input("B", l.dtype, {Dim(l.dirs), Dim(2 * rows)}) : kNoValue);
  in.push_back(l.lens ? net.add_input("lens", DType::kInt32, {batch}) : kNoValue);
  Shape state = batch_first ? Shape{batch, Dim(l.dirs), Dim(l.hidden)} : Shape{Dim(l.dirs), batch, Dim(l.hidden)};
  in.push_back(l.initial_h ? net.add_input("h0", l.dtype, state) : kNoValue);
  while (in.back() == kNoValue) in.pop_back();
  std::vector<ValueId> out = net.add_op(l.op, in, l.a, l.outputs, "rnn");
  for (ValueId v : out) net.add_output(v);
  try {
    net.finalize();
  } catch (const Error& e) {
    return e.what();
  }
  std::string s;
  for (ValueId v : out) s += str(s.empty() ? "" : "; ", dtype_name(net.value(v).dtype), shape_to_string(net.value(v).shape));
  return s;
}

testing::AssertionResult has(const std::string& message, const std::string& part) {
  return message.find(part) != std::string::npos ? testing::AssertionSuccess() : testing::AssertionFailure() << message;
}

TEST(RecurrentShapes, OutputsFollowTheLayoutAndDirections) {
  Layer lstm;
  EXPECT_EQ(outcome(lstm), "float32[S,1,N,3]; float32[1,N,3]; float32[1,N,3]");
  lstm.dirs = 2;
  lstm.a = attrs({{"direction", std::string("bidirectional")}, {"layout", int64_t(1)}});
  lstm.x = {N, S, Dim(5)};
  lstm.dtype = DType::kFloat16;
  EXPECT_EQ(outcome(lstm), "float16[N,S,2,3]; float16[N,2,3]; float16[N,2,3]");
  Layer gru{OpKind::kGRU, {Dim(7), Dim(2), Dim(4)}, 1, 33};
  gru.outputs = 2;
  gru.bias = gru.lens = gru.initial_h = true;
  gru.a = attrs({{"direction", std::string("reverse")}, {"hidden_size", int64_t(33)}});
  EXPECT_EQ(outcome(gru), "float32[7,1,2,33]; float32[1,2,33]");
  Layer rnn{OpKind::kRNN, {Dim(9), Dim(1), Dim(1)}, 2, 1};
  rnn.outputs = 1;
  rnn.a = attrs({{"direction", std::string("bidirectional")}});
  EXPECT_EQ(outcome(rnn), "float32[9,2,1,1]");
}

TEST(RecurrentShapes, TheScratchHoldsProjectionsAndStates) {
  Layer lstm;
  lstm.outputs = 4;  // Y, Y_h, Y_c and the runtime's scratch
  RecurrentSetup s;
  s.gates = 4;
  EXPECT_EQ(outcome(lstm), "float32[S,1,N,3]; float32[1,N,3]; float32[1,N,3]; float32" +
                               shape_to_string({recurrent_scratch<Dim>(OpKind::kLSTM, s, S, N, Dim(3)).total}));
  // projections S * N * 4 * 3, then two hidden-state buffers and the cell state, N * 3 each.
  EXPECT_EQ(recurrent_scratch<int64_t>(OpKind::kLSTM, s, 10, 2, 3).total, 10 * 2 * 12 + 3 * 2 * 3);
  s.gates = 3;
  s.directions = 2;
  RecurrentScratch<int64_t> gru = recurrent_scratch<int64_t>(OpKind::kGRU, s, 4, 5, 6);
  EXPECT_EQ(gru.h, 2 * 4 * 5 * 18);
  EXPECT_EQ(gru.c, gru.h + 2 * 2 * 5 * 6);
  EXPECT_EQ(gru.rh, gru.c);  // no cell state
  EXPECT_EQ(gru.total, gru.rh + 2 * 5 * 6);
  s.linear_before_reset = true;
  EXPECT_EQ(recurrent_scratch<int64_t>(OpKind::kGRU, s, 4, 5, 6).total, gru.rh);
}

TEST(RecurrentShapes, ErrorsNameWhatWasExpected) {
  Layer wrong_dirs;
  wrong_dirs.a = attrs({{"direction", std::string("bidirectional")}});
  EXPECT_TRUE(has(outcome(wrong_dirs), "node 'rnn' (LSTM): input 1 ('W') has shape [1,12,5]; expected [2,12,5] (2 directions, 4 gates"));
  Layer hidden;
  hidden.a = attrs({{"hidden_size", int64_t(4)}});
  EXPECT_TRUE(has(outcome(hidden), "hidden_size and the last dim of R do not match: 3 vs 4"));
  Layer direction;
  direction.a = attrs({{"direction", std::string("sideways")}});
  EXPECT_TRUE(has(outcome(direction), "direction 'sideways' is not one of forward, reverse, bidirectional"));
  Layer layout;
  layout.a = attrs({{"layout", int64_t(2)}});
  EXPECT_TRUE(has(outcome(layout), "layout 2 is not 0 or 1"));
  Layer activation;
  activation.a = attrs({{"activations", std::vector<std::string>{"Sigmoid", "Tanh", "Swish"}}});
  EXPECT_TRUE(has(outcome(activation), "activation 'Swish' is not one of Relu"));
  Layer count;
  count.a = attrs({{"activations", std::vector<std::string>{"Sigmoid", "Tanh"}}});
  EXPECT_TRUE(has(outcome(count), "activations has 2 entries; expected 3 functions per direction (3 for 1 direction)"));
  Layer clip;
  clip.a = attrs({{"clip", -1.0}});
  EXPECT_TRUE(has(outcome(clip), "clip -1 must be > 0"));
  Layer ints;
  ints.dtype = DType::kInt32;
  EXPECT_TRUE(has(outcome(ints), "expected a float type"));
  Layer rank;
  rank.x = {S, Dim(5)};
  EXPECT_TRUE(has(outcome(rank), "input 0 has rank 2"));
}

TEST(RecurrentShapes, ActivationsTakeDefaultsAndParametersInOrder) {
  Node node;
  node.name = "gru";
  node.op = OpKind::kGRU;
  node.attrs = attrs({{"direction", std::string("bidirectional")},
                      {"activations", std::vector<std::string>{"HardSigmoid", "leakyrelu", "Sigmoid", "ScaledTanh"}},
                      {"activation_alpha", std::vector<double>{0.3, 0.05, 2.0}},
                      {"activation_beta", std::vector<double>{0.4}}});
  RecurrentSetup s = recurrent_setup(node);
  ASSERT_EQ(s.activations.size(), 2u);
  EXPECT_EQ(s.activations[0][0].kind, RecurrentActivationKind::kHardSigmoid);
  EXPECT_DOUBLE_EQ(s.activations[0][0].alpha, 0.3);
  EXPECT_DOUBLE_EQ(s.activations[0][0].beta, 0.4);
  EXPECT_EQ(s.activations[0][1].kind, RecurrentActivationKind::kLeakyRelu);
  EXPECT_DOUBLE_EQ(s.activations[0][1].alpha, 0.05);
  EXPECT_EQ(s.activations[1][0].kind, RecurrentActivationKind::kSigmoid);
  EXPECT_DOUBLE_EQ(s.activations[1][1].alpha, 2.0);
  EXPECT_DOUBLE_EQ(s.activations[1][1].beta, 1.0);  // ran out: ScaledTanh's default
  // One list serves both directions.
  node.attrs = attrs({{"direction", std::string("bidirectional")}, {"activations", std::vector<std::string>{"Relu", "Elu"}}});
  s = recurrent_setup(node);
  EXPECT_EQ(s.activations[1][1].kind, RecurrentActivationKind::kElu);
  EXPECT_DOUBLE_EQ(s.activations[1][1].alpha, 1.0);
  EXPECT_TRUE(s.reverse == false && s.directions == 2);
  EXPECT_DOUBLE_EQ(apply_recurrent_activation({RecurrentActivationKind::kHardSigmoid, 0.2, 0.5}, 1.0), 0.7);
  EXPECT_DOUBLE_EQ(apply_recurrent_activation({RecurrentActivationKind::kThresholdedRelu, 1.0, 0}, 1.0), 0.0);
  EXPECT_DOUBLE_EQ(apply_recurrent_activation({RecurrentActivationKind::kAffine, 2.0, 1.0}, 3.0), 7.0);
  EXPECT_NEAR(apply_recurrent_activation({RecurrentActivationKind::kSoftplus, 0, 0}, 0.0), std::log(2.0), 1e-15);
}

}  // namespace
}  // namespace kiln::ir
