// Elementwise ops: unary math and activations, casts, binary arithmetic and
// comparisons with numpy broadcasting, variadic Min/Max/Mean/Sum, Where, and
// the integer bit operations.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include "kernels.h"
#include "kiln/ir/fused.h"
#include "kiln/ir/quantization.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

// Evaluates fn over the broadcast of the given inputs. V is double (float
// dtypes) or int64_t (integer and bool dtypes); fn takes `const V*` args.
template <class V, class Fn>
std::vector<V> broadcast_map(const std::vector<const Tensor*>& ins, const std::vector<int64_t>& out_dims, Fn&& fn) {
  std::vector<std::vector<V>> vals;
  std::vector<std::vector<int64_t>> strides;
  for (const Tensor* t : ins) {
    if constexpr (std::is_same_v<V, double>) vals.push_back(to_doubles(*t));
    else vals.push_back(to_ints(*t));
    strides.push_back(broadcast_strides(t->dims, out_dims));
  }
  std::vector<V> out;
  out.reserve(size_t(ir::checked_numel(out_dims)));
  std::vector<V> args(ins.size());
  for_each_index(out_dims, [&](const std::vector<int64_t>& idx) {
    for (size_t k = 0; k < ins.size(); ++k) {
      int64_t off = 0;
      for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides[k][d];
      args[k] = vals[k][size_t(off)];
    }
    out.push_back(fn(args.data()));
  });
  return out;
}

std::vector<const Tensor*> present(const KernelContext& c) {
  std::vector<const Tensor*> v;
  for (auto* t : c.inputs)
    if (t) v.push_back(t);
  return v;
}

// Integers and bools compute as int64 (to_ints), floats of every width as double.
bool int_path(DType d) { return !is_floating(d) && !is_narrow_float(d); }

// Narrow floats from doubles with Cast's and QuantizeLinear's `saturate`.
Tensor narrow_floats(DType dtype, const std::vector<int64_t>& dims, const std::vector<double>& values, bool saturate) {
  std::vector<std::byte> bytes(values.size());
  for (size_t i = 0; i < values.size(); ++i) bytes[i] = std::byte(narrow_float_from_double(dtype, values[i], saturate));
  Tensor t;
  t.dtype = dtype;
  t.dims = dims;
  t.data = Buffer::from_bytes(std::move(bytes));
  return t;
}

// Cast to float8e8m0 as ONNX's reference: from each value as float32 (an
// integer converted to it directly, rounded once), by round_mode and saturate.
Tensor float8e8m0s(const KernelContext& c, const Tensor& x) {
  E8M0Rounding rounding = *parse_e8m0_rounding(c.attrs().get_string("round_mode", "up"));  // inference checked it
  bool saturate = c.attrs().get_int("saturate", 1) != 0;
  std::vector<float> values;
  if (int_path(x.dtype)) {
    for (int64_t v : to_ints(x)) values.push_back(x.dtype == DType::kUInt64 ? float(uint64_t(v)) : float(v));
  } else {
    for (double v : to_doubles(x)) values.push_back(float(v));
  }
  std::vector<std::byte> bytes(values.size());
  for (size_t i = 0; i < values.size(); ++i) bytes[i] = std::byte(float_to_float8e8m0(values[i], saturate, rounding));
  Tensor t;
  t.dtype = DType::kFloat8E8M0;
  t.dims = x.dims;
  t.data = Buffer::from_bytes(std::move(bytes));
  return t;
}

Tensor unary_float(const KernelContext& c, double (*fn)(double, const ir::Attributes&)) {
  const Tensor& x = c.in(0);
  std::vector<double> v = to_doubles(x);
  for (double& e : v) e = fn(e, c.attrs());
  return from_doubles(x.dtype, x.dims, v);
}

double erf_gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

