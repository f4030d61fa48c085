// Fused elementwise kernels, every intermediate in registers. A thread
// computes a pack of elements (16-byte accesses) where the inputs are the
// output's layout or broadcast along the innermost dim, one element through
// per-input strides otherwise (and where a buffer is not aligned to the pack).
#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>

#include "codegen.h"
#include "kiln/error.h"
#include "kiln/ir/quantization.h"

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

// The C++ type an elementwise value is computed in: integers widen to long
// long, but uint64 (which does not fit it) computes in unsigned long long.
enum class Kind { kFloat, kDouble, kInt, kUInt64, kBool };

Kind kind_of(DType d) {
  if (d == DType::kFloat64) return Kind::kDouble;
  if (is_floating(d) || is_narrow_float(d)) return Kind::kFloat;
  if (d == DType::kUInt64) return Kind::kUInt64;
  return d == DType::kBool ? Kind::kBool : Kind::kInt;
}

std::string type_name(Kind k) {
  switch (k) {
    case Kind::kFloat: return "float";
    case Kind::kDouble: return "double";
    case Kind::kInt: return "long long";
    case Kind::kUInt64: return "unsigned long long";
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
                             const std::string& c, Kind k, bool saturate) {
  bool dbl = k == Kind::kDouble, u64 = k == Kind::kUInt64, integer = k == Kind::kInt || k == Kind::kBool || u64;
  auto f = [&](const char* name) { return std::string(name) + (dbl ? "" : "f"); };
  auto K = [&](double v) { return integer ? std::to_string(int64_t(v)) + "LL" : num(v, dbl); };
  double p0 = in.params[0], p1 = in.params[1];
  auto pick = [&](const std::string& x, const std::string& y, const char* cmp) {
    if (integer) return "(" + x + cmp + y + " ? " + x + " : " + y + ")";
    return "((" + x + " != " + x + " || " + y + " != " + y + ") ? " + x + " + " + y + " : (" + x + cmp + y + " ? " + x + " : " +
           y + "))";
  };
  switch (in.op) {
    case OpKind::kAbs:
      if (u64) return a;
      return integer ? "(" + a + " < 0 ? -" + a + " : " + a + ")" : f("fabs") + "(" + a + ")";
    case OpKind::kNeg: return "(-" + a + ")";
    case OpKind::kSign: return "(" + type_name(k) + ")((" + a + " > " + K(0) + ") - (" + a + " < " + K(0) + "))";
    case OpKind::kRelu: return u64 ? a : "(" + a + " < " + K(0) + " ? " + K(0) + " : " + a + ")";
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
      if (u64) return "(" + b + " == 0ULL ? 0ULL : " + a + " % " + b + ")";
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
    // Operands x, scale, zero point (c empty when absent). QuantizeLinear's
    // params (set by the GPU lowering): the dtype it divides in and the
    // quantized dtype; fmax turns NaN into the low end, as the reference. A
    // float quantized type (its zero point 0) takes the quotient's bits in its format.
    case OpKind::kQuantizeLinear: {
      DType precision = DType(int(p0)), quantized = DType(int(p1));
      bool wide = precision == DType::kFloat64;
      auto operand = [&](const std::string& v) { return rounded_to(precision, (wide ? "(double)" : "(float)") + v); };
      std::string q = rounded_to(precision, str(wide ? "__ddiv_rn(" : "__fdiv_rn(", operand(a), ", ", operand(b), ")"));
      if (quantized == DType::kFloat4E2M1 && !c.empty()) q = "(" + q + " + " + c + ")";  // its zero point, as the reference adds it
      if (is_narrow_float(quantized)) return "(long long)" + narrow_float_store(quantized, q, saturate);
      ir::QuantRange range = ir::quant_range(quantized);
      std::string r = "rint((double)" + q + ")" + (c.empty() ? "" : " + (double)" + c);
      return str("fmin(fmax(", r, ", ", range.lo, ".0), ", range.hi, ".0)");
    }
    case OpKind::kDequantizeLinear:  // in float32, rounded to the output type by the store
      return "__fmul_rn((float)" + a + (c.empty() ? "" : " - (float)" + c) + ", " + b + ")";
    case OpKind::kIsNaN: return "(" + a + " != " + a + ")";
    case OpKind::kIsInf:
      return "((" + std::string(p1 != 0 ? "" : "false && ") + a + " == " + K(INFINITY) + ") || (" +
             std::string(p0 != 0 ? "" : "false && ") + a + " == -" + K(INFINITY) + "))";
    default: fail(ErrorCode::kInternal, "codegen: op ", ir::op_name(in.op), " is not elementwise");
  }
}

// A stored element of `dtype` as the value kernels compute with (load_expr on a value).
std::string value_of(DType dtype, const std::string& raw) {
  switch (dtype) {
    case DType::kFloat16: return "kiln_h2f(" + raw + ")";
    case DType::kBFloat16: return "kiln_bf2f(" + raw + ")";
    case DType::kBool: return "(" + raw + " != 0)";
    case DType::kFloat32: case DType::kFloat64: return raw;
    default: return is_narrow_float(dtype) ? narrow_float_load(dtype, raw) : "(float)" + raw;
  }
}

// A computed value as stored in `dtype` (store_stmt's right-hand side).
std::string stored(DType dtype, const std::string& value) {
  switch (dtype) {
    case DType::kFloat16: return "kiln_f2h(" + value + ")";
    case DType::kBFloat16: return "kiln_f2bf(" + value + ")";
    case DType::kFloat32: case DType::kFloat64: return value;
    case DType::kBool: return "(unsigned char)((" + value + ") != 0)";
    default:
      if (is_narrow_float(dtype)) return narrow_float_store(dtype, value, true);
      if (is_narrow_integer(dtype)) return narrow_integer_store(dtype, value);
      return "(" + c_type(dtype) + ")(" + value + ")";
  }
}

// Packs of W elements that move as one aligned access (16 bytes for the widest operand).
const char* kPackHelpers = R"(template <class T, int W> struct alignas(sizeof(T) * W) kiln_pack { T v[W]; };
template <int W, class T> __device__ __forceinline__ kiln_pack<T, W> kiln_load(const T* p) {
  return *reinterpret_cast<const kiln_pack<T, W>*>(p);
}
// A broadcast operand: one load for every lane.
template <int W, class T> __device__ __forceinline__ kiln_pack<T, W> kiln_splat(T x) {
  kiln_pack<T, W> r;
#pragma unroll
  for (int l = 0; l < W; ++l) r.v[l] = x;
  return r;
}
// User buffers may start anywhere: the vector paths run only where every pack is aligned.
template <int W, class T> __device__ __forceinline__ bool kiln_aligned(const T* p) {
  return ((unsigned long long)p & (sizeof(T) * W - 1)) == 0;
}
)";

