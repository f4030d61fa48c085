// Fused elementwise kernels: one thread per output element, broadcast inputs
// addressed through per-input strides, every intermediate in registers.
#include <cmath>
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"

namespace kiln::codegen {

namespace {

using ir::OpKind;

std::string num(double v, bool dbl) {
  std::ostringstream out;
  out.precision(17);
  out << v;
  std::string s = out.str();
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  if (s == "inf.0" || s == "inf") return dbl ? "(1.0/0.0)" : "(1.0f/0.0f)";
  if (s == "-inf.0" || s == "-inf") return dbl ? "(-1.0/0.0)" : "(-1.0f/0.0f)";
  return dbl ? s : s + "f";
}

// C expression for one instruction over operands a, b, c.
std::string instruction_expr(const ir::FusedInstruction& in, const std::string& a, const std::string& b,
                             const std::string& c, bool dbl) {
  auto f = [&](const char* name) { return std::string(name) + (dbl ? "" : "f"); };
  auto k = [&](double v) { return num(v, dbl); };
  double p0 = in.params[0], p1 = in.params[1];
  switch (in.op) {
    case OpKind::kAbs: return f("fabs") + "(" + a + ")";
    case OpKind::kNeg: return "(-" + a + ")";
    case OpKind::kSqrt: return f("sqrt") + "(" + a + ")";
    case OpKind::kReciprocal: return "(" + k(1) + " / " + a + ")";
    case OpKind::kExp: return f("exp") + "(" + a + ")";
    case OpKind::kLog: return f("log") + "(" + a + ")";
    case OpKind::kFloor: return f("floor") + "(" + a + ")";
    case OpKind::kCeil: return f("ceil") + "(" + a + ")";
    case OpKind::kRelu: return "(" + a + " < " + k(0) + " ? " + k(0) + " : " + a + ")";
    case OpKind::kSigmoid: return "(" + k(1) + " / (" + k(1) + " + " + f("exp") + "(-" + a + ")))";
    case OpKind::kTanh: return f("tanh") + "(" + a + ")";
    case OpKind::kErf: return f("erf") + "(" + a + ")";
    case OpKind::kSoftplus: return "(" + a + " > " + k(30) + " ? " + a + " : " + f("log1p") + "(" + f("exp") + "(" + a + ")))";
    case OpKind::kSoftsign: return "(" + a + " / (" + k(1) + " + " + f("fabs") + "(" + a + ")))";
    case OpKind::kSin: return f("sin") + "(" + a + ")";
    case OpKind::kCos: return f("cos") + "(" + a + ")";
    case OpKind::kLeakyRelu: return "(" + a + " < " + k(0) + " ? " + k(p0) + " * " + a + " : " + a + ")";
    case OpKind::kElu: return "(" + a + " < " + k(0) + " ? " + k(p0) + " * " + f("expm1") + "(" + a + ") : " + a + ")";
    case OpKind::kSelu:
      return "(" + k(p1) + " * (" + a + " > " + k(0) + " ? " + a + " : " + k(p0) + " * " + f("expm1") + "(" + a + ")))";
    case OpKind::kCelu:
      return "(" + f("fmax") + "(" + k(0) + ", " + a + ") + " + f("fmin") + "(" + k(0) + ", " + k(p0) + " * " + f("expm1") +
             "(" + a + " / " + k(p0) + ")))";
    case OpKind::kHardSigmoid:
      return f("fmin") + "(" + k(1) + ", " + f("fmax") + "(" + k(0) + ", " + k(p0) + " * " + a + " + " + k(p1) + "))";
    case OpKind::kHardSwish:
      return "(" + a + " * " + f("fmin") + "(" + k(1) + ", " + f("fmax") + "(" + k(0) + ", " + a + " / " + k(6) + " + " + k(0.5) + ")))";
    case OpKind::kGelu:
      if (p0 != 0)
        return "(" + k(0.5) + " * " + a + " * (" + k(1) + " + " + f("tanh") + "(" + k(0.7978845608028654) + " * (" + a + " + " +
               k(0.044715) + " * " + a + " * " + a + " * " + a + "))))";
      return "(" + k(0.5) + " * " + a + " * (" + k(1) + " + " + f("erf") + "(" + a + " * " + k(0.7071067811865476) + ")))";
    case OpKind::kThresholdedRelu: return "(" + a + " > " + k(p0) + " ? " + a + " : " + k(0) + ")";
    case OpKind::kAdd: return "(" + a + " + " + b + ")";
    case OpKind::kSub: return "(" + a + " - " + b + ")";
    case OpKind::kMul: return "(" + a + " * " + b + ")";
    case OpKind::kDiv: return "(" + a + " / " + b + ")";
    case OpKind::kPow: return f("pow") + "(" + a + ", " + b + ")";
    case OpKind::kPRelu: return "(" + a + " < " + k(0) + " ? " + a + " * " + b + " : " + a + ")";
    case OpKind::kMin: case OpKind::kMax: {
      const char* cmp = in.op == OpKind::kMin ? " < " : " > ";
      auto pick = [&](const std::string& x, const std::string& y) {
        return "((" + x + " != " + x + " || " + y + " != " + y + ") ? " + x + " + " + y + " : (" + x + cmp + y + " ? " + x +
               " : " + y + "))";
      };
      std::string r = b.empty() ? a : pick(a, b);
      return c.empty() ? r : pick(r, c);
    }
    case OpKind::kWhere: return "(" + a + " ? " + b + " : " + c + ")";
    case OpKind::kClip: {  // an absent bound does not clip
      std::string lo = b.empty() ? "-" + k(INFINITY) : b, hi = c.empty() ? k(INFINITY) : c;
      return "(" + a + " != " + a + " ? " + a + " : " + f("fmin") + "(" + f("fmax") + "(" + a + ", " + lo + "), " + hi + "))";
    }
    default: fail(ErrorCode::kInternal, "codegen: op ", ir::op_name(in.op), " is not elementwise");
  }
}

std::string kernel_signature(const std::vector<DType>& inputs, DType output) {
  std::string sig = str("extern \"C\" __global__ void __launch_bounds__(", kBlock, ") ", kEntry, "(", c_type(output),
                        "* __restrict__ out");
  for (size_t k = 0; k < inputs.size(); ++k) sig += str(", const ", c_type(inputs[k]), "* __restrict__ in", k);
  return sig + ", KParams p)";
}

// The loop over outputs with per-input offsets; `body` sees o0..oN and i.
std::string offsets_loop(size_t num_inputs, const std::string& body) {
  std::ostringstream s;
  s << "  const long long n = P(0);\n  const int rank = (int)P(1);\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < n; i += (long long)gridDim.x * "
    << kBlock << ") {\n";
  for (size_t k = 0; k < num_inputs; ++k) s << "    long long o" << k << " = i;\n";
  s << "    if (!P(2)) {\n";
  for (size_t k = 0; k < num_inputs; ++k) s << "      o" << k << " = 0;\n";
  s << "      long long rem = i;\n#pragma unroll\n      for (int d = " << kMaxRank - 1 << "; d >= 0; --d) {\n";
  s << "        if (d >= rank) continue;\n        const long long c = rem % P(8 + d);\n        rem /= P(8 + d);\n";
  for (size_t k = 0; k < num_inputs; ++k) s << "        o" << k << " += c * P(" << 16 + 8 * k << " + d);\n";
  s << "      }\n    }\n" << body << "  }\n";
  return s.str();
}

}  // namespace

std::string elementwise_source(const ElementwiseSpec& spec) {
  if (spec.inputs.size() > size_t(kElementwiseMaxInputs))
    fail(ErrorCode::kUnsupported, "an elementwise kernel with ", spec.inputs.size(), " inputs (at most ", kElementwiseMaxInputs, ")");
  bool dbl = spec.output == DType::kFloat64;
  std::string t = compute_type(spec.output);
  std::ostringstream body;
  size_t n = spec.inputs.size();
  for (size_t k = 0; k < n; ++k) {
    std::string v = load_expr(spec.inputs[k], "in" + std::to_string(k), "o" + std::to_string(k));
    body << "    const " << (spec.inputs[k] == DType::kBool ? std::string("bool") : t) << " v" << k << " = " << v << ";\n";
  }
  auto operand = [&](int r) { return r < 0 ? std::string() : "v" + std::to_string(r); };
  for (size_t i = 0; i < spec.program.size(); ++i) {
    const auto& in = spec.program[i];
    body << "    const " << t << " v" << n + i << " = "
         << instruction_expr(in, operand(in.args[0]), operand(in.args[1]), operand(in.args[2]), dbl) << ";\n";
  }
  body << "    " << store_stmt(spec.output, "out", "i", "v" + std::to_string(n + spec.program.size() - 1)) << "\n";
  return prelude() + params_macro(spec.specialize) + kernel_signature(spec.inputs, spec.output) + " {\n" +
         offsets_loop(n, body.str()) + "}\n";
}

std::string cast_source(DType from, DType to, const std::optional<Params>& specialize) {
  std::string value = load_expr(from, "in0", "o0");
  std::string body;
  if (is_floating(from) && !is_floating(to) && to != DType::kBool)  // truncate toward zero like the reference
    body = "    const double x = (double)" + value + ";\n    " +
           store_stmt(to, "out", "i", "(x != x ? 0.0 : trunc(x))") + "\n";
  else if (to == DType::kBool)
    body = "    " + store_stmt(to, "out", "i", value + " != 0") + "\n";
  else if (!is_floating(from))
    body = "    out[i] = (" + c_type(to) + ")in0[o0];\n";
  else
    body = "    " + store_stmt(to, "out", "i", "(" + compute_type(to) + ")" + value) + "\n";
  if (!is_floating(from) && is_floating(to)) body = "    " + store_stmt(to, "out", "i", "(" + compute_type(to) + ")in0[o0]") + "\n";
  return prelude() + params_macro(specialize) + kernel_signature({from}, to) + " {\n" + offsets_loop(1, body) + "}\n";
}

}  // namespace kiln::codegen
