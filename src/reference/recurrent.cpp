// The recurrent family: RNN, GRU and LSTM as ONNX defines them, in float64,
// one batch row and direction at a time. sequence_lens: a row runs its first
// len steps (a reverse direction from step len - 1 down), Y is zero past them
// and Y_h, Y_c hold the state after the row's last step (the initial state for
// a length of 0). clip bounds every gate's input, as ONNX Runtime applies it
// (not the cell state LSTM's h reads). The GPU kernels
// (src/runtime/codegen/recurrent.cpp) follow these step by step.
#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "kiln/ir/recurrent.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

enum Slot : size_t { kX = 0, kW, kR, kB, kSequenceLens, kInitialH, kInitialC, kP };

std::vector<double> doubles_or_zeros(const KernelContext& c, size_t i, int64_t count) {
  return c.has(i) ? to_doubles(c.in(i)) : std::vector<double>(size_t(count), 0.0);
}

Outputs run_recurrent(const KernelContext& c) {
  OpKind op = c.node.op;
  ir::RecurrentSetup s = ir::recurrent_setup(c.node);
  const Tensor &tx = c.in(kX), &tr = c.in(kR);
  const int64_t seq = s.batch_first ? tx.dims[1] : tx.dims[0], batch = s.batch_first ? tx.dims[0] : tx.dims[1];
  const int64_t input = tx.dims[2], hidden = tr.dims[2], gates = s.gates, dirs = s.directions, rows = gates * hidden;
  std::vector<double> x = to_doubles(tx), w = to_doubles(c.in(kW)), r = to_doubles(tr);
  std::vector<double> bias = doubles_or_zeros(c, kB, dirs * 2 * rows);
  std::vector<double> h0 = doubles_or_zeros(c, kInitialH, dirs * batch * hidden);
  bool lstm = op == OpKind::kLSTM;
  std::vector<double> c0 = lstm ? doubles_or_zeros(c, kInitialC, dirs * batch * hidden) : std::vector<double>{};
  std::vector<double> peep = lstm ? doubles_or_zeros(c, kP, dirs * 3 * hidden) : std::vector<double>{};
  std::vector<int64_t> lens(size_t(batch), seq);
  if (c.has(kSequenceLens)) {
    lens = to_ints(c.in(kSequenceLens));
    for (int64_t b = 0; b < batch; ++b)
      if (lens[size_t(b)] < 0 || lens[size_t(b)] > seq)
        c.error(ErrorCode::kInvalidArgument, "sequence_lens[", b, "] is ", lens[size_t(b)], "; it must lie in [0, ", seq,
                "], the sequence length of X");
  }

  auto x_at = [&](int64_t t, int64_t b) { return &x[size_t(((s.batch_first ? b * seq + t : t * batch + b)) * input)]; };
  auto state_at = [&](int64_t d, int64_t b) { return size_t((s.batch_first ? b * dirs + d : d * batch + b) * hidden); };
  auto y_at = [&](int64_t t, int64_t d, int64_t b) {
    return size_t((s.batch_first ? (b * seq + t) * dirs + d : (t * dirs + d) * batch + b) * hidden);
  };
  std::vector<double> y(size_t(seq * dirs * batch * hidden), 0.0), y_h(size_t(dirs * batch * hidden)), y_c(y_h.size());
  auto clip = [&](double v) { return s.clip ? std::clamp(v, -*s.clip, *s.clip) : v; };

  const size_t units = size_t(hidden);
  std::vector<double> xw(units * size_t(gates)), hr(xw.size()), h(units), cell(units), next(units), reset(units), rh(units);
  for (int64_t d = 0; d < dirs; ++d) {
    const double* wd = &w[size_t(d * rows * input)];
    const double* rd = &r[size_t(d * rows * hidden)];
    const double *wb = &bias[size_t(d * 2 * rows)], *rb = wb + rows;
    const double* pd = lstm ? &peep[size_t(d * 3 * hidden)] : nullptr;
    const auto& act = s.activations[size_t(d)];
    bool backward = s.reverse || d == 1;
    for (int64_t b = 0; b < batch; ++b) {
      size_t at = state_at(d, b);
      std::copy_n(&h0[at], hidden, h.begin());
      if (lstm) std::copy_n(&c0[at], hidden, cell.begin());
      int64_t len = lens[size_t(b)];
      for (int64_t step = 0; step < len; ++step) {
        int64_t t = backward ? len - 1 - step : step;
        const double* xt = x_at(t, b);
        // Xt W^T + Wb and H R^T + Rb for every gate row.
        for (int64_t row = 0; row < rows; ++row) {
          double a = wb[row], e = rb[row];
          for (int64_t k = 0; k < input; ++k) a += xt[k] * wd[row * input + k];
          for (int64_t k = 0; k < hidden; ++k) e += h[size_t(k)] * rd[row * hidden + k];
          xw[size_t(row)] = a, hr[size_t(row)] = e;
        }
        if (op == OpKind::kRNN) {
          for (int64_t j = 0; j < hidden; ++j) next[size_t(j)] = apply_recurrent_activation(act[0], clip(xw[size_t(j)] + hr[size_t(j)]));
        } else if (op == OpKind::kGRU) {  // gates z, r, h
          for (int64_t j = 0; j < hidden; ++j) {
            reset[size_t(j)] = apply_recurrent_activation(act[0], clip(xw[size_t(hidden + j)] + hr[size_t(hidden + j)]));
            rh[size_t(j)] = reset[size_t(j)] * h[size_t(j)];
          }
          for (int64_t j = 0; j < hidden; ++j) {
            double z = apply_recurrent_activation(act[0], clip(xw[size_t(j)] + hr[size_t(j)]));
            size_t hj = size_t(2 * hidden + j);
            double recurrent;
            if (s.linear_before_reset) {
              recurrent = reset[size_t(j)] * hr[hj];
            } else {
              recurrent = rb[hj];
              for (int64_t k = 0; k < hidden; ++k) recurrent += rh[size_t(k)] * rd[(2 * hidden + j) * hidden + k];
            }
            double candidate = apply_recurrent_activation(act[1], clip(xw[hj] + recurrent));
            next[size_t(j)] = (1 - z) * candidate + z * h[size_t(j)];
          }
        } else {  // gates i, o, f, c; peepholes i, o, f
          for (int64_t j = 0; j < hidden; ++j) {
            auto pre = [&](int64_t g) { return xw[size_t(g * hidden + j)] + hr[size_t(g * hidden + j)]; };
            double prev = cell[size_t(j)];
            double in = apply_recurrent_activation(act[0], clip(pre(0) + pd[j] * prev));
            double forget = s.input_forget ? 1 - in : apply_recurrent_activation(act[0], clip(pre(2) + pd[2 * hidden + j] * prev));
            double candidate = apply_recurrent_activation(act[1], clip(pre(3)));
            double now = forget * prev + in * candidate;
            double out = apply_recurrent_activation(act[0], clip(pre(1) + pd[hidden + j] * now));
            cell[size_t(j)] = now;
            next[size_t(j)] = out * apply_recurrent_activation(act[2], now);
          }
        }
        h.swap(next);
        std::copy(h.begin(), h.end(), y.begin() + std::ptrdiff_t(y_at(t, d, b)));
      }
      std::copy(h.begin(), h.end(), y_h.begin() + std::ptrdiff_t(at));
      if (lstm) std::copy(cell.begin(), cell.end(), y_c.begin() + std::ptrdiff_t(at));
    }
  }

  DType t = tx.dtype;
  std::vector<int64_t> state_dims = s.batch_first ? std::vector<int64_t>{batch, dirs, hidden} : std::vector<int64_t>{dirs, batch, hidden};
  Outputs out(c.node.outputs.size());
  for (size_t i = 0; i < out.size(); ++i) {
    if (c.node.outputs[i] == ir::kNoValue) continue;
    if (i == 0)
      out[i] = from_doubles(t, s.batch_first ? std::vector<int64_t>{batch, seq, dirs, hidden} : std::vector<int64_t>{seq, dirs, batch, hidden}, y);
    else if (i == 1) out[i] = from_doubles(t, state_dims, y_h);
    else if (i == 2 && lstm) out[i] = from_doubles(t, state_dims, y_c);
    else  // the GPU runtime's scratch, which `kiln build` adds: unspecified contents, zeros here
      out[i] = from_doubles(c.out_dtype(i), c.out_dims(i), std::vector<double>(size_t(ir::checked_numel(c.out_dims(i))), 0.0));
  }
  return out;
}

}  // namespace

Kernel recurrent_kernel(OpKind op) {
  switch (op) {
    case OpKind::kRNN:
    case OpKind::kGRU:
    case OpKind::kLSTM: return run_recurrent;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