// Source text of one elementwise kernel: the element function `kiln_apply`
// (stored inputs r0.. to the stored output) and the index paths around it.
class KernelText {
 public:
  KernelText(std::vector<DType> inputs, DType output)
      : inputs_(std::move(inputs)), output_(output), width_(elementwise_vector_width(inputs_, output_)) {}

  std::string source(const std::string& apply_body, const std::optional<Params>& specialize) const {
    std::ostringstream s;
    s << prelude() << params_constants<ElementwiseParams>(specialize) << kPackHelpers;
    s << "constexpr int kiln_w = " << width_ << ", kiln_inputs = " << inputs_.size() << ";\n";
    s << "__device__ __forceinline__ " << c_type(output_) << " kiln_apply(";
    for (size_t k = 0; k < inputs_.size(); ++k) s << (k ? ", " : "") << "const " << c_type(inputs_[k]) << " r" << k;
    s << ") {\n" << apply_body << "}\n" << offsets() << contiguous() << inner_vectors() << strided();
    s << "extern \"C\" __global__ void __launch_bounds__(" << kBlock << ") " << kEntry << "(" << pointers() << ", KParams p) {\n"
      << params_binding<ElementwiseParams>(specialize);
    // Vectors index in 32 bits (n < 2^31); larger tensors take the 64-bit element path.
    s << "  const bool narrow = prm.n <= 0x7fffffffLL;\n";
    s << "  if (narrow && prm.contiguous && kiln_aligned<kiln_w>(out)";
    for (size_t k = 0; k < inputs_.size(); ++k) s << " && kiln_aligned<kiln_w>(in" << k << ")";
    s << ")\n    kiln_contiguous(prm, " << arguments() << ");\n";
    s << "  else if (narrow && prm.inner_vectors && kiln_aligned<kiln_w>(out)";
    for (size_t k = 0; k < inputs_.size(); ++k) s << " && (prm.in_strides[" << k << "][7] == 0 || kiln_aligned<kiln_w>(in" << k << "))";
    s << ")\n    kiln_inner_vectors(prm, " << arguments() << ");\n";
    s << "  else\n    kiln_strided(prm, " << arguments() << ");\n}\n";
    return s.str();
  }

