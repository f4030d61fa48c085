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

// The C++ type an elementwise value is computed in.
enum class Kind { kFloat, kDouble, kInt, kBool };

Kind kind_of(DType d) {
  if (d == DType::kFloat64) return Kind::kDouble;
  if (is_floating(d)) return Kind::kFloat;
  return d == DType::kBool ? Kind::kBool : Kind::kInt;
}

std::string type_name(Kind k) {
  switch (k) {
    case Kind::kFloat: return "float";
    case Kind::kDouble: return "double";
    case Kind::kInt: return "long long";
    case Kind::kBool: return "bool";
  }
  return "float";
}

bool returns_bool(OpKind op) {
  switch (op) {
    case OpKind::kEqual: case OpKind::kLess: case OpKind::kLessOrEqual: case OpKind::kGreater: case OpKind::kGreaterOrEqual:
    case OpKind::kAnd: case OpKind::kOr: case OpKind::kXor: case OpKind::kNot: case OpKind::kIsNaN: case OpKind::kIsInf:
      return true;
    default: return false;
  }
}

// C expression for one instruction over operands a, b, c (empty when absent),
// computed in `k` (the kind of the first operand).
std::string instruction_expr(const ir::FusedInstruction& in, const std::string& a, const std::string& b,
                             const std::string& c, Kind k) {
  bool dbl = k == Kind::kDouble, integer = k == Kind::kInt || k == Kind::kBool;
  auto f = [&](const char* name) { return std::string(name) + (dbl ? "" : "f"); };
  auto K = [&](double v) { return integer ? std::to_string(int64_t(v)) + "LL" : num(v, dbl); };
  double p0 = in.params[0], p1 = in.params[1];
  auto pick = [&](const std::string& x, const std::string& y, const char* cmp) {
    if (integer) return "(" + x + cmp + y + " ? " + x + " : " + y + ")";
    return "((" + x + " != " + x + " || " + y + " != " + y + ") ? " + x + " + " + y + " : (" + x + cmp + y + " ? " + x + " : " +
           y + "))";
  };
  switch (in.op) {
    case OpKind::kAbs: return integer ? "(" + a + " < 0 ? -" + a + " : " + a + ")" : f("fabs") + "(" + a + ")";
    case OpKind::kNeg: return "(-" + a + ")";
    case OpKind::kSign: return "(" + type_name(k) + ")((" + a + " > " + K(0) + ") - (" + a + " < " + K(0) + "))";
    case OpKind::kRelu: return "(" + a + " < " + K(0) + " ? " + K(0) + " : " + a + ")";
    case OpKind::kSqrt: return f("sqrt") + "(" + a + ")";
    case OpKind::kReciprocal: return "(" + K(1) + " / " + a + ")";
    case OpKind::kExp: return f("exp") + "(" + a + ")";
    case OpKind::kLog: return f("log") + "(" + a + ")";
    case OpKind::kFloor: return f("floor") + "(" + a + ")";
    case OpKind::kCeil: return f("ceil") + "(" + a + ")";
    case OpKind::kRound: return f("rint") + "(" + a + ")";  // halves to even, like the reference
    case OpKind::kSigmoid: return "(" + K(1) + " / (" + K(1) + " + " + f("exp") + "(-" + a + ")))";
    case OpKind::kTanh: return f("tanh") + "(" + a + ")";
    case OpKind::kErf: return f("erf") + "(" + a + ")";
    case OpKind::kSoftplus: return "(" + a + " > " + K(30) + " ? " + a + " : " + f("log1p") + "(" + f("exp") + "(" + a + ")))";
    case OpKind::kSoftsign: return "(" + a + " / (" + K(1) + " + " + f("fabs") + "(" + a + ")))";
    case OpKind::kSin: return f("sin") + "(" + a + ")";
    case OpKind::kCos: return f("cos") + "(" + a + ")";
    case OpKind::kTan: return f("tan") + "(" + a + ")";
    case OpKind::kAsin: return f("asin") + "(" + a + ")";
    case OpKind::kAcos: return f("acos") + "(" + a + ")";
    case OpKind::kAtan: return f("atan") + "(" + a + ")";
    case OpKind::kSinh: return f("sinh") + "(" + a + ")";
    case OpKind::kCosh: return f("cosh") + "(" + a + ")";
    case OpKind::kAsinh: return f("asinh") + "(" + a + ")";
    case OpKind::kAcosh: return f("acosh") + "(" + a + ")";
    case OpKind::kAtanh: return f("atanh") + "(" + a + ")";
    case OpKind::kLeakyRelu: return "(" + a + " < " + K(0) + " ? " + K(p0) + " * " + a + " : " + a + ")";
    case OpKind::kElu: return "(" + a + " < " + K(0) + " ? " + K(p0) + " * " + f("expm1") + "(" + a + ") : " + a + ")";
    case OpKind::kSelu:
      return "(" + K(p1) + " * (" + a + " > " + K(0) + " ? " + a + " : " + K(p0) + " * " + f("expm1") + "(" + a + ")))";
    case OpKind::kCelu:
      return "(" + f("fmax") + "(" + K(0) + ", " + a + ") + " + f("fmin") + "(" + K(0) + ", " + K(p0) + " * " + f("expm1") +
             "(" + a + " / " + K(p0) + ")))";
    case OpKind::kHardSigmoid:
      return f("fmin") + "(" + K(1) + ", " + f("fmax") + "(" + K(0) + ", " + K(p0) + " * " + a + " + " + K(p1) + "))";
    case OpKind::kHardSwish:
      return "(" + a + " * " + f("fmin") + "(" + K(1) + ", " + f("fmax") + "(" + K(0) + ", " + a + " / " + K(6) + " + " + K(0.5) + ")))";
    case OpKind::kGelu:
      if (p0 != 0)
        return "(" + K(0.5) + " * " + a + " * (" + K(1) + " + " + f("tanh") + "(" + K(0.7978845608028654) + " * (" + a + " + " +
               K(0.044715) + " * " + a + " * " + a + " * " + a + "))))";
      return "(" + K(0.5) + " * " + a + " * (" + K(1) + " + " + f("erf") + "(" + a + " * " + K(0.7071067811865476) + ")))";
    case OpKind::kThresholdedRelu: return "(" + a + " > " + K(p0) + " ? " + a + " : " + K(0) + ")";
    case OpKind::kShrink:  // params: bias, lambd
      return "(" + a + " < -" + K(p1) + " ? " + a + " + " + K(p0) + " : (" + a + " > " + K(p1) + " ? " + a + " - " + K(p0) +
             " : " + K(0) + "))";
    case OpKind::kAdd: case OpKind::kSum: {
      std::string r = "(" + a + " + " + b + ")";
      return c.empty() ? (b.empty() ? a : r) : "(" + r + " + " + c + ")";
    }
    case OpKind::kMean: {
      std::string sum = b.empty() ? a : c.empty() ? "(" + a + " + " + b + ")" : "(" + a + " + " + b + " + " + c + ")";
      int n = 1 + !b.empty() + !c.empty();
      return "(" + sum + " / " + K(n) + ")";
    }
    case OpKind::kSub: return "(" + a + " - " + b + ")";
    case OpKind::kMul: return "(" + a + " * " + b + ")";
    case OpKind::kDiv: return integer ? "(" + b + " == 0 ? 0LL : " + a + " / " + b + ")" : "(" + a + " / " + b + ")";
    case OpKind::kPow:
      return integer ? "(long long)pow((double)" + a + ", (double)" + b + ")" : f("pow") + "(" + a + ", " + b + ")";
    case OpKind::kMod:  // b == -1: INT64_MIN % -1 overflows (the result is 0 for any a)
      if (integer) {
        std::string zero = "(" + b + " == 0 || " + b + " == -1) ? 0LL : ";
        return p0 != 0 ? "(" + zero + a + " % " + b + ")"
                       : "(" + zero + "((" + a + " % " + b + " != 0 && ((" + a + " % " + b + " < 0) != (" + b + " < 0))) ? " + a +
                             " % " + b + " + " + b + " : " + a + " % " + b + "))";
      }
      return p0 != 0 ? f("fmod") + "(" + a + ", " + b + ")"
                     : "(" + f("fmod") + "(" + a + ", " + b + ") != 0 && ((" + f("fmod") + "(" + a + ", " + b + ") < 0) != (" + b +
                           " < 0)) ? " + f("fmod") + "(" + a + ", " + b + ") + " + b + " : " + f("fmod") + "(" + a + ", " + b + "))";
    case OpKind::kPRelu: return "(" + a + " < " + K(0) + " ? " + a + " * " + b + " : " + a + ")";
    case OpKind::kMin: case OpKind::kMax: {
      const char* cmp = in.op == OpKind::kMin ? " < " : " > ";
      std::string r = b.empty() ? a : pick(a, b, cmp);
      return c.empty() ? r : pick(r, c, cmp);
    }
    case OpKind::kWhere: return "(" + a + " ? " + b + " : " + c + ")";
    case OpKind::kClip: {  // an absent bound does not clip
      if (integer) {
        std::string r = a;
        if (!b.empty()) r = "(" + r + " < " + b + " ? " + b + " : " + r + ")";
        if (!c.empty()) r = "(" + r + " > " + c + " ? " + c + " : " + r + ")";
        return r;
      }
      std::string lo = b.empty() ? "-" + K(INFINITY) : b, hi = c.empty() ? K(INFINITY) : c;
      return "(" + a + " != " + a + " ? " + a + " : " + f("fmin") + "(" + f("fmax") + "(" + a + ", " + lo + "), " + hi + "))";
    }
    case OpKind::kEqual: return "(" + a + " == " + b + ")";
    case OpKind::kLess: return "(" + a + " < " + b + ")";
    case OpKind::kLessOrEqual: return "(" + a + " <= " + b + ")";
    case OpKind::kGreater: return "(" + a + " > " + b + ")";
    case OpKind::kGreaterOrEqual: return "(" + a + " >= " + b + ")";
    case OpKind::kAnd: return "(" + a + " && " + b + ")";
    case OpKind::kOr: return "(" + a + " || " + b + ")";
    case OpKind::kXor: return "(" + a + " != " + b + ")";
    case OpKind::kNot: return "(!" + a + ")";
    // Integer operands only, widened to long long (sign- or zero-extended); the
    // store's conversion wraps the result back into the dtype's width.
    case OpKind::kBitwiseAnd: return "(" + a + " & " + b + ")";
    case OpKind::kBitwiseOr: return "(" + a + " | " + b + ")";
    case OpKind::kBitwiseXor: return "(" + a + " ^ " + b + ")";
    case OpKind::kBitwiseNot: return "(~" + a + ")";
    case OpKind::kBitShift:  // shifts by a negative amount or the width or more leave only the sign fill
      if (p0 != 0) return "((" + b + " < 0LL || " + b + " > 63LL) ? 0LL : (long long)((unsigned long long)" + a + " << " + b + "))";
      return "((" + b + " < 0LL || " + b + " > 63LL) ? (" + a + " < 0LL ? -1LL : 0LL) : (" + a + " >> " + b + "))";
    case OpKind::kIsNaN: return "(" + a + " != " + a + ")";
    case OpKind::kIsInf:
      return "((" + std::string(p1 != 0 ? "" : "false && ") + a + " == " + K(INFINITY) + ") || (" +
             std::string(p0 != 0 ? "" : "false && ") + a + " == -" + K(INFINITY) + "))";
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
  s << "  const long long n = prm.n;\n  const int rank = (int)prm.rank;\n";
  s << "  for (long long i = (long long)blockIdx.x * " << kBlock << " + threadIdx.x; i < n; i += (long long)gridDim.x * "
    << kBlock << ") {\n";
  for (size_t k = 0; k < num_inputs; ++k) s << "    long long o" << k << " = i;\n";
  s << "    if (!prm.contiguous) {\n";
  for (size_t k = 0; k < num_inputs; ++k) s << "      o" << k << " = 0;\n";
  s << "      long long rem = i;\n#pragma unroll\n      for (int d = " << kMaxRank - 1 << "; d >= 0; --d) {\n";
  s << "        if (d >= rank) continue;\n        const long long c = rem % prm.out_dims[d];\n        rem /= prm.out_dims[d];\n";
  for (size_t k = 0; k < num_inputs; ++k) s << "        o" << k << " += c * prm.in_strides[" << k << "][d];\n";
  s << "      }\n    }\n" << body << "  }\n";
  return s.str();
}

}  // namespace