Tensor run_unary(const KernelContext& c) {
  const Tensor& x = c.in(0);
  OpKind op = c.node.op;
  if (int_path(x.dtype) && (op == OpKind::kAbs || op == OpKind::kNeg || op == OpKind::kSign || op == OpKind::kRelu)) {
    std::vector<int64_t> v = to_ints(x);
    bool non_negative = is_unsigned_integer(x.dtype);
    for (auto& e : v) {
      if (non_negative && op != OpKind::kNeg) e = op == OpKind::kSign ? e != 0 : e;
      else if (op == OpKind::kAbs) e = e < 0 ? -e : e;
      else if (op == OpKind::kNeg) e = -e;
      else if (op == OpKind::kSign) e = (e > 0) - (e < 0);
      else e = e < 0 ? 0 : e;
    }
    return from_ints(x.dtype, x.dims, v);
  }
  using A = const ir::Attributes&;
  switch (op) {
    case OpKind::kAbs: return unary_float(c, [](double v, A) { return std::fabs(v); });
    case OpKind::kNeg: return unary_float(c, [](double v, A) { return -v; });
    case OpKind::kSign: return unary_float(c, [](double v, A) { return double((v > 0) - (v < 0)); });
    case OpKind::kRelu: return unary_float(c, [](double v, A) { return v < 0 ? 0.0 : v; });
    case OpKind::kSqrt: return unary_float(c, [](double v, A) { return std::sqrt(v); });
    case OpKind::kReciprocal: return unary_float(c, [](double v, A) { return 1.0 / v; });
    case OpKind::kExp: return unary_float(c, [](double v, A) { return std::exp(v); });
    case OpKind::kLog: return unary_float(c, [](double v, A) { return std::log(v); });
    case OpKind::kFloor: return unary_float(c, [](double v, A) { return std::floor(v); });
    case OpKind::kCeil: return unary_float(c, [](double v, A) { return std::ceil(v); });
    case OpKind::kRound: return unary_float(c, [](double v, A) { return std::nearbyint(v); });  // half to even
    case OpKind::kSigmoid: return unary_float(c, [](double v, A) { return 1.0 / (1.0 + std::exp(-v)); });
    case OpKind::kTanh: return unary_float(c, [](double v, A) { return std::tanh(v); });
    case OpKind::kErf: return unary_float(c, [](double v, A) { return std::erf(v); });
    case OpKind::kSoftplus: return unary_float(c, [](double v, A) { return v > 30 ? v : std::log1p(std::exp(v)); });
    case OpKind::kSoftsign: return unary_float(c, [](double v, A) { return v / (1.0 + std::fabs(v)); });
    case OpKind::kSin: return unary_float(c, [](double v, A) { return std::sin(v); });
    case OpKind::kCos: return unary_float(c, [](double v, A) { return std::cos(v); });
    case OpKind::kTan: return unary_float(c, [](double v, A) { return std::tan(v); });
    case OpKind::kAsin: return unary_float(c, [](double v, A) { return std::asin(v); });
    case OpKind::kAcos: return unary_float(c, [](double v, A) { return std::acos(v); });
    case OpKind::kAtan: return unary_float(c, [](double v, A) { return std::atan(v); });
    case OpKind::kSinh: return unary_float(c, [](double v, A) { return std::sinh(v); });
    case OpKind::kCosh: return unary_float(c, [](double v, A) { return std::cosh(v); });
    case OpKind::kAsinh: return unary_float(c, [](double v, A) { return std::asinh(v); });
    case OpKind::kAcosh: return unary_float(c, [](double v, A) { return std::acosh(v); });
    case OpKind::kAtanh: return unary_float(c, [](double v, A) { return std::atanh(v); });
    case OpKind::kLeakyRelu:
      return unary_float(c, [](double v, A a) { return v < 0 ? a.get_float("alpha", 0.01) * v : v; });
    case OpKind::kElu:
      return unary_float(c, [](double v, A a) { return v < 0 ? a.get_float("alpha", 1.0) * std::expm1(v) : v; });
    case OpKind::kSelu:
      return unary_float(c, [](double v, A a) {
        double alpha = a.get_float("alpha", 1.67326319217681884765625);
        double gamma = a.get_float("gamma", 1.05070102214813232421875);
        return gamma * (v > 0 ? v : alpha * std::expm1(v));
      });
    case OpKind::kCelu:
      return unary_float(c, [](double v, A a) {
        double alpha = a.get_float("alpha", 1.0);
        return std::max(0.0, v) + std::min(0.0, alpha * std::expm1(v / alpha));
      });
    case OpKind::kHardSigmoid:
      return unary_float(c, [](double v, A a) {
        return std::clamp(a.get_float("alpha", 0.2) * v + a.get_float("beta", 0.5), 0.0, 1.0);
      });
    case OpKind::kHardSwish: return unary_float(c, [](double v, A) { return v * std::clamp(v / 6.0 + 0.5, 0.0, 1.0); });
    case OpKind::kGelu: {
      std::string approx = c.attrs().get_string("approximate", "none");
      if (approx == "tanh")
        return unary_float(c, [](double v, A) {
          return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
        });
      if (approx != "none") c.error(ErrorCode::kInvalidModel, "approximate must be 'none' or 'tanh'");
      return unary_float(c, [](double v, A) { return erf_gelu(v); });
    }
    case OpKind::kThresholdedRelu:
      return unary_float(c, [](double v, A a) { return v > a.get_float("alpha", 1.0) ? v : 0.0; });
    case OpKind::kShrink:
      return unary_float(c, [](double v, A a) {
        double lambd = a.get_float("lambd", 0.5), bias = a.get_float("bias", 0.0);
        return v < -lambd ? v + bias : v > lambd ? v - bias : 0.0;
      });
    default: c.error(ErrorCode::kInternal, "not a unary op");
  }
}

