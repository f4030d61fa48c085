// What the recurrent family's layers share: a node's attributes read once,
// checked and with ONNX's defaults filled in (directions, layout, the gate
// activations with their alpha and beta, clip), so shape inference, the
// reference kernels and the GPU kernels apply the same functions.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "kiln/export.h"
#include "kiln/ir/network.h"

KILN_API_BEGIN
namespace kiln::ir {

// The activation functions ONNX lists for RNN, GRU and LSTM.
enum class RecurrentActivationKind {
  kRelu, kTanh, kSigmoid, kAffine, kLeakyRelu, kThresholdedRelu, kScaledTanh, kHardSigmoid, kElu, kSoftsign, kSoftplus
};

struct RecurrentActivation {
  RecurrentActivationKind kind = RecurrentActivationKind::kTanh;
  double alpha = 0, beta = 0;
};

struct RecurrentSetup {
  int64_t gates = 1;        // RNN 1 (i), GRU 3 (z, r, h), LSTM 4 (i, o, f, c): rows of W and R are gates * hidden
  int64_t directions = 1;   // 2 for bidirectional
  bool reverse = false;     // one direction, walked from the last time step
  bool batch_first = false; // layout 1: X [batch, seq, input], Y [batch, seq, dirs, hidden], states [batch, dirs, hidden]
  // Per direction the op's functions in ONNX's order: RNN f; GRU f, g; LSTM f, g, h.
  std::vector<std::vector<RecurrentActivation>> activations;
  std::optional<double> clip;  // bounds every gate's input to [-clip, clip]
  bool linear_before_reset = false;  // GRU
  bool input_forget = false;         // LSTM: the forget gate is 1 - the input gate
};

// The functions each direction applies: RNN 1, GRU 2, LSTM 3.
int64_t recurrent_functions(OpKind op);
// The node's attributes checked (an invalid model's error names the node) with
// ONNX's defaults: activations Tanh (RNN), Sigmoid, Tanh (GRU), Sigmoid, Tanh,
// Tanh (LSTM); one list of functions may serve both directions; activation_alpha
// and activation_beta are taken in order by the functions that have them, the
// others get the defaults of the ONNX operators of those names.
RecurrentSetup recurrent_setup(const Node& node);
double apply_recurrent_activation(const RecurrentActivation& a, double x);

// The GPU runtime's float32 scratch, the output `kiln build` adds after the
// op's own (Y, Y_h and, for LSTM, Y_c), in elements: the input projections
// X W^T of every step at 0 ([dirs, seq * batch rows in X's order, gates * hidden]),
// the hidden state in two buffers that steps alternate between at `h`
// ([2, dirs, batch, hidden]), LSTM's cell state at `c` and, for a GRU that
// resets before its product (linear_before_reset 0), r (.) H at `rh` (each [dirs, batch, hidden]).
template <class T>
struct RecurrentScratch {
  T h, c, rh, total;
};
template <class T>
RecurrentScratch<T> recurrent_scratch(OpKind op, const RecurrentSetup& s, const T& seq, const T& batch, const T& hidden) {
  T state = T(s.directions) * batch * hidden;
  RecurrentScratch<T> r;
  r.h = T(s.directions) * seq * batch * T(s.gates) * hidden;
  r.c = r.h + T(2) * state;
  r.rh = op == OpKind::kLSTM ? r.c + state : r.c;
  r.total = op == OpKind::kGRU && !s.linear_before_reset ? r.rh + state : r.rh;
  return r;
}
// How many outputs the ONNX op has: the scratch, where present, comes after them.
inline size_t recurrent_outputs(OpKind op) { return op == OpKind::kLSTM ? 3 : 2; }

}  // namespace kiln::ir
KILN_API_END