std::string elementwise_source(const ElementwiseSpec& spec) {
  if (spec.inputs.size() > size_t(kElementwiseMaxInputs))
    fail(ErrorCode::kUnsupported, "an elementwise kernel with ", spec.inputs.size(), " inputs (at most ", kElementwiseMaxInputs, ")");
  std::ostringstream body;
  size_t n = spec.inputs.size();
  std::vector<Kind> kinds;
  for (size_t i = 0; i < n; ++i) {
    kinds.push_back(kind_of(spec.inputs[i]));
    std::string v = spec.inputs[i] == DType::kBool ? "(in" + std::to_string(i) + "[o" + std::to_string(i) + "] != 0)"
                    : kinds.back() == Kind::kInt    ? "(long long)in" + std::to_string(i) + "[o" + std::to_string(i) + "]"
                                                    : load_expr(spec.inputs[i], "in" + std::to_string(i), "o" + std::to_string(i));
    body << "    const " << type_name(kinds.back()) << " v" << i << " = " << v << ";\n";
  }
  auto operand = [&](int r) { return r < 0 ? std::string() : "v" + std::to_string(r); };
  for (size_t i = 0; i < spec.program.size(); ++i) {
    const auto& in = spec.program[i];
    // Computed in the kind of the first value operand (Where: its second operand).
    int lead = in.op == OpKind::kWhere ? in.args[1] : in.args[0];
    Kind k = lead >= 0 ? kinds[size_t(lead)] : Kind::kFloat;
    if (k == Kind::kBool && !returns_bool(in.op) && in.op != OpKind::kWhere) k = Kind::kInt;
    Kind result = returns_bool(in.op) ? Kind::kBool : k;
    body << "    const " << type_name(result) << " v" << n + i << " = "
         << instruction_expr(in, operand(in.args[0]), operand(in.args[1]), operand(in.args[2]), k) << ";\n";
    kinds.push_back(result);
  }
  std::string last = "v" + std::to_string(n + spec.program.size() - 1);
  std::string store = is_floating(spec.output) ? store_stmt(spec.output, "out", "i", last)
                      : "out[i] = (" + c_type(spec.output) + ")(" + last + ");";
  body << "    " << store << "\n";
  return prelude() + params_constants<ElementwiseParams>(spec.specialize) + kernel_signature(spec.inputs, spec.output) + " {\n" +
         params_binding<ElementwiseParams>(spec.specialize) + offsets_loop(n, body.str()) + "}\n";
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
  return prelude() + params_constants<ElementwiseParams>(specialize) + kernel_signature({from}, to) + " {\n" +
         params_binding<ElementwiseParams>(specialize) + offsets_loop(1, body) + "}\n";
}

}  // namespace kiln::codegen