// A number as ONNX's Cast writes it (numpy's str): the fewest significant
// digits that read back to the same value of `from`, positional from 1e-4 to
// 1e16 ("0.5", "100.0"), scientific outside ("1e-05"); NaN, INF and -INF.
std::string number_to_string(double v, DType from) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "INF" : "-INF";
  char buf[400];
  int digits = 1;
  for (; digits < 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
    if (rounded_to(from, std::strtod(buf, nullptr)) == v) break;
  }
  double mag = std::fabs(v);
  if (mag != 0 && (mag < 1e-4 || mag >= 1e16)) {
    std::snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
    return buf;
  }
  int exponent = mag == 0 ? 0 : int(std::floor(std::log10(mag)));
  std::snprintf(buf, sizeof buf, "%.*f", std::max(0, digits - 1 - exponent), v);
  std::string s = buf;
  if (s.find('.') == std::string::npos) s += ".0";
  return s;
}

std::string element_to_string(const Tensor& x, size_t i, const std::vector<int64_t>& ints, const std::vector<double>& doubles) {
  if (is_floating(x.dtype)) return number_to_string(doubles[i], x.dtype);
  if (x.dtype == DType::kUInt64) return std::to_string(uint64_t(ints[i]));
  return std::to_string(ints[i]);
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// A string as ONNX's Cast reads it: plain or scientific notation, "INF",
// "+INF", "-INF" and "NaN" in any case; anything else is an error naming it.
double string_to_number(const KernelContext& c, const std::string& s, size_t index) {
  if (equals_ignoring_case(s, "nan")) return NAN;
  if (equals_ignoring_case(s, "inf") || equals_ignoring_case(s, "+inf")) return INFINITY;
  if (equals_ignoring_case(s, "-inf")) return -INFINITY;
  const char* begin = s.c_str();
  char* end = nullptr;
  double v = s.empty() || std::isspace(static_cast<unsigned char>(s[0])) ? 0 : std::strtod(begin, &end);
  if (end != begin + s.size() || s.empty())
    c.error(ErrorCode::kInvalidArgument, "element ", index, " '", s.substr(0, 64), "' is not a number");
  return v;
}

Tensor cast_strings(const KernelContext& c, const Tensor& x, DType to) {
  size_t n = size_t(x.numel());
  if (is_string(to)) {
    Tensor out;
    out.dtype = to;
    out.dims = x.dims;
    std::vector<int64_t> ints = is_floating(x.dtype) ? std::vector<int64_t>{} : to_ints(x);
    std::vector<double> doubles = is_floating(x.dtype) ? to_doubles(x) : std::vector<double>{};
    for (size_t i = 0; i < n; ++i) out.strings.push_back(element_to_string(x, i, ints, doubles));
    return out;
  }
  if (is_integer(to)) {  // whole numbers exactly (a double holds int64 only to 2^53); others truncated
    std::vector<int64_t> v(n);
    for (size_t i = 0; i < n; ++i) {
      const std::string& s = x.strings[i];
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v[i]);
      if (ec != std::errc() || end != s.data() + s.size()) {
        double d = string_to_number(c, s, i);
        constexpr double kTwo63 = 9223372036854775808.0;
        v[i] = std::isnan(d) ? 0 : d >= kTwo63 ? std::numeric_limits<int64_t>::max() : d <= -kTwo63 ? std::numeric_limits<int64_t>::min()
                                                                                              : int64_t(std::trunc(d));
      }
    }
    return from_ints(to, x.dims, v);
  }
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = string_to_number(c, x.strings[i], i);
  return from_doubles(to, x.dims, v);
}