 private:
  std::string pointers() const {
    std::string s = c_type(output_) + "* __restrict__ out";
    for (size_t k = 0; k < inputs_.size(); ++k) s += str(", const ", c_type(inputs_[k]), "* __restrict__ in", k);
    return s;
  }
  std::string arguments() const {
    std::string s = "out";
    for (size_t k = 0; k < inputs_.size(); ++k) s += str(", in", k);
    return s;
  }
  std::string path_head(const std::string& name, const std::string& index) const {
    return str("__device__ __forceinline__ void ", name, "(const ElementwiseParams& prm, ", pointers(), ") {\n  const ", index,
               " n = prm.n, step = (", index, ")gridDim.x * ", kBlock, ", first = (", index, ")blockIdx.x * ", kBlock,
               " + threadIdx.x;\n");
  }
  // kiln_apply over element i, input k at `offset(k)`.
  std::string apply_one(const std::function<std::string(size_t)>& offset) const {
    std::string s = "kiln_apply(";
    for (size_t k = 0; k < inputs_.size(); ++k) s += str(k ? ", " : "", "in", k, "[", offset(k), "]");
    return s + ")";
  }
  // Loads of pack a0.. (`load(k)`), kiln_apply lane by lane, one pack stored at out + i.
  std::string apply_pack(const std::function<std::string(size_t)>& load) const {
    std::ostringstream s;
    for (size_t k = 0; k < inputs_.size(); ++k)
      s << "    const kiln_pack<" << c_type(inputs_[k]) << ", kiln_w> a" << k << " = " << load(k) << ";\n";
    s << "    kiln_pack<" << c_type(output_) << ", kiln_w> r;\n#pragma unroll\n    for (int l = 0; l < kiln_w; ++l) r.v[l] = kiln_apply(";
    for (size_t k = 0; k < inputs_.size(); ++k) s << (k ? ", " : "") << "a" << k << ".v[l]";
    s << ");\n    *reinterpret_cast<kiln_pack<" << c_type(output_) << ", kiln_w>*>(out + i) = r;\n";
    return s.str();
  }
  // Each input's offset of output element i: dims right-aligned (the innermost
  // at 7), a modulo for every dim but the outermost.
  static std::string offsets() {
    return R"(template <class I> __device__ __forceinline__ void kiln_offsets(const ElementwiseParams& prm, I i, I* o) {
  const int outermost = 8 - (int)prm.rank;
#pragma unroll
  for (int k = 0; k < kiln_inputs; ++k) o[k] = 0;
#pragma unroll
  for (int d = 7; d >= 0; --d) {
    if (d < outermost) break;
    I c = i;
    if (d > outermost) {
      c = i % (I)prm.out_dims[d];
      i /= (I)prm.out_dims[d];
    }
#pragma unroll
    for (int k = 0; k < kiln_inputs; ++k) o[k] += c * (I)prm.in_strides[k][d];
  }
}
)";
  }
  // Every input has the output's layout: packs at the output's index, a scalar tail.
  std::string contiguous() const {
    std::ostringstream s;
    s << path_head("kiln_contiguous", "unsigned") << "  const unsigned vectors = n / kiln_w;\n";
    s << "  for (unsigned v = first; v < vectors; v += step) {\n    const unsigned i = v * kiln_w;\n"
      << apply_pack([](size_t k) { return str("kiln_load<kiln_w>(in", k, " + i)"); }) << "  }\n";
    s << "  for (unsigned i = vectors * kiln_w + first; i < n; i += step) out[i] = "
      << apply_one([](size_t) { return std::string("i"); }) << ";\n}\n";
    return s.str();
  }
  // Broadcasts: a pack never crosses the innermost dim (the host checks its
  // size), so its offsets are computed once and each input either loads a pack
  // (inner stride 1) or one element for every lane (0).
  std::string inner_vectors() const {
    size_t slots = std::max<size_t>(inputs_.size(), 1);
    std::ostringstream s;
    s << path_head("kiln_inner_vectors", "unsigned") << "  const unsigned vectors = n / kiln_w;\n";
    s << "  for (unsigned v = first; v < vectors; v += step) {\n    const unsigned i = v * kiln_w;\n    unsigned o[" << slots
      << "];\n    kiln_offsets<unsigned>(prm, i, o);\n"
      << apply_pack([](size_t k) {
           return str("prm.in_strides[", k, "][7] ? kiln_load<kiln_w>(in", k, " + o[", k, "]) : kiln_splat<kiln_w>(in", k, "[o[", k, "]])");
         })
      << "  }\n";
    // Only a single dim leaves a tail.
    s << "  for (unsigned i = vectors * kiln_w + first; i < n; i += step) {\n    unsigned o[" << slots
      << "];\n    kiln_offsets<unsigned>(prm, i, o);\n    out[i] = " << apply_one([](size_t k) { return str("o[", k, "]"); })
      << ";\n  }\n}\n";
    return s.str();
  }
  // Any strides, sizes and addresses: an element at a time, 64-bit offsets.
  std::string strided() const {
    size_t slots = std::max<size_t>(inputs_.size(), 1);
    std::ostringstream s;
    s << path_head("kiln_strided", "long long") << "  for (long long i = first; i < n; i += step) {\n    long long o[" << slots
      << "];\n    if (prm.contiguous) {\n#pragma unroll\n      for (int k = 0; k < kiln_inputs; ++k) o[k] = i;\n"
      << "    } else {\n      kiln_offsets<long long>(prm, i, o);\n    }\n    out[i] = "
      << apply_one([](size_t k) { return str("o[", k, "]"); }) << ";\n  }\n}\n";
    return s.str();
  }

  std::vector<DType> inputs_;
  DType output_;
  int width_;
};

