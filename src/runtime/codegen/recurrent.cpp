// RNN, GRU and LSTM: one launch per time step (two for a GRU that resets
// before its product), a warp per direction, hidden unit and group of
// kRecurrentRows batch rows. The warp's lanes stride along the hidden state:
// each reads the unit's rows of R once for the group's rows of H (coalesced,
// both), the sums reduce across the warp, and lane r finishes row r: the
// step's projected input, the biases, the gates and the new state, written to
// the other state buffer, Y, Y_h and Y_c. The activations and clip are
// compiled in; the step is a parameter, so step kernels are never specialized.
#include <sstream>
#include <vector>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

namespace {

using ir::OpKind;
using ir::RecurrentActivationKind;

std::string activation_expr(const ir::RecurrentActivation& a) {
  std::string al = literal(a.alpha, false), be = literal(a.beta, false);
  switch (a.kind) {
    case RecurrentActivationKind::kRelu: return "fmaxf(x, 0.f)";
    case RecurrentActivationKind::kTanh: return "tanhf(x)";
    case RecurrentActivationKind::kSigmoid: return "1.f / (1.f + expf(-x))";
    case RecurrentActivationKind::kAffine: return str(al, " * x + ", be);
    case RecurrentActivationKind::kLeakyRelu: return str("x >= 0.f ? x : ", al, " * x");
    case RecurrentActivationKind::kThresholdedRelu: return str("x > ", al, " ? x : 0.f");
    case RecurrentActivationKind::kScaledTanh: return str(al, " * tanhf(", be, " * x)");
    case RecurrentActivationKind::kHardSigmoid: return str("fminf(fmaxf(", al, " * x + ", be, ", 0.f), 1.f)");
    case RecurrentActivationKind::kElu: return str("x >= 0.f ? x : ", al, " * (expf(x) - 1.f)");
    case RecurrentActivationKind::kSoftsign: return "x / (1.f + fabsf(x))";
    case RecurrentActivationKind::kSoftplus: return "log1pf(expf(-fabsf(x))) + fmaxf(x, 0.f)";
  }
  return "x";
}

// One product of a step: the rows of gate `gate` in R with the state `source`
// (h: the hidden state, rh: GRU's r (.) H).
struct Dot {
  int gate;
  const char* source;
};

std::vector<Dot> dots_of(const RecurrentSpec& spec) {
  switch (spec.op) {
    case OpKind::kRNN: return {{0, "h"}};
    case OpKind::kLSTM: return {{0, "h"}, {1, "h"}, {2, "h"}, {3, "h"}};
    default: break;
  }
  if (spec.kernel == RecurrentKernel::kGruReset) return {{1, "h"}};
  if (spec.setup.linear_before_reset) return {{0, "h"}, {1, "h"}, {2, "h"}};
  return {{0, "h"}, {2, "rh"}};
}

std::string signature(const RecurrentSpec& spec) {
  std::string ct = c_type(spec.dtype), args;
  auto add = [&](bool present, const std::string& arg) {
    if (present) args += (args.empty() ? "" : ", ") + arg;
  };
  add(spec.has_y, str(ct, "* __restrict__ y"));
  add(spec.has_y_h, str(ct, "* __restrict__ y_h"));
  add(spec.has_y_c, str(ct, "* __restrict__ y_c"));
  add(true, "float* __restrict__ scratch");
  add(true, str("const ", ct, "* __restrict__ r"));
  add(spec.has_bias, str("const ", ct, "* __restrict__ bias"));
  add(spec.has_lens, "const int* __restrict__ lens");
  add(spec.has_initial_h, str("const ", ct, "* __restrict__ initial_h"));
  add(spec.has_initial_c, str("const ", ct, "* __restrict__ initial_c"));
  add(spec.has_peephole, str("const ", ct, "* __restrict__ peephole"));
  return str("extern \"C\" __global__ void __launch_bounds__(", kBlock, ") ", kEntry, "(", args, ", KParams p) {\n");
}

// Shapes and indexing every kernel shares, after the parameter binding.
std::string geometry(const RecurrentSpec& spec) {
  const ir::RecurrentSetup& s = spec.setup;
  std::ostringstream o;
  o << "  const long long H = prm.hidden, B = prm.batch, S = prm.seq;\n"
    << "  const long long dirs = " << s.directions << ", gates = " << s.gates << ";\n"
    << "  const bool batch_first = " << (s.batch_first ? "true" : "false") << ";\n"
    << "  float* const h_state = scratch + prm.h_offset;\n";
  if (spec.op == OpKind::kLSTM) o << "  float* const c_state = scratch + prm.c_offset;\n";
  if (spec.op == OpKind::kGRU && !s.linear_before_reset) o << "  float* const rh_state = scratch + prm.rh_offset;\n";
  // Y_h, Y_c, initial_h and initial_c: [dirs, B, H], or [B, dirs, H] batch first.
  o << "  auto state_index = [&](long long d, long long b, long long j) { return (batch_first ? b * dirs + d : d * B + b) * H + j; };\n";
  return o.str();
}

std::string init_body(const RecurrentSpec& spec) {
  DType t = spec.dtype;
  std::ostringstream o;
  o << "  for (long long e = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; e < prm.n; e += (long long)gridDim.x * "
    << kBlock << ") {\n"
    << "    const long long j = e % H, b = (e / H) % B, d = e / (H * B), at = state_index(d, b, j);\n"
    << "    const float h0 = " << (spec.has_initial_h ? load_expr(t, "initial_h", "at") : "0.f") << ";\n"
    << "    h_state[e] = h0;\n";
  if (spec.has_y_h) o << "    " << store_stmt(t, "y_h", "at", "h0") << "\n";
  if (spec.op == OpKind::kLSTM) {
    o << "    const float c0 = " << (spec.has_initial_c ? load_expr(t, "initial_c", "at") : "0.f") << ";\n"
      << "    c_state[e] = c0;\n";
    if (spec.has_y_c) o << "    " << store_stmt(t, "y_c", "at", "c0") << "\n";
  }
  o << "  }\n}\n";
  return o.str();
}

// The gate math of one batch row, given the row's sums `dot0..` (in dots_of's order).
std::string finish_row(const RecurrentSpec& spec, const std::vector<Dot>& dots) {
  const ir::RecurrentSetup& s = spec.setup;
  DType t = spec.dtype;
  bool reset_phase = spec.kernel == RecurrentKernel::kGruReset;
  std::ostringstream o;
  o << "      const long long b = b0 + row;\n"
    << "      const long long len = " << (spec.has_lens ? "lens[b] < 0 ? 0LL : (lens[b] > S ? S : (long long)lens[b])" : "S") << ";\n"
    << "      const float hp = h[b * H + j];\n"
    << "      if (prm.step >= len) {  // past the row's end: its state stays, Y is zero at this time step\n";
  if (!reset_phase) {
    o << "        h_next[b * H + j] = hp;\n";
    if (spec.has_y) o << "        " << store_stmt(t, "y", "y_index(prm.step, b)", "0.f") << "\n";
  }
  o << "        continue;\n      }\n"
    << "      const long long t = backward ? len - 1 - prm.step : prm.step;\n"
    << "      const float* proj = scratch + (d * S * B + (batch_first ? b * S + t : t * B + b)) * gates * H + j;\n";
  // pre(g): the projected input, W's bias and R's bias of gate g.
  o << "      auto wx = [&](int g) { float v = prm.projected ? proj[g * H] : 0.f;"
    << (spec.has_bias ? str(" v += ", load_expr(t, "bias", "d * 2 * gates * H + g * H + j"), ";") : "") << " return v; };\n"
    << "      auto rb = [&](int g) { return " << (spec.has_bias ? load_expr(t, "bias", "(d * 2 + 1) * gates * H + g * H + j") : "0.f")
    << "; };\n";
  auto dot = [&](int gate, const char* source) {
    for (size_t i = 0; i < dots.size(); ++i)
      if (dots[i].gate == gate && std::string(dots[i].source) == source) return str("dot", i);
    fail(ErrorCode::kInternal, "recurrent kernel: no product of gate ", gate, " with ", source);
  };
  auto f = [&](int fn, const std::string& x) { return str("kiln_act(d, ", fn, ", ", x, ")"); };
  auto clip = [&](const std::string& x) { return str("kiln_clip(", x, ")"); };
  if (spec.op == OpKind::kRNN) {
    o << "      const float hn = " << f(0, clip(str("wx(0) + rb(0) + ", dot(0, "h")))) << ";\n";
  } else if (spec.op == OpKind::kGRU) {
    if (reset_phase) {
      o << "      rh_state[(d * B + b) * H + j] = " << f(0, clip(str("wx(1) + rb(1) + ", dot(1, "h")))) << " * hp;\n"
        << "      continue;\n";
      return o.str();
    }
    o << "      const float z = " << f(0, clip(str("wx(0) + rb(0) + ", dot(0, "h")))) << ";\n";
    if (s.linear_before_reset)
      o << "      const float reset = " << f(0, clip(str("wx(1) + rb(1) + ", dot(1, "h")))) << ";\n"
        << "      const float candidate = " << f(1, clip(str("wx(2) + reset * (", dot(2, "h"), " + rb(2))"))) << ";\n";
    else
      o << "      const float candidate = " << f(1, clip(str("wx(2) + rb(2) + ", dot(2, "rh")))) << ";\n";
    o << "      const float hn = (1.f - z) * candidate + z * hp;\n";
  } else {
    // + P (.) state for peephole k (i 0, o 1, f 2).
    auto peep = [&](int k, const char* state) {
      return spec.has_peephole ? str(" + ", load_expr(t, "peephole", str("(d * 3 + ", k, ") * H + j")), " * ", state) : std::string();
    };
    o << "      const float cp = c_state[(d * B + b) * H + j];\n"
      << "      const float in = " << f(0, clip(str("wx(0) + rb(0) + ", dot(0, "h"), peep(0, "cp")))) << ";\n"
      << "      const float forget = "
      << (s.input_forget ? std::string("1.f - in") : f(0, clip(str("wx(2) + rb(2) + ", dot(2, "h"), peep(2, "cp"))))) << ";\n"
      << "      const float candidate = " << f(1, clip(str("wx(3) + rb(3) + ", dot(3, "h")))) << ";\n"
      << "      const float cn = forget * cp + in * candidate;\n"
      << "      const float out = " << f(0, clip(str("wx(1) + rb(1) + ", dot(1, "h"), peep(1, "cn")))) << ";\n"
      << "      const float hn = out * " << f(2, "cn") << ";\n"
      << "      c_state[(d * B + b) * H + j] = cn;\n";
    if (spec.has_y_c) o << "      " << store_stmt(t, "y_c", "state_index(d, b, j)", "cn") << "\n";
  }
  o << "      h_next[b * H + j] = hn;\n";
  if (spec.has_y) o << "      " << store_stmt(t, "y", "y_index(t, b)", "hn") << "\n";
  if (spec.has_y_h) o << "      " << store_stmt(t, "y_h", "state_index(d, b, j)", "hn") << "\n";
  return o.str();
}

std::string step_body(const RecurrentSpec& spec) {
  DType t = spec.dtype;
  std::vector<Dot> dots = dots_of(spec);
  size_t n = dots.size();
  std::ostringstream o;
  o << "  const long long warp = ((long long)blockIdx.x * " << kBlock << " + threadIdx.x) >> 5;\n"
    << "  const int lane = threadIdx.x & 31;\n"
    << "  if (warp >= prm.n) return;\n"
    << "  const long long groups = (B + " << kRecurrentRows << " - 1) / " << kRecurrentRows << ";\n"
    << "  const long long j = warp % H, b0 = (warp / H) % groups * " << kRecurrentRows << ", d = warp / (H * groups);\n"
    << "  const int rows = B - b0 < " << kRecurrentRows << " ? (int)(B - b0) : " << kRecurrentRows << ";\n"
    << "  const bool backward = " << (spec.setup.reverse ? "true" : "d == 1") << ";\n"
    << "  const int cur = (int)(prm.step & 1);\n"
    << "  const float* const h = h_state + (cur * dirs + d) * B * H;\n"
    << "  float* const h_next = h_state + ((cur ^ 1) * dirs + d) * B * H;\n";
  if (spec.op == OpKind::kGRU && !spec.setup.linear_before_reset) o << "  const float* const rh = rh_state + d * B * H;\n";
  if (spec.has_y)
    o << "  auto y_index = [&](long long time, long long b) { return (batch_first ? (b * S + time) * dirs + d : (time * dirs + d) * B + b) * H + j; };\n";
  o << "  const " << c_type(t) << "* const rd = r + d * gates * H * H;\n"
    << "  float acc[" << kRecurrentRows << "][" << n << "];\n"
    << "#pragma unroll\n  for (int row = 0; row < " << kRecurrentRows << "; ++row)\n"
    << "#pragma unroll\n    for (int g = 0; g < " << n << "; ++g) acc[row][g] = 0.f;\n"
    << "  for (long long k = lane; k < H; k += 32) {\n";
  for (size_t i = 0; i < n; ++i)
    o << "    const float w" << i << " = " << load_expr(t, "rd", str("(", dots[i].gate, " * H + j) * H + k")) << ";\n";
  o << "#pragma unroll\n    for (int row = 0; row < " << kRecurrentRows << "; ++row) {\n"
    << "      if (row >= rows) break;\n";
  for (size_t i = 0; i < n; ++i) o << "      acc[row][" << i << "] += w" << i << " * " << dots[i].source << "[(b0 + row) * H + k];\n";
  o << "    }\n  }\n"
    << "#pragma unroll\n  for (int row = 0; row < " << kRecurrentRows << "; ++row) {\n"
    << "    if (row >= rows) break;\n";
  for (size_t i = 0; i < n; ++i) o << "    const float dot" << i << " = kiln_warp_sum(acc[row][" << i << "]);\n";
  o << "    if (lane == row) {\n" << finish_row(spec, dots) << "    }\n  }\n}\n";
  return o.str();
}

}  // namespace