Tensor run_cast(const KernelContext& c) {
  const Tensor& x = c.in(0);
  DType to = c.out_dtype(0);
  if (to == x.dtype) return x;
  if (is_string(x.dtype) || is_string(to)) return cast_strings(c, x, to);
  if (to == DType::kFloat8E8M0) return float8e8m0s(c, x);
  if (is_narrow_float(to)) return narrow_floats(to, x.dims, to_doubles(x), c.attrs().get_int("saturate", 1) != 0);
  if (int_path(x.dtype) && int_path(to)) return from_ints(to, x.dims, to_ints(x));
  if (int_path(x.dtype) && to == DType::kFloat32) {  // int64 -> float32 directly, avoiding double rounding
    std::vector<int64_t> v = to_ints(x);
    std::vector<double> d(v.size());
    bool u64 = x.dtype == DType::kUInt64;
    for (size_t i = 0; i < v.size(); ++i) d[i] = u64 ? double(float(uint64_t(v[i]))) : double(float(v[i]));
    return from_doubles(to, x.dims, d);
  }
  if (!int_path(x.dtype) && int_path(to) && to != DType::kBool) {
    std::vector<double> v = to_doubles(x);
    for (double& e : v) e = std::isnan(e) ? 0 : std::trunc(e);
    return from_doubles(to, x.dims, v);
  }
  if (x.dtype == DType::kFloat64 && (to == DType::kFloat16 || to == DType::kBFloat16)) {
    std::vector<double> v = to_doubles(x);  // round once: double -> float -> half can round twice, rarely
    return from_doubles(to, x.dims, v);
  }
  return from_doubles(to, x.dims, to_doubles(x));
}

Tensor run_clip(const KernelContext& c) {
  const Tensor& x = c.in(0);
  if (int_path(x.dtype)) {
    IntOrder order(x.dtype);
    std::vector<int64_t> v = to_ints(x);
    if (c.has(1))
      for (int64_t lo = to_ints(c.in(1))[0]; auto& e : v) e = order.max(e, lo);
    if (c.has(2))
      for (int64_t hi = to_ints(c.in(2))[0]; auto& e : v) e = order.min(e, hi);
    return from_ints(x.dtype, x.dims, v);
  }
  double lo = c.has(1) ? scalar_double(c.in(1)) : c.attrs().get_float("min", -INFINITY);
  double hi = c.has(2) ? scalar_double(c.in(2)) : c.attrs().get_float("max", INFINITY);
  std::vector<double> v = to_doubles(x);
  for (double& e : v)
    if (!std::isnan(e)) e = std::min(std::max(e, lo), hi);
  return from_doubles(x.dtype, x.dims, v);
}