// The output's iteration space and each input's strides over it (0 where it
// broadcasts), over the fewest dims.
MergedDims coalesce(const std::vector<int64_t>& out, const std::vector<std::vector<int64_t>>& inputs) {
  std::vector<std::vector<int64_t>> strides;
  for (const std::vector<int64_t>& in : inputs) {
    if (in.size() > out.size()) fail(ErrorCode::kInternal, "an elementwise input of rank ", in.size(), " above the output's ", out.size());
    std::vector<int64_t> s(out.size(), 0);
    int64_t step = 1;
    for (size_t d = in.size(); d-- > 0;) {
      s[out.size() - in.size() + d] = in[d] == 1 ? 0 : step;
      step *= in[d];
    }
    strides.push_back(std::move(s));
  }
  return merge_dims(out, strides);  // the dense output merges wherever the inputs do
}

}  // namespace

ElementwiseParams elementwise_params(const std::vector<int64_t>& out, const std::vector<std::vector<int64_t>>& inputs, int width) {
  if (out.size() > size_t(kMaxRank) || inputs.size() > size_t(kElementwiseMaxInputs))
    fail(ErrorCode::kInternal, "elementwise parameters for rank ", out.size(), " and ", inputs.size(), " inputs");
  MergedDims c = coalesce(out, inputs);
  ElementwiseParams q{};
  q.n = 1;
  for (int64_t d : c.dims) q.n *= d;
  q.rank = int64_t(c.dims.size());
  size_t first = size_t(kMaxRank) - c.dims.size();  // right-aligned: the innermost dim at kMaxRank - 1
  for (size_t d = 0; d < size_t(kMaxRank); ++d) q.out_dims[d] = d < first ? 1 : c.dims[d - first];
  bool contiguous = c.dims.size() == 1 || q.n == 1, inner_vectors = c.dims.size() == 1 || c.dims.back() % width == 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const std::vector<int64_t>& s = c.strides[k];
    std::copy(s.begin(), s.end(), q.in_strides[k] + first);
    contiguous = contiguous && (s.back() == 1 || q.n == 1);
    // An input stepping by 1 through the innermost dim has it whole, so its
    // outer strides, and the offsets of its packs, are multiples of the width.
    inner_vectors = inner_vectors && (s.back() == 0 || s.back() == 1);
  }
  q.contiguous = contiguous;
  q.inner_vectors = !contiguous && inner_vectors;
  return q;
}