std::string recurrent_source(const RecurrentSpec& spec) {
  const ir::RecurrentSetup& s = spec.setup;
  std::ostringstream o;
  o << prelude() << params_constants<RecurrentParams>(spec.specialize);
  if (spec.kernel != RecurrentKernel::kInit) {
    // kiln_act(d, f, x): direction d's function f, both known at each call but d.
    o << "__device__ __forceinline__ float kiln_act(long long d, int f, float x) {\n";
    for (size_t d = 0; d < s.activations.size(); ++d) {
      o << "  if (d == " << d << ") {\n";
      for (size_t fn = 0; fn < s.activations[d].size(); ++fn)
        o << "    if (f == " << fn << ") return " << activation_expr(s.activations[d][fn]) << ";\n";
      o << "  }\n";
    }
    o << "  return x;\n}\n"
      << "__device__ __forceinline__ float kiln_clip(float x) { return "
      << (s.clip ? str("fminf(fmaxf(x, -", literal(*s.clip, false), "), ", literal(*s.clip, false), ")") : std::string("x")) << "; }\n";
  }
  o << signature(spec) << params_binding<RecurrentParams>(spec.specialize) << geometry(spec);
  o << (spec.kernel == RecurrentKernel::kInit ? init_body(spec) : step_body(spec));
  return o.str();
}

}  // namespace kiln::codegen
