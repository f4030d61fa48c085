// Reductions: over any set of axes (a warp per output), and along one axis
// per line (argmax/argmin, cumulative sum).
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

std::string reduce_source(const ReduceSpec& spec) {
  std::string t = compute_type(spec.dtype);
  bool dbl = spec.dtype == DType::kFloat64;
  auto f = [&](const char* name) { return std::string(name) + (dbl ? "" : "f"); };
  std::string init = "0", acc, finish = "a";
  switch (spec.op) {
    case ReduceOp::kSum: case ReduceOp::kMean: case ReduceOp::kLogSum: acc = "a += v;"; break;
    case ReduceOp::kMax: init = dbl ? "-1.0/0.0" : "-1.0f/0.0f"; acc = "a = (v != v || a != a) ? v + a : (v > a ? v : a);"; break;
    case ReduceOp::kMin: init = dbl ? "1.0/0.0" : "1.0f/0.0f"; acc = "a = (v != v || a != a) ? v + a : (v < a ? v : a);"; break;
    case ReduceOp::kProd: init = "1"; acc = "a *= v;"; break;
    case ReduceOp::kL1: acc = "a += " + f("fabs") + "(v);"; break;
    case ReduceOp::kL2: case ReduceOp::kSumSquare: acc = "a += v * v;"; break;
    case ReduceOp::kLogSumExp: acc = "a += " + f("exp") + "(v - peak);"; break;
  }
  if (spec.op == ReduceOp::kMean) finish = "a / (" + t + ")count";
  if (spec.op == ReduceOp::kL2) finish = f("sqrt") + "(a)";
  if (spec.op == ReduceOp::kLogSum) finish = f("log") + "(a)";
  if (spec.op == ReduceOp::kLogSumExp) finish = f("log") + "(a) + peak";
  std::string ct = c_type(spec.dtype);
  std::ostringstream s;
  s << prelude() << params_constants<ReduceParams>(spec.specialize);
  // One warp per output: lanes stride over the reduced elements.
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << ct << "* __restrict__ out, const "
    << ct << "* __restrict__ x, KParams p) {\n" << params_binding<ReduceParams>(spec.specialize);
  s << "  const long long outputs = prm.outputs, count = prm.reduced;\n  const int kept_rank = (int)prm.kept_rank, red_rank = (int)prm.reduced_rank;\n";
  s << "  const int lane = threadIdx.x & 31;\n";
  s << "  for (long long o = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; o < outputs; o += ((long long)gridDim.x * blockDim.x) >> 5) {\n";
  s << "    long long base = 0, rem = o;\n";
  s << "#pragma unroll\n    for (int d = " << kMaxRank - 1 << "; d >= 0; --d) { if (d >= kept_rank) continue; base += (rem % prm.kept_dims[d]) * prm.kept_strides[d]; rem /= prm.kept_dims[d]; }\n";
  auto walk = [&](const std::string& stmt) {
    return "    for (long long r = lane; r < count; r += 32) {\n      long long off = base, rr = r;\n"
           "#pragma unroll\n      for (int d = " + std::to_string(kMaxRank - 1) +
           "; d >= 0; --d) { if (d >= red_rank) continue; off += (rr % prm.reduced_dims[d]) * prm.reduced_strides[d]; rr /= prm.reduced_dims[d]; }\n"
           "      const " + t + " v = " + load_expr(spec.dtype, "x", "off") + ";\n      " + stmt + "\n    }\n";
  };
  s << "    " << t << " peak = 0;\n";
  if (spec.op == ReduceOp::kLogSumExp) {
    s << "    { " << t << " a = " << (dbl ? "-1.0/0.0" : "-1.0f/0.0f") << ";\n" << walk("a = v > a ? v : a;");
    s << "      peak = kiln_warp_max(a); }\n";
  }
  s << "    " << t << " a = " << init << ";\n" << walk(acc);
  if (spec.op == ReduceOp::kMax || spec.op == ReduceOp::kMin) {
    const char* cmp = spec.op == ReduceOp::kMax ? ">" : "<";
    s << "    for (int sh = 16; sh > 0; sh >>= 1) { const " << t << " w = __shfl_xor_sync(0xffffffffu, a, sh); a = (w != w || a != a) ? w + a : (w "
      << cmp << " a ? w : a); }\n";
  } else if (spec.op == ReduceOp::kProd) {
    s << "    for (int sh = 16; sh > 0; sh >>= 1) a *= __shfl_xor_sync(0xffffffffu, a, sh);\n";
  } else {
    s << "    a = kiln_warp_sum(a);\n";
  }
  s << "    if (lane == 0) " << store_stmt(spec.dtype, "out", "o", finish) << "\n  }\n}\n";
  return s.str();
}

std::string line_source(LineOp op, DType dtype, const std::optional<Params>& specialize) {
  std::string t = is_floating(dtype) ? compute_type(dtype) : "long long", ct = c_type(dtype);
  auto load = [&](const std::string& idx) { return is_floating(dtype) ? load_expr(dtype, "x", idx) : "(long long)x[" + idx + "]"; };
  std::ostringstream s;
  s << prelude() << params_constants<LineParams>(specialize);
  s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "("
    << (op == LineOp::kCumSum ? ct : std::string("long long")) << "* __restrict__ out, const " << ct << "* __restrict__ x, KParams p) {\n"
    << params_binding<LineParams>(specialize);
  s << "  const long long lines = prm.lines, len = prm.len, inner = prm.inner;\n";
  s << "  for (long long line = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; line < lines; line += (long long)gridDim.x * "
    << kBlock << ") {\n";
  s << "    const long long base = (line / inner) * len * inner + (line % inner);\n";
  if (op == LineOp::kCumSum) {
    s << "    " << t << " acc = 0;\n";
    s << "    for (long long step = 0; step < len; ++step) {\n";
    s << "      const long long k = prm.reverse ? len - 1 - step : step;\n";
    s << "      const " << t << " v = " << load("base + k * inner") << ";\n";
    s << "      if (prm.exclusive) { " << (is_floating(dtype) ? store_stmt(dtype, "out", "base + k * inner", "acc") : "out[base + k * inner] = (" + ct + ")acc;")
      << " acc += v; } else { acc += v; "
      << (is_floating(dtype) ? store_stmt(dtype, "out", "base + k * inner", "acc") : "out[base + k * inner] = (" + ct + ")acc;") << " }\n";
    s << "    }\n";
  } else {
    const char* better = op == LineOp::kArgMax ? ">" : "<";
    s << "    long long best = 0;\n    " << t << " bv = " << load("base") << ";\n";
    s << "    for (long long k = 1; k < len; ++k) {\n      const " << t << " v = " << load("base + k * inner") << ";\n";
    s << "      if (v " << better << " bv || (prm.select_last_index && v == bv)) { bv = v; best = k; }\n    }\n";
    s << "    out[line] = best;\n";
  }
  s << "  }\n}\n";
  return s.str();
}

}  // namespace kiln::codegen