int64_t elementwise_threads(const ElementwiseParams& params, int width) {
  bool packs = (params.contiguous || params.inner_vectors) && params.n <= 0x7fffffffLL;  // the kernel's 32-bit vector paths
  return packs ? (params.n + width - 1) / width : params.n;
}

int elementwise_vector_width(const std::vector<DType>& inputs, DType output) {
  size_t widest = dtype_size(output);
  for (DType d : inputs) widest = std::max(widest, dtype_size(d));
  return int(16 / widest);
}

std::string elementwise_source(const ElementwiseSpec& spec) {
  if (spec.inputs.size() > size_t(kElementwiseMaxInputs))
    fail(ErrorCode::kUnsupported, "an elementwise kernel with ", spec.inputs.size(), " inputs (at most ", kElementwiseMaxInputs, ")");
  std::ostringstream body;
  size_t n = spec.inputs.size();
  std::vector<Kind> kinds;
  for (size_t i = 0; i < n; ++i) {
    kinds.push_back(kind_of(spec.inputs[i]));
    std::string raw = "r" + std::to_string(i);
    bool integer = kinds.back() == Kind::kInt || kinds.back() == Kind::kUInt64;
    std::string v = integer ? "(" + type_name(kinds.back()) + ")" + raw : value_of(spec.inputs[i], raw);
    body << "  const " << type_name(kinds.back()) << " v" << i << " = " << v << ";\n";
  }
  auto operand = [&](int r) { return r < 0 ? std::string() : "v" + std::to_string(r); };
  for (size_t i = 0; i < spec.program.size(); ++i) {
    const auto& in = spec.program[i];
    // Computed in the kind of the first value operand (Where: its second operand).
    int lead = in.op == OpKind::kWhere ? in.args[1] : in.args[0];
    Kind k = lead >= 0 ? kinds[size_t(lead)] : Kind::kFloat;
    if (k == Kind::kBool && !returns_bool(in.op) && in.op != OpKind::kWhere) k = Kind::kInt;
    Kind result = returns_bool(in.op)                     ? Kind::kBool
                  : in.op == OpKind::kQuantizeLinear   ? Kind::kInt
                  : in.op == OpKind::kDequantizeLinear ? Kind::kFloat
                                                       : k;
    body << "  const " << type_name(result) << " v" << n + i << " = "
         << instruction_expr(in, operand(in.args[0]), operand(in.args[1]), operand(in.args[2]), k, spec.saturate) << ";\n";
    kinds.push_back(result);
  }
  std::string last = "v" + std::to_string(n + spec.program.size() - 1);
  std::string value = is_floating(spec.output) ? stored(spec.output, last) : "(" + c_type(spec.output) + ")(" + last + ")";
  body << "  return " << value << ";\n";
  return KernelText(spec.inputs, spec.output).source(body.str(), spec.specialize);
}

std::string cast_source(DType from, DType to, bool saturate, const std::optional<Params>& specialize, E8M0Rounding rounding) {
  std::string value = value_of(from, "r0"), body;
  bool real_from = is_floating(from) || is_narrow_float(from);
  if (from == to)  // Identity and Dropout: the bits, NaN payloads too
    body = "  return r0;\n";
  else if (is_narrow_float(to))
    body = "  return " + narrow_float_store(to, real_from ? value : "r0", saturate, rounding) + ";\n";
  // Truncate toward zero like the reference: NaN to 0, infinities too for the narrow integers.
  else if (real_from && !is_floating(to) && to != DType::kBool)
    body = "  const double x = (double)" + value + ";\n  return " +
           stored(to, is_narrow_integer(to) ? "(x - x == 0.0 ? trunc(x) : 0.0)" : "(x != x ? 0.0 : trunc(x))") + ";\n";
  else if (!real_from && is_floating(to))
    body = "  return " + stored(to, "(" + compute_type(to) + ")r0") + ";\n";
  else if (to == DType::kBool)
    body = "  return " + stored(to, value + " != 0") + ";\n";
  else if (!real_from)  // integers wrap; the narrow ones into their bits
    body = is_narrow_integer(to) ? "  return " + narrow_integer_store(to, "r0") + ";\n" : "  return (" + c_type(to) + ")r0;\n";
  else
    body = "  return " + stored(to, "(" + compute_type(to) + ")" + value) + ";\n";
  return KernelText({from}, to).source(body, specialize);
}

}  // namespace kiln::codegen