int64_t int_mod(int64_t a, int64_t b, bool fmod, bool u64) {
  if (u64) return b == 0 ? 0 : int64_t(uint64_t(a) % uint64_t(b));
  if (b == 0 || b == -1) return 0;  // -1: INT64_MIN % -1 overflows
  int64_t r = a % b;
  if (!fmod && r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

Tensor run_binary(const KernelContext& c) {
  OpKind op = c.node.op;
  std::vector<int64_t> dims = c.out_dims(0);
  DType out = c.out_dtype(0);
  std::vector<const Tensor*> ins = present(c);
  bool fmod = c.attrs().get_int("fmod", 0) != 0;
  if (is_string(c.in(0).dtype)) {  // Equal, the one comparison ONNX defines on strings (byte for byte)
    auto sa = broadcast_strides(ins[0]->dims, dims), sb = broadcast_strides(ins[1]->dims, dims);
    std::vector<int64_t> v;
    for_each_index(dims, [&](const std::vector<int64_t>& idx) {
      int64_t oa = 0, ob = 0;
      for (size_t d = 0; d < idx.size(); ++d) {
        oa += idx[d] * sa[d];
        ob += idx[d] * sb[d];
      }
      v.push_back(ins[0]->strings[size_t(oa)] == ins[1]->strings[size_t(ob)]);
    });
    return from_ints(out, dims, v);
  }
  if (op == OpKind::kPow) {
    auto v = broadcast_map<double>(ins, dims, [](const double* a) { return std::pow(a[0], a[1]); });
    return from_doubles(out, dims, v);
  }
  if (int_path(c.in(0).dtype)) {
    IntOrder order(c.in(0).dtype);
    auto v = broadcast_map<int64_t>(ins, dims, [&](const int64_t* a) -> int64_t {
      switch (op) {
        case OpKind::kAdd: return int64_t(uint64_t(a[0]) + uint64_t(a[1]));
        case OpKind::kSub: return int64_t(uint64_t(a[0]) - uint64_t(a[1]));
        case OpKind::kMul: return int64_t(uint64_t(a[0]) * uint64_t(a[1]));
        case OpKind::kDiv:
          if (a[1] == 0) return 0;
          if (order.u64) return int64_t(uint64_t(a[0]) / uint64_t(a[1]));
          return a[1] == -1 ? int64_t(0 - uint64_t(a[0])) : a[0] / a[1];  // INT64_MIN / -1 wraps
        case OpKind::kMod: return int_mod(a[0], a[1], fmod, order.u64);
        case OpKind::kPRelu: return a[0] < 0 ? a[0] * a[1] : a[0];
        case OpKind::kEqual: return a[0] == a[1];
        case OpKind::kLess: return order.less(a[0], a[1]);
        case OpKind::kLessOrEqual: return !order.less(a[1], a[0]);
        case OpKind::kGreater: return order.less(a[1], a[0]);
        case OpKind::kGreaterOrEqual: return !order.less(a[0], a[1]);
        case OpKind::kAnd: return a[0] && a[1];
        case OpKind::kOr: return a[0] || a[1];
        case OpKind::kXor: return bool(a[0]) != bool(a[1]);
        default: return 0;
      }
    });
    return from_ints(out, dims, v);
  }
  auto v = broadcast_map<double>(ins, dims, [&](const double* a) -> double {
    switch (op) {
      case OpKind::kAdd: return a[0] + a[1];
      case OpKind::kSub: return a[0] - a[1];
      case OpKind::kMul: return a[0] * a[1];
      case OpKind::kDiv: return a[0] / a[1];
      case OpKind::kMod: {
        double r = std::fmod(a[0], a[1]);
        if (!fmod && r != 0 && ((r < 0) != (a[1] < 0))) r += a[1];
        return r;
      }
      case OpKind::kPRelu: return a[0] < 0 ? a[0] * a[1] : a[0];
      case OpKind::kEqual: return a[0] == a[1];
      case OpKind::kLess: return a[0] < a[1];
      case OpKind::kLessOrEqual: return a[0] <= a[1];
      case OpKind::kGreater: return a[0] > a[1];
      case OpKind::kGreaterOrEqual: return a[0] >= a[1];
      default: return 0;
    }
  });
  return from_doubles(out, dims, v);
}

// BitShift and the Bitwise ops on values widened to int64 (sign- or
// zero-extended); from_ints wraps the result back into the dtype's width.
Tensor run_bitwise(const KernelContext& c) {
  OpKind op = c.node.op;
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t bits = int64_t(dtype_size(c.in(0).dtype)) * 8;
  bool left = c.attrs().get_string("direction", "") == "LEFT", u64 = c.in(0).dtype == DType::kUInt64;
  auto v = broadcast_map<int64_t>(present(c), dims, [&](const int64_t* a) -> int64_t {
    switch (op) {
      case OpKind::kBitwiseAnd: return a[0] & a[1];
      case OpKind::kBitwiseOr: return a[0] | a[1];
      case OpKind::kBitwiseXor: return a[0] ^ a[1];
      case OpKind::kBitwiseNot: return ~a[0];
      default: break;
    }
    // BitShift-28: a shift by a negative amount or by the width or more leaves
    // only the sign fill: -1 for a right shift of a negative value, else 0.
    if (a[1] < 0 || a[1] >= bits) return !left && !u64 && a[0] < 0 ? -1 : 0;
    if (left) return int64_t(uint64_t(a[0]) << a[1]);
    return u64 ? int64_t(uint64_t(a[0]) >> a[1]) : a[0] >> a[1];  // else arithmetic on the sign- or zero-extended value
  });
  return from_ints(c.out_dtype(0), dims, v);
}

Tensor run_variadic(const KernelContext& c) {
  OpKind op = c.node.op;
  std::vector<int64_t> dims = c.out_dims(0);
  std::vector<const Tensor*> ins = present(c);
  size_t n = ins.size();
  if (int_path(c.in(0).dtype) && op != OpKind::kMean) {
    IntOrder order(c.in(0).dtype);
    auto v = broadcast_map<int64_t>(ins, dims, [&](const int64_t* a) {
      int64_t r = a[0];
      for (size_t i = 1; i < n; ++i)
        r = op == OpKind::kMin ? order.min(r, a[i]) : op == OpKind::kMax ? order.max(r, a[i]) : int64_t(uint64_t(r) + uint64_t(a[i]));
      return r;
    });
    return from_ints(c.out_dtype(0), dims, v);
  }
  auto v = broadcast_map<double>(ins, dims, [&](const double* a) {
    double r = a[0];
    for (size_t i = 1; i < n; ++i) {
      if (op == OpKind::kMin || op == OpKind::kMax) {
        if (std::isnan(r) || std::isnan(a[i])) r = NAN;
        else r = op == OpKind::kMin ? std::min(r, a[i]) : std::max(r, a[i]);
      } else {
        r += a[i];
      }
    }
    return op == OpKind::kMean ? r / double(n) : r;
  });
  return from_doubles(c.out_dtype(0), dims, v);
}

Tensor run_where(const KernelContext& c) {
  std::vector<int64_t> dims = c.out_dims(0);
  const Tensor &cond = c.in(0), &x = c.in(1), &y = c.in(2);
  auto sc = broadcast_strides(cond.dims, dims), sx = broadcast_strides(x.dims, dims), sy = broadcast_strides(y.dims, dims);
  const uint8_t* pc = cond.data.as<uint8_t>();
  // Calls take(from_x, element) per output element, in order: the element of x or y it copies.
  auto each = [&](auto&& take) {
    for_each_index(dims, [&](const std::vector<int64_t>& idx) {
      int64_t oc = 0, ox = 0, oy = 0;
      for (size_t d = 0; d < idx.size(); ++d) {
        oc += idx[d] * sc[d];
        ox += idx[d] * sx[d];
        oy += idx[d] * sy[d];
      }
      take(pc[oc] != 0, size_t(pc[oc] ? ox : oy));
    });
  };
  Tensor t;
  t.dtype = x.dtype;
  t.dims = dims;
  if (is_string(x.dtype)) {
    each([&](bool from_x, size_t i) { t.strings.push_back(from_x ? x.strings[i] : y.strings[i]); });
    return t;
  }
  size_t elem = dtype_size(x.dtype);
  std::vector<std::byte> bytes(size_t(ir::checked_numel(dims)) * elem);
  std::byte* out = bytes.data();
  each([&](bool from_x, size_t i) {
    std::memcpy(out, (from_x ? x : y).data.data() + i * elem, elem);
    out += elem;
  });
  t.data = Buffer::from_bytes(std::move(bytes));
  return t;
}

// Runs the program in float64 (no rounding between instructions, like the
// fused GPU kernel, which keeps intermediates in registers), rounding once at the end.
Tensor run_fused(const KernelContext& c) {
  std::vector<ir::FusedInstruction> program = ir::decode_fused_program(c.node);
  std::vector<Tensor> values;
  for (const Tensor* t : c.inputs)
    values.push_back(t->dtype == DType::kBool ? *t : from_doubles(DType::kFloat64, t->dims, to_doubles(*t)));
  std::function<ir::Dim()> fresh = [] { return ir::Dim(0); };
  for (const ir::FusedInstruction& in : program) {
    ir::Node node{c.node.name, in.op, {}, {0}, ir::fused_instruction_attrs(in)};
    std::vector<const Tensor*> args;
    std::vector<ir::InferInput> infer_in;
    for (int a : in.args) {
      if (a < 0) break;
      const Tensor& t = values[size_t(a)];
      args.push_back(&t);
      node.inputs.push_back(a);
      infer_in.push_back(ir::InferInput{true, t.dtype, ir::shape_of(t.dims), nullptr, &t});
    }
    KernelContext sub{node, args, ir::infer_node(node, infer_in, fresh)};
    Kernel kernel = elementwise_kernel(in.op);
    if (!kernel) c.error(ErrorCode::kInternal, "instruction ", ir::op_name(in.op), " has no reference kernel");
    values.push_back(kernel(sub).at(0));
  }
  return from_doubles(c.out_dtype(0), c.out_dims(0), to_doubles(values.back()));
}

Outputs run_identity(const KernelContext& c) { return {c.in(0)}; }

Outputs run_dropout(const KernelContext& c) {
  const Tensor& x = c.in(0);
  std::vector<double> ones(size_t(x.numel()), 1.0);
  return {x, from_doubles(DType::kBool, x.dims, ones)};
}

Tensor run_not(const KernelContext& c) {
  std::vector<int64_t> v = to_ints(c.in(0));
  for (auto& e : v) e = !e;
  return from_ints(DType::kBool, c.in(0).dims, v);
}

// IsNaN and IsInf.
Tensor run_is_special(const KernelContext& c) {
  bool neg = c.attrs().get_int("detect_negative", 1), pos = c.attrs().get_int("detect_positive", 1);
  std::vector<double> v = to_doubles(c.in(0));
  for (double& e : v)
    e = c.node.op == OpKind::kIsNaN ? std::isnan(e) : std::isinf(e) && ((e > 0 && pos) || (e < 0 && neg));
  return from_doubles(DType::kBool, c.in(0).dims, v);
}

// For each element of x (row-major), the index of its scale and zero point.
std::vector<int64_t> quant_param_index(const KernelContext& c, const Tensor& x, const Tensor& scale) {
  ir::QuantGranularity g = ir::quant_granularity(c.node, x.dims, scale.dims);
  std::vector<int64_t> index(size_t(x.numel()), 0);
  if (g.axis < 0) return index;
  std::vector<int64_t> scale_strides = strides_of(scale.dims);
  size_t i = 0;
  for_each_index(x.dims, [&](const std::vector<int64_t>& idx) {
    int64_t at = 0;
    if (g.block_size == 0) at = idx[size_t(g.axis)];
    else
      for (size_t d = 0; d < idx.size(); ++d) at += (int64_t(d) == g.axis ? idx[d] / g.block_size : idx[d]) * scale_strides[d];
    index[i++] = at;
  });
  return index;
}

// The zero point's values (input 2), zeros without it. A float quantized
// type (float8, float4e2m1) has none but zeros: ONNX defines them no offset.
std::vector<double> zero_points(const KernelContext& c, size_t count) {
  if (!c.has(2)) return std::vector<double>(count, 0.0);
  std::vector<double> zeros = to_doubles(c.in(2));
  if (is_narrow_float(c.in(2).dtype))
    for (double z : zeros)
      if (z != 0) c.error(ErrorCode::kUnsupported, "zero point ", z, " of type ", dtype_name(c.in(2).dtype), "; a float quantized type takes 0 only");
  return zeros;
}

// y = saturate(round_half_even(x / scale) + zero_point); the division in the
// precision of quantize_precision. NaN saturates to the low end, as
// ONNX's reference converts it. A float quantized type rounds x / scale into
// its format (saturating unless `saturate` is 0).
Tensor run_quantize(const KernelContext& c) {
  const Tensor &x = c.in(0), &scale = c.in(1);
  DType precision = ir::quantize_precision(c.node, x.dtype, scale.dtype), out = c.out_dtype(0);
  std::vector<double> xs = to_doubles(x), scales = to_doubles(scale), zeros = zero_points(c, scales.size());
  std::vector<int64_t> at = quant_param_index(c, x, scale);
  std::vector<double> ratio(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    size_t p = size_t(at[i]);
    ratio[i] = rounded_to(precision, rounded_to(precision, xs[i]) / rounded_to(precision, scales[p]));
  }
  if (out == DType::kFloat4E2M1 && c.has(2))  // adds its zero point (0), as ONNX's reference does: -0 becomes +0
    for (size_t i = 0; i < ratio.size(); ++i) ratio[i] += zeros[size_t(at[i])];
  if (is_narrow_float(out)) return narrow_floats(out, x.dims, ratio, c.attrs().get_int("saturate", 1) != 0);
  ir::QuantRange range = ir::quant_range(out);
  std::vector<int64_t> q(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    double r = std::nearbyint(ratio[i]);
    q[i] = std::isnan(r) ? range.lo : int64_t(std::clamp(r + zeros[size_t(at[i])], double(range.lo), double(range.hi)));
  }
  return from_ints(out, x.dims, q);
}

// y = (x - zero_point) * scale, computed in float32 and rounded to the output type.
Tensor run_dequantize(const KernelContext& c) {
  const Tensor &x = c.in(0), &scale = c.in(1);
  std::vector<double> xs = to_doubles(x), scales = to_doubles(scale), zeros = zero_points(c, scales.size());
  std::vector<int64_t> at = quant_param_index(c, x, scale);
  std::vector<double> y(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    size_t p = size_t(at[i]);
    float shifted = float(xs[i]) - float(zeros[p]);
    y[i] = double(shifted * float(scales[p]));
  }
  return from_doubles(c.out_dtype(0), x.dims, y);
}

}  // namespace

Kernel elementwise_kernel(OpKind op) {
  switch (op) {
    case OpKind::kIdentity: return run_identity;
    case OpKind::kDropout: return run_dropout;
    case OpKind::kCast:
    case OpKind::kCastLike: return one_output<run_cast>;
    case OpKind::kClip: return one_output<run_clip>;
    case OpKind::kNot: return one_output<run_not>;
    case OpKind::kIsNaN:
    case OpKind::kIsInf: return one_output<run_is_special>;
    case OpKind::kAdd: case OpKind::kSub: case OpKind::kMul: case OpKind::kDiv: case OpKind::kPow: case OpKind::kMod:
    case OpKind::kPRelu: case OpKind::kEqual: case OpKind::kLess: case OpKind::kLessOrEqual: case OpKind::kGreater:
    case OpKind::kGreaterOrEqual: case OpKind::kAnd: case OpKind::kOr: case OpKind::kXor:
      return one_output<run_binary>;
    case OpKind::kMin: case OpKind::kMax: case OpKind::kMean: case OpKind::kSum: return one_output<run_variadic>;
    case OpKind::kWhere: return one_output<run_where>;
    case OpKind::kBitShift: case OpKind::kBitwiseAnd: case OpKind::kBitwiseOr: case OpKind::kBitwiseXor:
    case OpKind::kBitwiseNot:
      return one_output<run_bitwise>;
    case OpKind::kFusedElementwise: return one_output<run_fused>;
    case OpKind::kQuantizeLinear: return one_output<run_quantize>;
    case OpKind::kDequantizeLinear: return one_output<run_dequantize>;
    case OpKind::kAbs: case OpKind::kNeg: case OpKind::kSqrt: case OpKind::kReciprocal: case OpKind::kExp:
    case OpKind::kLog: case OpKind::kFloor: case OpKind::kCeil: case OpKind::kRound: case OpKind::kSign:
    case OpKind::kRelu: case OpKind::kSigmoid: case OpKind::kTanh: case OpKind::kErf: case OpKind::kSoftplus:
    case OpKind::kSoftsign: case OpKind::kSin: case OpKind::kCos: case OpKind::kTan: case OpKind::kAsin:
    case OpKind::kAcos: case OpKind::kAtan: case OpKind::kSinh: case OpKind::kCosh: case OpKind::kAsinh:
    case OpKind::kAcosh: case OpKind::kAtanh: case OpKind::kLeakyRelu: case OpKind::kElu: case OpKind::kSelu:
    case OpKind::kCelu: case OpKind::kHardSigmoid: case OpKind::kHardSwish: case OpKind::kGelu:
    case OpKind::kThresholdedRelu: case OpKind::kShrink:
      return one_output<run_unary>;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
