// Type and shape inference for every op. Works on symbolic Dims; with concrete
// dims and real data (the reference interpreter) it yields concrete shapes.
#include "kiln/ir/shape_inference.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "kiln/error.h"
#include "kiln/ir/fused.h"
#include "kiln/ir/limits.h"

namespace kiln::ir {

namespace {

constexpr int64_t kMaxKnownElements = 64;  // contents tracked only for shape-sized int tensors

template <class T>
std::vector<int64_t> ints_of(const TensorData& d) {
  std::vector<int64_t> out(size_t(d.numel()));
  const T* p = d.data.as<T>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = int64_t(p[i]);
  return out;
}

class Ctx {
 public:
  Ctx(const Node& node, const std::vector<InferInput>& in, const std::function<Dim()>& fresh)
      : node_(node), in_(in), fresh_(fresh), out_(node.outputs.size()) {}

  template <class... Args>
  [[noreturn]] void error(ErrorCode code, const Args&... args) const {
    fail(code, "node '", node_.name, "' (", op_name(node_.op), "): ", args...);
  }
  const Node& node() const { return node_; }
  const Attributes& attrs() const { return node_.attrs; }
  size_t num_inputs() const { return in_.size(); }
  size_t num_outputs() const { return out_.size(); }
  bool has(size_t i) const { return i < in_.size() && in_[i].present; }
  const InferInput& input(size_t i) const {
    if (!has(i)) error(ErrorCode::kInvalidModel, "input ", i, " is required");
    return in_[i];
  }
  const Shape& shape(size_t i) const { return input(i).shape; }
  // "input 2 ('bias')" for messages.
  std::string input_name(size_t i) const {
    return has(i) && in_[i].name ? str("input ", i, " ('", *in_[i].name, "')") : str("input ", i);
  }
  DType dtype(size_t i) const { return input(i).dtype; }
  int64_t rank(size_t i) const { return int64_t(shape(i).size()); }
  Dim fresh() const { return fresh_(); }
  // n fresh symbols, for an output whose rank is known but not its dims; n is
  // checked before anything is made (a shape input's length may be 4e9).
  Shape fresh_shape(const Dim& n, const char* what) const {
    if (!n.is_constant()) error(ErrorCode::kUnsupported, what, " of unknown length");
    check_rank(n.constant(), what);
    Shape out;
    for (int64_t i = 0; i < n.constant(); ++i) out.push_back(fresh());
    return out;
  }
  void check_rank(int64_t rank, const char* what) const {
    if (rank > kMaxRank) error(ErrorCode::kUnsupported, what, " has ", rank, " dims, more than the limit of ", kMaxRank);
  }

  // Elements of an integer input known at inference time (a constant, or shape arithmetic).
  std::optional<std::vector<Dim>> ints(size_t i) const {
    if (!has(i)) return std::nullopt;
    if (in_[i].known) return *in_[i].known;
    if (in_[i].data && (is_integer(in_[i].dtype) || in_[i].dtype == DType::kBool)) {
      std::vector<int64_t> v = read_ints(*in_[i].data);
      return std::vector<Dim>(v.begin(), v.end());
    }
    return std::nullopt;
  }
  // Like ints() but every element must be a constant.
  std::optional<std::vector<int64_t>> const_ints(size_t i) const {
    auto v = ints(i);
    if (!v) return std::nullopt;
    std::vector<int64_t> out;
    for (auto& d : *v) {
      if (!d.is_constant()) return std::nullopt;
      out.push_back(d.constant());
    }
    return out;
  }
  std::optional<std::vector<double>> doubles(size_t i) const {
    if (!has(i) || !in_[i].data) return std::nullopt;
    return read_doubles(*in_[i].data);
  }

  int64_t axis(int64_t a, int64_t rank, const char* what = "axis") const {
    if (a < -rank || a >= rank) error(ErrorCode::kInvalidModel, what, " ", a, " is out of range for rank ", rank);
    return a < 0 ? a + rank : a;
  }
  void require_dtype(size_t i, std::initializer_list<DType> allowed) const {
    DType d = dtype(i);
    if (std::find(allowed.begin(), allowed.end(), d) == allowed.end())
      error(ErrorCode::kTypeError, "input ", i, " has dtype ", dtype_name(d), ", which this op does not accept");
  }
  void require_float(size_t i) const {
    if (!is_floating(dtype(i)))
      error(ErrorCode::kTypeError, "input ", i, " has dtype ", dtype_name(dtype(i)), "; expected a float type");
  }
  void require_same_dtype(size_t a, size_t b) const {
    if (dtype(a) != dtype(b))
      error(ErrorCode::kTypeError, "inputs ", a, " and ", b, " have dtypes ", dtype_name(dtype(a)), " and ",
            dtype_name(dtype(b)), "; they must match");
  }
  // A one-element input: rank 0, or any rank with every dim 1.
  void require_scalar(size_t i) const {
    for (const Dim& d : shape(i))
      if (d != Dim(1))
        error(ErrorCode::kShapeError, input_name(i), " has shape ", shape_to_string(shape(i)), "; expected a single value");
  }
  void require_rank(size_t i, int64_t lo, int64_t hi = -1) const {
    int64_t r = rank(i);
    if (r < lo || (hi >= 0 && r > hi))
      error(ErrorCode::kShapeError, "input ", i, " has rank ", r, " (shape ", shape_to_string(shape(i)),
            "); expected ", hi == lo ? str(lo) : hi < 0 ? str("at least ", lo) : str(lo, " to ", hi));
  }

  // Every output's rank and, where its dims are known, its size are checked
  // here, before any consumer (reference kernel, builder, runtime) allocates.
  void set(size_t i, DType dtype, Shape shape, std::optional<std::vector<Dim>> known = std::nullopt) {
    inferred_ = true;
    if (i >= out_.size()) return;
    check_rank(int64_t(shape.size()), "the output");
    if (shape_is_constant(shape)) checked_byte_size(shape_constants(shape), dtype, str("output ", i));
    if (known && int64_t(known->size()) > kMaxKnownElements) known.reset();
    out_[i] = InferOutput{dtype, std::move(shape), std::move(known)};
  }
  std::vector<InferOutput> take() { return std::move(out_); }
  bool inferred() const { return inferred_; }

  // Input i must broadcast to `target` without growing it (ONNX's
  // unidirectional broadcast): no more dims, each trailing dim 1 or the
  // target's. Kernels index parameters by the target's shape.
  void require_broadcasts_to(size_t i, const Shape& target, const char* target_name) const {
    const Shape& p = shape(i);
    bool ok = p.size() <= target.size();
    for (size_t k = 0; ok && k < p.size(); ++k) {
      const Dim &d = p[p.size() - 1 - k], &t = target[target.size() - 1 - k];
      ok = d == Dim(1) || d == t || !d.is_constant() || !t.is_constant();
    }
    if (!ok)
      error(ErrorCode::kShapeError, input_name(i), " of shape ", shape_to_string(p), " does not broadcast to ", target_name,
            " ", shape_to_string(target), " (each of its last dims must be 1 or equal)");
  }

  Shape broadcast(const Shape& a, const Shape& b) const {
    try {
      return broadcast_shapes(a, b);
    } catch (const Error& e) {
      error(e.code(), e.what());
    }
  }

 private:
  const Node& node_;
  const std::vector<InferInput>& in_;
  const std::function<Dim()>& fresh_;
  std::vector<InferOutput> out_;
  bool inferred_ = false;  // some output was set: the op has an inference rule
};

// ---- elementwise ----------------------------------------------------------

std::optional<std::vector<Dim>> known_binary(const Ctx& c, OpKind op) {
  auto a = c.ints(0), b = c.ints(1);
  if (!a || !b) return std::nullopt;
  if (a->size() != b->size() && a->size() != 1 && b->size() != 1) return std::nullopt;
  size_t n = std::max(a->size(), b->size());
  std::vector<Dim> out;
  for (size_t i = 0; i < n; ++i) {
    const Dim& x = (*a)[a->size() == 1 ? 0 : i];
    const Dim& y = (*b)[b->size() == 1 ? 0 : i];
    switch (op) {
      case OpKind::kAdd: out.push_back(x + y); break;
      case OpKind::kSub: out.push_back(x - y); break;
      case OpKind::kMul: out.push_back(x * y); break;
      case OpKind::kDiv:
        if (y == Dim(0)) return std::nullopt;
        out.push_back(floor_div(x, y));  // exact for the sizes shape arithmetic divides
        break;
      case OpKind::kMax: out.push_back(dim_max(x, y)); break;
      case OpKind::kMin: out.push_back(dim_min(x, y)); break;
      case OpKind::kMod:
        if (y == Dim(0)) return std::nullopt;
        if (c.attrs().get_int("fmod", 0) == 0) out.push_back(floor_mod(x, y));
        else if (x.is_constant() && y.is_constant()) out.push_back(Dim(x.constant() % y.constant()));  // C remainder
        else return std::nullopt;
        break;
      default: return std::nullopt;
    }
  }
  return out;
}

void infer_unary(Ctx& c, bool float_only) {
  if (float_only) c.require_float(0);
  std::optional<std::vector<Dim>> known;
  if (c.node().op == OpKind::kIdentity) known = c.ints(0);
  if (c.node().op == OpKind::kNeg && is_integer(c.dtype(0)) && (known = c.ints(0)))
    for (auto& d : *known) d = Dim(0) - d;
  c.set(0, c.dtype(0), c.shape(0), known);
}

void infer_binary(Ctx& c, OpKind op) {
  bool compare = op == OpKind::kEqual || op == OpKind::kLess || op == OpKind::kLessOrEqual ||
                 op == OpKind::kGreater || op == OpKind::kGreaterOrEqual;
  bool logical = op == OpKind::kAnd || op == OpKind::kOr || op == OpKind::kXor;
  if (op != OpKind::kPow) c.require_same_dtype(0, 1);
  if (logical) c.require_dtype(0, {DType::kBool});
  if (op == OpKind::kPRelu) c.require_float(0);
  if (op == OpKind::kPRelu) c.require_broadcasts_to(1, c.shape(0), "X");
  Shape out = c.broadcast(c.shape(0), c.shape(1));
  bool known_ok = out.size() <= 1 && is_integer(c.dtype(0));
  c.set(0, compare || logical ? DType::kBool : c.dtype(0), out, known_ok ? known_binary(c, op) : std::nullopt);
}

void infer_variadic(Ctx& c, OpKind op) {
  Shape out = c.shape(0);
  for (size_t i = 1; i < c.num_inputs(); ++i) {
    c.require_same_dtype(0, i);
    out = c.broadcast(out, c.shape(i));
  }
  if (op == OpKind::kMean) c.require_float(0);
  std::optional<std::vector<Dim>> known;
  if (c.num_inputs() == 2 && out.size() <= 1 && is_integer(c.dtype(0))) known = known_binary(c, op);
  c.set(0, c.dtype(0), out, known);
}

// ---- linear algebra ---------------------------------------------------------

void check_equal_dims(const Ctx& c, const Dim& a, const Dim& b, const char* what) {
  if (a.is_constant() && b.is_constant() && a != b)
    c.error(ErrorCode::kShapeError, what, " do not match: ", a.to_string(), " vs ", b.to_string());
}

void infer_matmul(Ctx& c) {
  c.require_same_dtype(0, 1);
  Shape a = c.shape(0), b = c.shape(1);
  if (a.empty() || b.empty()) c.error(ErrorCode::kShapeError, "MatMul inputs must have rank >= 1");
  bool a_vec = a.size() == 1, b_vec = b.size() == 1;
  if (a_vec) a.insert(a.begin(), Dim(1));
  if (b_vec) b.push_back(Dim(1));
  check_equal_dims(c, a.back(), b[b.size() - 2], "inner dimensions");
  Shape batch = c.broadcast(Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2));
  if (!a_vec) batch.push_back(a[a.size() - 2]);
  if (!b_vec) batch.push_back(b.back());
  c.set(0, c.dtype(0), batch);
}

void infer_fused_matmul(Ctx& c) {
  c.require_same_dtype(0, 1);
  c.require_float(0);
  bool trans_b = c.attrs().get_int("trans_b", 0) != 0;
  std::string act = c.attrs().get_string("activation", "none");
  if (std::find(kFusedActivations.begin(), kFusedActivations.end(), act) == kFusedActivations.end())
    c.error(ErrorCode::kInvalidModel, "activation '", act, "' is unknown");
  Shape a = c.shape(0), b = c.shape(1);
  c.require_rank(0, 2);
  c.require_rank(1, 2);
  if (trans_b) std::swap(b[b.size() - 2], b.back());  // B holds op(B) transposed in its last two dims
  check_equal_dims(c, a.back(), b[b.size() - 2], "inner dimensions");
  Shape out = c.broadcast(Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2));
  out.push_back(a[a.size() - 2]);
  out.push_back(b.back());
  if (c.has(2)) {
    c.require_same_dtype(0, 2);
    c.require_rank(2, 1, 1);
    check_equal_dims(c, c.shape(2)[0], out.back(), "bias length and N");
  }
  if (c.has(3)) {
    c.require_same_dtype(0, 3);
    c.require_broadcasts_to(3, out, "the output");
  }
  c.set(0, c.dtype(0), out);
}

void infer_attention(Ctx& c) {
  for (size_t i = 0; i < 3; ++i) c.require_float(i);
  c.require_same_dtype(0, 1);
  c.require_same_dtype(0, 2);
  c.set(0, c.dtype(0), attention_output_shape(c.node(), c.shape(0), c.shape(1), c.shape(2)));  // throws naming the node
}

void infer_fused_elementwise(Ctx& c) {
  decode_fused_program(c.node());  // validates the program
  Shape out;
  std::optional<DType> dtype;
  for (size_t i = 0; i < c.num_inputs(); ++i) {
    out = c.broadcast(out, c.shape(i));
    if (c.dtype(i) == DType::kBool) continue;
    if (dtype && *dtype != c.dtype(i)) c.error(ErrorCode::kTypeError, "inputs mix ", dtype_name(*dtype), " and ", dtype_name(c.dtype(i)));
    dtype = c.dtype(i);
  }
  if (!dtype || !is_floating(*dtype)) c.error(ErrorCode::kTypeError, "FusedElementwise needs float inputs");
  c.set(0, *dtype, out);
}

void infer_gemm(Ctx& c) {
  c.require_same_dtype(0, 1);
  c.require_rank(0, 2, 2);
  c.require_rank(1, 2, 2);
  bool ta = c.attrs().get_int("transA", 0), tb = c.attrs().get_int("transB", 0);
  Dim m = c.shape(0)[ta ? 1 : 0], k = c.shape(0)[ta ? 0 : 1];
  Dim k2 = c.shape(1)[tb ? 1 : 0], n = c.shape(1)[tb ? 0 : 1];
  check_equal_dims(c, k, k2, "inner dimensions");
  Shape out{m, n};
  if (c.has(2)) c.require_broadcasts_to(2, out, "the output [M,N]");
  c.set(0, c.dtype(0), out);
}

void infer_einsum(Ctx& c) {
  EinsumEquation parsed = parse_einsum(c.attrs().get_string("equation", ""));
  const std::string& eq = parsed.text;
  const std::vector<std::string>& terms = parsed.terms;
  if (terms.size() != c.num_inputs())
    c.error(ErrorCode::kInvalidModel, "equation '", eq, "' has ", terms.size(), " operands but the node has ",
            c.num_inputs(), " inputs");
  std::map<char, Dim> dims;
  std::map<char, int> counts;
  Shape ellipsis;
  for (size_t t = 0; t < terms.size(); ++t) {
    c.require_same_dtype(0, t);
    const Shape& s = c.shape(t);
    std::string term = terms[t];
    size_t ell = term.find("...");
    size_t letters = term.size() - (ell == std::string::npos ? 0 : 3);
    if (letters > s.size() || (ell == std::string::npos && letters != s.size()))
      c.error(ErrorCode::kShapeError, "operand ", t, " '", term, "' does not fit shape ", shape_to_string(s));
    size_t ell_rank = s.size() - letters;
    size_t d = 0;
    for (size_t i = 0; i < term.size(); ++i) {
      if (term[i] == '.') {
        Shape part(s.begin() + long(d), s.begin() + long(d + ell_rank));
        ellipsis = c.broadcast(ellipsis, part);
        d += ell_rank;
        i += 2;
        continue;
      }
      if (!std::isalpha(static_cast<unsigned char>(term[i])))
        c.error(ErrorCode::kInvalidModel, "bad character in equation '", eq, "'");
      char l = term[i];
      const Dim& v = s[d++];
      auto it = dims.find(l);
      if (it == dims.end() || it->second == Dim(1)) dims[l] = v;
      else if (!(v == Dim(1))) check_equal_dims(c, it->second, v, "einsum label sizes");
      counts[l]++;
    }
  }
  std::string out_term;
  if (parsed.has_output) {
    out_term = parsed.output;
  } else {
    out_term = ellipsis.empty() ? "" : "...";
    for (auto& [l, n] : counts)
      if (n == 1) out_term += l;
  }
  Shape out;
  for (size_t i = 0; i < out_term.size(); ++i) {
    if (out_term[i] == '.') {
      out.insert(out.end(), ellipsis.begin(), ellipsis.end());
      i += 2;
      continue;
    }
    auto it = dims.find(out_term[i]);
    if (it == dims.end()) c.error(ErrorCode::kInvalidModel, "output label '", out_term[i], "' is not in any operand");
    out.push_back(it->second);
  }
  c.set(0, c.dtype(0), out);
}

// ---- windows: conv and pooling ----------------------------------------------

struct WindowDims {
  std::vector<Dim> pads_begin, pads_end, output;
};

WindowDims window_dims(const Ctx& c, const Shape& in, const std::vector<int64_t>& kernel, bool transpose,
                       const Shape* explicit_output = nullptr) {
  size_t n = kernel.size();
  const Attributes& a = c.attrs();
  std::vector<int64_t> strides = a.get_ints("strides", std::vector<int64_t>(n, 1));
  std::vector<int64_t> dil = a.get_ints("dilations", std::vector<int64_t>(n, 1));
  std::vector<int64_t> pads = a.get_ints("pads", std::vector<int64_t>(2 * n, 0));
  std::string auto_pad = a.get_string("auto_pad", "NOTSET");
  bool ceil_mode = a.get_int("ceil_mode", 0) != 0;
  if (strides.size() != n || dil.size() != n || pads.size() != 2 * n)
    c.error(ErrorCode::kInvalidModel, "strides/dilations/pads do not fit ", n, " spatial dims");
  for (size_t i = 0; i < n; ++i) {
    if (strides[i] < 1 || dil[i] < 1 || kernel[i] < 1)
      c.error(ErrorCode::kInvalidModel, "strides, dilations and kernel sizes must be positive");
    if (pads[i] < 0 || pads[n + i] < 0) c.error(ErrorCode::kInvalidModel, "pads must be non-negative");
  }
  if (auto_pad != "NOTSET" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER" && auto_pad != "VALID")
    c.error(ErrorCode::kInvalidModel, "auto_pad '", auto_pad, "' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID");
  std::vector<int64_t> out_pad = a.get_ints("output_padding", std::vector<int64_t>(n, 0));
  if (out_pad.size() != n) c.error(ErrorCode::kInvalidModel, "output_padding does not fit ", n, " spatial dims");
  WindowDims w;
  for (size_t i = 0; i < n; ++i) {
    Dim extent = Dim(dil[i] * (kernel[i] - 1) + 1);
    Dim pb = pads[i], pe = pads[n + i], out;
    if (!transpose) {
      if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
        out = ceil_div(in[i], strides[i]);
        Dim total = dim_max(Dim(0), (out - 1) * strides[i] + extent - in[i]);
        Dim small = floor_div(total, 2);
        pb = auto_pad == "SAME_UPPER" ? small : total - small;
        pe = total - pb;
      } else {
        if (auto_pad == "VALID") pb = pe = 0;
        Dim span = in[i] + pb + pe - extent;
        out = (ceil_mode ? ceil_div(span, strides[i]) : floor_div(span, strides[i])) + 1;
        if (ceil_mode && out.is_constant() && (out.constant() - 1) * strides[i] >= (in[i] + pb).constant())
          out = out - 1;  // the last window would start in the end padding
      }
    } else {
      Dim full = Dim(strides[i]) * (in[i] - 1) + out_pad[i] + extent;
      if (explicit_output) {
        out = (*explicit_output)[i];
        Dim total = dim_max(Dim(0), full - out);
        Dim small = floor_div(total, 2);
        pb = auto_pad == "SAME_UPPER" ? small : total - small;
        pe = total - pb;
      } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
        out = in[i] * strides[i];
        Dim total = dim_max(Dim(0), full - out);
        Dim small = floor_div(total, 2);
        pb = auto_pad == "SAME_UPPER" ? small : total - small;
        pe = total - pb;
      } else {
        if (auto_pad == "VALID") pb = pe = 0;
        out = full - pb - pe;
      }
    }
    if (out.is_constant() && out.constant() < 1)
      c.error(ErrorCode::kShapeError, "spatial dim ", i, " of size ", in[i].to_string(), " gives output size ",
              out.constant(), " (window too large?)");
    w.pads_begin.push_back(pb);
    w.pads_end.push_back(pe);
    w.output.push_back(out);
  }
  return w;
}

std::vector<int64_t> kernel_from_weight(const Ctx& c, const Shape& w) {
  std::vector<int64_t> k;
  for (size_t i = 2; i < w.size(); ++i) {
    if (!w[i].is_constant()) c.error(ErrorCode::kShapeError, "kernel dims must be constant");
    k.push_back(w[i].constant());
  }
  auto attr = c.attrs().get_ints("kernel_shape", k);
  if (attr != k) c.error(ErrorCode::kShapeError, "kernel_shape attribute does not match the weight shape");
  return k;
}

// ConvChannelsLast is Conv with its input, weight and output seen through the
// channels-first permutation.
void infer_conv(Ctx& c, bool transpose, bool channels_last = false) {
  c.require_float(0);
  c.require_same_dtype(0, 1);
  c.require_rank(0, 3);
  Shape x = c.shape(0), w = c.shape(1);
  if (channels_last) {
    if (w.size() != x.size())
      c.error(ErrorCode::kShapeError, "weight rank ", w.size(), " does not match input rank ", x.size());
    x = permuted(x, to_channels_first_perm(x.size()));
    w = permuted(w, to_channels_first_perm(w.size()));
  }
  if (w.size() != x.size())
    c.error(ErrorCode::kShapeError, "weight rank ", w.size(), " does not match input rank ", x.size());
  int64_t group = c.attrs().get_int("group", 1);
  if (group < 1) c.error(ErrorCode::kInvalidModel, "group must be >= 1");
  std::vector<int64_t> kernel = kernel_from_weight(c, w);
  Shape spatial(x.begin() + 2, x.end());
  Dim out_channels;
  if (!transpose) {
    check_equal_dims(c, x[1], w[1] * group, "input channels and weight channels * group");
    out_channels = w[0];
  } else {
    check_equal_dims(c, x[1], w[0], "input channels and weight dim 0");
    out_channels = w[1] * group;
  }
  if (w[0].is_constant() && w[0].constant() % group != 0)
    c.error(ErrorCode::kShapeError, "weight dim 0 (", w[0].constant(), ") is not divisible by group ", group);
  if (c.has(2)) {
    c.require_rank(2, 1, 1);
    check_equal_dims(c, c.shape(2)[0], out_channels, "bias length and output channels");
  }
  Shape explicit_out;
  auto os = c.attrs().get_ints("output_shape");
  if (transpose && !os.empty()) {
    if (os.size() == spatial.size() + 2) os.erase(os.begin(), os.begin() + 2);
    if (os.size() != spatial.size()) c.error(ErrorCode::kInvalidModel, "output_shape does not fit the spatial rank");
    explicit_out = shape_of(os);
  }
  WindowDims wd = window_dims(c, spatial, kernel, transpose, explicit_out.empty() ? nullptr : &explicit_out);
  Shape out{x[0], out_channels};
  out.insert(out.end(), wd.output.begin(), wd.output.end());
  c.set(0, c.dtype(0), channels_last ? permuted(out, to_channels_last_perm(out.size())) : out);
}

void infer_pool(Ctx& c) {
  bool channels_last = c.node().op == OpKind::kMaxPoolChannelsLast;
  if (c.node().op == OpKind::kAveragePool) c.require_float(0);
  c.require_dtype(0, {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt8, DType::kUInt8});
  c.require_rank(0, 3);
  Shape x = c.shape(0);
  if (channels_last) x = permuted(x, to_channels_first_perm(x.size()));
  auto kernel = c.attrs().get_ints("kernel_shape");
  if (kernel.size() != x.size() - 2)
    c.error(ErrorCode::kInvalidModel, "kernel_shape has ", kernel.size(), " dims; input has ", x.size() - 2,
            " spatial dims");
  WindowDims wd = window_dims(c, Shape(x.begin() + 2, x.end()), kernel, false);
  Shape out{x[0], x[1]};
  out.insert(out.end(), wd.output.begin(), wd.output.end());
  if (channels_last) {
    c.set(0, c.dtype(0), permuted(out, to_channels_last_perm(out.size())));
    return;
  }
  c.set(0, c.dtype(0), out);
  c.set(1, DType::kInt64, out);
}

// ---- normalization ------------------------------------------------------------

void infer_norm(Ctx& c, OpKind op) {
  c.require_float(0);
  const Shape& x = c.shape(0);
  if (op == OpKind::kLayerNormalization) {
    int64_t axis = c.axis(c.attrs().get_int("axis", -1), int64_t(x.size()));
    Shape normalized(x.begin() + axis, x.end());
    for (size_t i = 1; i < 3; ++i)
      if (c.has(i)) c.require_broadcasts_to(i, normalized, "the normalized dims");
    Shape stat(x.begin(), x.begin() + axis);
    stat.resize(x.size(), Dim(1));
    c.set(0, c.dtype(0), x);
    c.set(1, DType::kFloat32, stat);
    c.set(2, DType::kFloat32, stat);
    return;
  }
  c.require_rank(0, 2);
  if (op == OpKind::kGroupNormalization) {
    int64_t groups = c.attrs().get_int("num_groups", 0);
    if (groups < 1) c.error(ErrorCode::kInvalidModel, "num_groups must be >= 1");
    if (x[1].is_constant() && x[1].constant() % groups != 0)
      c.error(ErrorCode::kShapeError, "channels ", x[1].constant(), " not divisible by num_groups ", groups);
  }
  // Scale, bias (and BatchNormalization's mean and variance): one value per channel.
  for (size_t i = 1; i < c.num_inputs(); ++i) {
    c.require_rank(i, 1, 1);
    if (c.shape(i)[0].is_constant() && x[1].is_constant() && c.shape(i)[0] != x[1])
      c.error(ErrorCode::kShapeError, c.input_name(i), " has ", c.shape(i)[0].constant(), " values for ",
              x[1].constant(), " channels");
  }
  c.set(0, c.dtype(0), x);
}

// ---- reductions ---------------------------------------------------------------

void infer_reduce(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t r = int64_t(x.size());
  bool keep = c.attrs().get_int("keepdims", 1) != 0;
  bool noop = c.attrs().get_int("noop_with_empty_axes", 0) != 0;
  std::vector<int64_t> axes;
  if (c.has(1)) {
    auto v = c.const_ints(1);
    if (!v) {  // axes only known at run time: rank is all we can say
      if (!keep)
        c.error(ErrorCode::kUnsupported, "with keepdims=0 the output rank depends on the axes input, which only the data ",
                "gives (a data-dependent rank; kiln needs ranks that follow from the model)");
      Shape out;
      for (int64_t i = 0; i < r; ++i) out.push_back(c.fresh());
      c.set(0, c.dtype(0), out);
      return;
    }
    axes = *v;
  }
  if (axes.empty() && noop) {
    c.set(0, c.dtype(0), x);
    return;
  }
  std::vector<bool> reduced(size_t(r), axes.empty());
  for (int64_t a : axes) reduced[size_t(c.axis(a, r))] = true;
  Shape out;
  for (int64_t i = 0; i < r; ++i) {
    if (!reduced[size_t(i)]) out.push_back(x[size_t(i)]);
    else if (keep) out.push_back(Dim(1));
  }
  std::optional<std::vector<Dim>> known;
  if (c.node().op == OpKind::kReduceProd && r == 1 && !keep) {
    if (auto v = c.ints(0)) {
      Dim p(1);
      for (auto& d : *v) p = p * d;
      known = std::vector<Dim>{p};
    }
  }
  c.set(0, c.dtype(0), out, known);
}

void infer_arg(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t axis = c.axis(c.attrs().get_int("axis", 0), int64_t(x.size()));
  Shape out = x;
  if (c.attrs().get_int("keepdims", 1)) out[size_t(axis)] = Dim(1);
  else out.erase(out.begin() + axis);
  c.set(0, DType::kInt64, out);
}

void infer_topk(Ctx& c) {
  Shape out = c.shape(0);
  int64_t axis = c.axis(c.attrs().get_int("axis", -1), int64_t(out.size()));
  auto k = c.ints(1);
  if (k && k->size() != 1) c.error(ErrorCode::kShapeError, "K must have one element");
  if (k && k->front().is_constant() && out[size_t(axis)].is_constant() &&
      (k->front().constant() < 0 || k->front().constant() > out[size_t(axis)].constant()))
    c.error(ErrorCode::kShapeError, "K=", k->front().constant(), " is outside [0, ", out[size_t(axis)].constant(), "]");
  out[size_t(axis)] = k ? k->front() : c.fresh();
  c.set(0, c.dtype(0), out);
  c.set(1, DType::kInt64, out);
}

// ---- shape and data movement --------------------------------------------------

void infer_reshape(Ctx& c) {
  const Shape& x = c.shape(0);
  c.require_dtype(1, {DType::kInt64});
  c.require_rank(1, 1, 1);
  auto target = c.ints(1);
  if (!target) {
    c.set(0, c.dtype(0), c.fresh_shape(c.shape(1)[0], "the target shape"));
    return;
  }
  c.check_rank(int64_t(target->size()), "the target shape");
  bool allow_zero = c.attrs().get_int("allowzero", 0) != 0;
  Shape out;
  int infer_at = -1;
  Dim known_product(1);
  for (size_t i = 0; i < target->size(); ++i) {
    Dim d = (*target)[i];
    if (d == Dim(-1)) {
      if (infer_at >= 0) c.error(ErrorCode::kShapeError, "target shape has more than one -1");
      infer_at = int(i);
      out.push_back(Dim(1));
      continue;
    }
    if (d == Dim(0) && !allow_zero) {
      if (i >= x.size()) c.error(ErrorCode::kShapeError, "target dim ", i, " is 0 but the input has rank ", x.size());
      d = x[i];
    }
    if (d.is_constant() && d.constant() < 0) c.error(ErrorCode::kShapeError, "target dim ", i, " is ", d.constant());
    out.push_back(d);
    known_product = known_product * d;
  }
  Dim numel = shape_numel(x);
  if (infer_at >= 0) {
    if (known_product == Dim(0)) c.error(ErrorCode::kShapeError, "cannot infer -1 next to a zero dim");
    Dim inferred = floor_div(numel, known_product);
    if (inferred.is_constant() && numel.is_constant() && inferred.constant() * known_product.constant() != numel.constant())
      c.error(ErrorCode::kShapeError, "cannot reshape ", shape_to_string(x), " to ", shape_to_string(out),
              ": ", numel.constant(), " elements are not divisible by ", known_product.constant());
    out[size_t(infer_at)] = inferred;
  } else if (numel.is_constant() && known_product.is_constant() && numel != known_product) {
    c.error(ErrorCode::kShapeError, "cannot reshape ", shape_to_string(x), " (", numel.constant(), " elements) to ",
            shape_to_string(out), " (", known_product.constant(), " elements)");
  }
  c.set(0, c.dtype(0), out, out.size() <= 1 ? c.ints(0) : std::nullopt);
}

void infer_flatten(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t r = int64_t(x.size());
  int64_t axis = c.attrs().get_int("axis", 1);
  if (axis < -r || axis > r) c.error(ErrorCode::kInvalidModel, "axis ", axis, " is out of range for rank ", r);
  if (axis < 0) axis += r;
  c.set(0, c.dtype(0),
        {shape_numel(Shape(x.begin(), x.begin() + axis)), shape_numel(Shape(x.begin() + axis, x.end()))});
}

std::vector<int64_t> required_ints(const Ctx& c, size_t i, const char* what) {
  auto v = c.const_ints(i);
  if (!v) c.error(ErrorCode::kUnsupported, what, " must be a constant");
  return *v;
}

void infer_squeeze(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t r = int64_t(x.size());
  std::vector<bool> drop(size_t(r), false);
  if (c.has(1) && !c.const_ints(1)) {  // axes known only at run time: the rank is all we can tell
    c.require_rank(1, 1, 1);
    const Dim& n = c.shape(1)[0];
    if (!n.is_constant() || n.constant() > r) c.error(ErrorCode::kShapeError, "axes of length ", n.to_string(), " for rank ", r);
    c.set(0, c.dtype(0), c.fresh_shape(Dim(r - n.constant()), "the output"));
    return;
  }
  if (c.has(1)) {
    for (int64_t a : required_ints(c, 1, "axes")) {
      int64_t ax = c.axis(a, r);
      if (x[size_t(ax)].is_constant() && x[size_t(ax)].constant() != 1)
        c.error(ErrorCode::kShapeError, "cannot squeeze axis ", a, " of size ", x[size_t(ax)].constant());
      drop[size_t(ax)] = true;
    }
  } else {
    for (int64_t i = 0; i < r; ++i) drop[size_t(i)] = x[size_t(i)] == Dim(1);
  }
  Shape out;
  for (int64_t i = 0; i < r; ++i)
    if (!drop[size_t(i)]) out.push_back(x[size_t(i)]);
  c.set(0, c.dtype(0), out, out.size() <= 1 ? c.ints(0) : std::nullopt);
}

void infer_unsqueeze(Ctx& c) {
  const Shape& x = c.shape(0);
  if (!c.const_ints(1)) {  // axes known only at run time
    c.require_rank(1, 1, 1);
    c.set(0, c.dtype(0), c.fresh_shape(c.shape(1)[0] + int64_t(x.size()), "the output"));
    return;
  }
  auto axes = required_ints(c, 1, "axes");
  int64_t r = int64_t(x.size() + axes.size());
  c.check_rank(r, "the output");
  std::vector<bool> inserted(size_t(r), false);
  for (int64_t a : axes) {
    int64_t ax = c.axis(a, r);
    if (inserted[size_t(ax)]) c.error(ErrorCode::kInvalidModel, "axis ", a, " repeats");
    inserted[size_t(ax)] = true;
  }
  Shape out;
  size_t next = 0;
  for (int64_t i = 0; i < r; ++i) out.push_back(inserted[size_t(i)] ? Dim(1) : x[next++]);
  c.set(0, c.dtype(0), out, out.size() <= 1 ? c.ints(0) : std::nullopt);
}

void infer_transpose(Ctx& c) {
  const Shape& x = c.shape(0);
  std::vector<int64_t> perm(x.size());
  std::iota(perm.rbegin(), perm.rend(), 0);
  perm = c.attrs().get_ints("perm", perm);
  if (perm.size() != x.size()) c.error(ErrorCode::kInvalidModel, "perm has ", perm.size(), " entries for rank ", x.size());
  std::vector<bool> seen(x.size(), false);
  Shape out;
  for (int64_t p : perm) {
    int64_t a = c.axis(p, int64_t(x.size()), "perm entry");
    if (seen[size_t(a)]) c.error(ErrorCode::kInvalidModel, "perm repeats axis ", p);
    seen[size_t(a)] = true;
    out.push_back(x[size_t(a)]);
  }
  c.set(0, c.dtype(0), out);
}

void infer_concat(Ctx& c) {
  Shape out = c.shape(0);
  int64_t axis = c.axis(c.attrs().get_int("axis", 0), int64_t(out.size()));
  std::optional<std::vector<Dim>> known = out.size() == 1 ? c.ints(0) : std::nullopt;
  for (size_t i = 1; i < c.num_inputs(); ++i) {
    c.require_same_dtype(0, i);
    const Shape& s = c.shape(i);
    if (s.size() != out.size())
      c.error(ErrorCode::kShapeError, "input ", i, " has rank ", s.size(), "; input 0 has rank ", out.size());
    for (size_t d = 0; d < s.size(); ++d) {
      if (int64_t(d) == axis) out[d] = out[d] + s[d];
      else check_equal_dims(c, out[d], s[d], "non-axis dims");
    }
    if (known) {
      auto k = c.ints(i);
      if (k) known->insert(known->end(), k->begin(), k->end());
      else known.reset();
    }
  }
  c.set(0, c.dtype(0), out, known);
}

void infer_split(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t axis = c.axis(c.attrs().get_int("axis", 0), int64_t(x.size()));
  size_t n = c.num_outputs();
  const Dim& total = x[size_t(axis)];
  std::vector<Dim> sizes;
  if (c.has(1)) {
    auto v = c.ints(1);
    if (!v) {  // sizes known only at run time
      for (size_t i = 0; i < n; ++i) {
        Shape s = x;
        s[size_t(axis)] = c.fresh();
        c.set(i, c.dtype(0), s);
      }
      return;
    }
    if (v->size() != n) c.error(ErrorCode::kShapeError, "split has ", v->size(), " sizes for ", n, " outputs");
    sizes = *v;
    Dim sum(0);
    for (auto& s : sizes) sum = sum + s;
    check_equal_dims(c, sum, total, "split sizes sum and axis dim");
  } else {
    int64_t parts = c.attrs().get_int("num_outputs", int64_t(n));
    if (parts != int64_t(n)) c.error(ErrorCode::kInvalidModel, "num_outputs ", parts, " but the node has ", n, " outputs");
    Dim chunk = ceil_div(total, Dim(int64_t(n)));
    for (size_t i = 0; i + 1 < n; ++i) sizes.push_back(chunk);
    sizes.push_back(total - chunk * Dim(int64_t(n - 1)));
    if (sizes.back().is_constant() && sizes.back().constant() < 0)
      c.error(ErrorCode::kShapeError, "cannot split ", total.to_string(), " into ", n, " parts");
  }
  for (size_t i = 0; i < n; ++i) {
    Shape s = x;
    s[size_t(axis)] = sizes[i];
    c.set(i, c.dtype(0), s);
  }
}

// Resolves one axis of Slice to (start, size) for a constant or symbolic dim.
struct SliceAxis {
  Dim start, size;
  int64_t step;
};

SliceAxis slice_axis(const Dim& dim, int64_t start, int64_t end, int64_t step) {
  if (dim.is_constant()) {
    int64_t n = dim.constant();
    auto clampi = [](int64_t v, int64_t lo, int64_t hi) { return std::max(lo, std::min(v, hi)); };
    if (start < 0) start += n;
    if (end < 0) end += n;
    if (step > 0) {
      start = clampi(start, 0, n);
      end = clampi(end, 0, n);
    } else {
      start = clampi(start, 0, n - 1);
      end = clampi(end, -1, n - 1);
    }
    int64_t size = step > 0 ? (end > start ? (end - start + step - 1) / step : 0)
                            : (start > end ? (start - end + (-step) - 1) / (-step) : 0);
    return {Dim(start), Dim(size), step};
  }
  // Symbolic: assume indices inside the dim (the usual 0:n, 1:, :-1 forms).
  constexpr int64_t kHuge = int64_t(1) << 62;
  Dim s = start < 0 ? dim + start : Dim(start);
  Dim e = end >= kHuge ? dim : end <= -kHuge ? Dim(-1) : end < 0 ? dim + end : Dim(end);
  if (step > 0) return {s, ceil_div(e - s, step), step};
  return {s, ceil_div(s - e, -step), step};
}

void infer_slice(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t r = int64_t(x.size());
  auto starts = c.const_ints(1), ends = c.const_ints(2);
  auto axes_in = c.has(3) ? c.const_ints(3) : std::nullopt, steps_in = c.has(4) ? c.const_ints(4) : std::nullopt;
  std::vector<int64_t> axes(starts ? starts->size() : 0), steps(axes.size(), 1);
  std::iota(axes.begin(), axes.end(), 0);
  if (axes_in) axes = *axes_in;
  if (steps_in) steps = *steps_in;
  if (!starts || !ends || (c.has(4) && !steps_in) || (c.has(3) && !axes_in)) {
    // data-dependent bounds: keep the rank; the sliced dims (all, when the axes are data) are unknown
    Shape out = x;
    if (!c.has(3) || axes_in)
      for (int64_t a : axes) out[size_t(c.axis(a, r))] = c.fresh();
    if (!c.has(3) || !axes_in)
      for (auto& d : out) d = c.fresh();
    c.set(0, c.dtype(0), out);
    return;
  }
  if (ends->size() != starts->size() || axes.size() != starts->size() || steps.size() != starts->size())
    c.error(ErrorCode::kShapeError, "starts, ends, axes and steps must have the same length");
  Shape out = x;
  std::vector<bool> seen(size_t(r), false);
  std::optional<std::vector<Dim>> known;
  auto data = r == 1 ? c.ints(0) : std::nullopt;
  for (size_t i = 0; i < starts->size(); ++i) {
    int64_t a = c.axis(axes[i], r);
    if (seen[size_t(a)]) c.error(ErrorCode::kInvalidModel, "axis ", axes[i], " repeats");
    seen[size_t(a)] = true;
    if (steps[i] == 0) c.error(ErrorCode::kInvalidModel, "steps must be non-zero");
    SliceAxis s = slice_axis(x[size_t(a)], (*starts)[i], (*ends)[i], steps[i]);
    out[size_t(a)] = s.size;
    if (data && s.start.is_constant() && s.size.is_constant()) {
      known.emplace();
      for (int64_t j = 0; j < s.size.constant(); ++j) known->push_back((*data)[size_t(s.start.constant() + j * s.step)]);
    }
  }
  c.set(0, c.dtype(0), out, known);
}

void infer_gather(Ctx& c) {
  const Shape& x = c.shape(0);
  c.require_dtype(1, {DType::kInt64, DType::kInt32});
  int64_t axis = c.axis(c.attrs().get_int("axis", 0), int64_t(x.size()));
  Shape out(x.begin(), x.begin() + axis);
  const Shape& idx = c.shape(1);
  out.insert(out.end(), idx.begin(), idx.end());
  out.insert(out.end(), x.begin() + axis + 1, x.end());
  std::optional<std::vector<Dim>> known;
  if (x.size() == 1) {
    auto data = c.ints(0);
    auto indices = c.const_ints(1);
    if (data && indices) {
      known.emplace();
      int64_t n = int64_t(data->size());
      for (int64_t i : *indices) {
        if (i < -n || i >= n) c.error(ErrorCode::kShapeError, "index ", i, " is out of range for size ", n);
        known->push_back((*data)[size_t(i < 0 ? i + n : i)]);
      }
    }
  }
  c.set(0, c.dtype(0), out, known);
}

void infer_gather_elements(Ctx& c) {
  c.require_dtype(1, {DType::kInt64, DType::kInt32});
  if (c.rank(0) != c.rank(1)) c.error(ErrorCode::kShapeError, "data and indices must have the same rank");
  int64_t axis = c.axis(c.attrs().get_int("axis", 0), c.rank(0));
  // Off the axis, an index position is also a data position: it must exist.
  const Shape &x = c.shape(0), &idx = c.shape(1);
  for (size_t d = 0; d < x.size(); ++d)
    if (int64_t(d) != axis && x[d].is_constant() && idx[d].is_constant() && idx[d].constant() > x[d].constant())
      c.error(ErrorCode::kShapeError, "indices ", shape_to_string(idx), " are larger than data ", shape_to_string(x),
              " in dim ", d);
  c.set(0, c.dtype(0), c.shape(1));
}

void infer_expand(Ctx& c) {
  c.require_dtype(1, {DType::kInt64});
  auto target = c.ints(1);
  if (!target) {
    c.require_rank(1, 1, 1);
    c.set(0, c.dtype(0), c.broadcast(c.shape(0), c.fresh_shape(c.shape(1)[0], "the Expand shape")));
    return;
  }
  c.check_rank(int64_t(target->size()), "the Expand shape");
  c.set(0, c.dtype(0), c.broadcast(c.shape(0), Shape(target->begin(), target->end())));
}

void infer_tile(Ctx& c) {
  const Shape& x = c.shape(0);
  auto reps = c.ints(1);
  Shape out = x;
  if (reps && reps->size() != x.size())
    c.error(ErrorCode::kShapeError, "repeats has ", reps->size(), " entries for rank ", x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = reps ? x[i] * (*reps)[i] : c.fresh();
  c.set(0, c.dtype(0), out);
}

void infer_pad(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t r = int64_t(x.size());
  std::string mode = c.attrs().get_string("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap")
    c.error(ErrorCode::kInvalidModel, "mode '", mode, "' is not constant, reflect, edge or wrap");
  auto pads = c.ints(1);
  if (c.has(2)) c.require_scalar(2);
  std::vector<int64_t> axes(static_cast<size_t>(r));
  std::iota(axes.begin(), axes.end(), 0);
  auto axes_in = c.has(3) ? c.const_ints(3) : std::nullopt;
  if (axes_in) axes = *axes_in;
  Shape out = x;
  if (c.has(3) && !axes_in) {  // which dims grow is data: all are unknown
    for (auto& d : out) d = c.fresh();
    c.set(0, c.dtype(0), out);
    return;
  }
  if (!pads) {
    for (int64_t a : axes) out[size_t(c.axis(a, r))] = c.fresh();
    c.set(0, c.dtype(0), out);
    return;
  }
  if (pads->size() != 2 * axes.size())
    c.error(ErrorCode::kShapeError, "pads has ", pads->size(), " entries; expected ", 2 * axes.size());
  for (size_t i = 0; i < axes.size(); ++i) {
    size_t a = size_t(c.axis(axes[i], r));
    out[a] = x[a] + (*pads)[i] + (*pads)[i + axes.size()];
    if (out[a].is_constant() && out[a].constant() < 0)
      c.error(ErrorCode::kShapeError, "pads make axis ", a, " negative");
  }
  c.set(0, c.dtype(0), out);
}

void infer_shape(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t r = int64_t(x.size());
  int64_t start = c.attrs().get_int("start", 0), end = c.attrs().get_int("end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, start, r);
  std::vector<Dim> dims(x.begin() + start, x.begin() + end);
  c.set(0, DType::kInt64, {Dim(int64_t(dims.size()))}, dims);
}

void infer_constant_of_shape(Ctx& c) {
  c.require_dtype(0, {DType::kInt64});
  const TensorData* v = c.attrs().get_tensor("value");
  DType dtype = v ? v->dtype : DType::kFloat32;
  if (v && v->numel() != 1) c.error(ErrorCode::kInvalidModel, "value must have exactly one element");
  auto dims = c.ints(0);
  Shape out;
  if (dims) {
    c.check_rank(int64_t(dims->size()), "the shape");
    out.assign(dims->begin(), dims->end());
  } else {
    c.require_rank(0, 1, 1);
    out = c.fresh_shape(c.shape(0)[0], "the shape");
  }
  for (auto& d : out)
    if (d.is_constant() && d.constant() < 0) c.error(ErrorCode::kShapeError, "negative dim ", d.constant());
  std::optional<std::vector<Dim>> known;
  if (out.size() == 1 && out[0].is_constant() && out[0].constant() <= kMaxKnownElements && (!v || is_integer(v->dtype)))
    known = std::vector<Dim>(size_t(out[0].constant()), Dim(v ? read_ints(*v)[0] : 0));
  c.set(0, dtype, out, known);
}

void infer_range(Ctx& c) {
  c.require_same_dtype(0, 1);
  c.require_same_dtype(0, 2);
  for (size_t i = 0; i < 3; ++i)
    if (c.rank(i) != 0 && !(c.rank(i) == 1 && c.shape(i)[0] == Dim(1)))
      c.error(ErrorCode::kShapeError, "input ", i, " must be a scalar");
  auto s = c.doubles(0), l = c.doubles(1), d = c.doubles(2);
  Dim n = c.fresh();
  if (is_integer(c.dtype(0))) {
    auto si = c.ints(0), li = c.ints(1), di = c.ints(2);
    if (si && li && di && (*di)[0] == Dim(1)) n = dim_max(Dim(0), (*li)[0] - (*si)[0]);
    else if (si && li && di && (*di)[0].is_constant()) {
      if ((*di)[0].constant() == 0) c.error(ErrorCode::kInvalidModel, "delta is zero");
      Dim span = (*li)[0] - (*si)[0];
      n = dim_max(Dim(0), (*di)[0].constant() > 0 ? ceil_div(span, (*di)[0]) : ceil_div(Dim(0) - span, Dim(0) - (*di)[0]));
    }
  } else if (s && l && d) {
    if ((*d)[0] == 0) c.error(ErrorCode::kInvalidModel, "delta is zero");
    double count = std::ceil(((*l)[0] - (*s)[0]) / (*d)[0]);
    if (!(count < 1e12)) c.error(ErrorCode::kShapeError, "Range would have ", count, " elements");
    n = Dim(std::max<int64_t>(0, int64_t(count)));
  }
  c.set(0, c.dtype(0), {n});
}

// An output dim computed in floating point, checked before it becomes an
// integer (a cast of inf or 1e300 is undefined).
Dim resized_dim(const Ctx& c, double size, double (*to_integer)(double)) {
  double v = to_integer(size);
  if (!(v >= 0 && v < double(kMaxTensorElements)))
    c.error(ErrorCode::kShapeError, "the output size ", size, " is not a valid dimension");
  return Dim(int64_t(v));
}

void infer_resize(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t r = int64_t(x.size());
  std::string mode = c.attrs().get_string("mode", "nearest");
  if (mode != "nearest" && mode != "linear" && mode != "cubic")
    c.error(ErrorCode::kInvalidModel, "mode '", mode, "' is not nearest, linear or cubic");
  if (c.attrs().get_int("antialias", 0)) c.error(ErrorCode::kUnsupported, "antialias=1 is not supported");
  std::vector<int64_t> axes(static_cast<size_t>(r));
  std::iota(axes.begin(), axes.end(), 0);
  axes = c.attrs().get_ints("axes", axes);
  for (auto& a : axes) a = c.axis(a, r);
  Shape out = x;
  std::string policy = c.attrs().get_string("keep_aspect_ratio_policy", "stretch");
  if (auto roi = c.doubles(1); roi && !roi->empty() && roi->size() != 2 * axes.size() && roi->size() != size_t(2 * r))
    c.error(ErrorCode::kShapeError, c.input_name(1), " (roi) has ", roi->size(), " entries; expected ", 2 * axes.size());
  if (c.has(3)) {
    auto sizes = c.ints(3);
    if (!sizes) {
      for (int64_t a : axes) out[size_t(a)] = c.fresh();
    } else {
      if (sizes->size() != axes.size()) c.error(ErrorCode::kShapeError, "sizes has ", sizes->size(), " entries for ", axes.size(), " axes");
      for (const Dim& d : *sizes)
        if (d.is_constant() && d.constant() < 0) c.error(ErrorCode::kShapeError, "sizes has a negative entry ", d.constant());
      if (policy == "stretch") {
        for (size_t i = 0; i < axes.size(); ++i) out[size_t(axes[i])] = (*sizes)[i];
      } else {
        if (policy != "not_larger" && policy != "not_smaller")
          c.error(ErrorCode::kInvalidModel, "keep_aspect_ratio_policy '", policy, "' is unknown");
        double scale = policy == "not_larger" ? 1e300 : 0;
        for (size_t i = 0; i < axes.size(); ++i) {
          double s = double((*sizes)[i].constant()) / double(x[size_t(axes[i])].constant());
          scale = policy == "not_larger" ? std::min(scale, s) : std::max(scale, s);
        }
        for (int64_t a : axes) out[size_t(a)] = resized_dim(c, double(x[size_t(a)].constant()) * scale, std::round);
      }
    }
  } else if (c.has(2)) {
    auto scales = c.doubles(2);
    if (!scales) {
      for (int64_t a : axes) out[size_t(a)] = c.fresh();
    } else {
      if (scales->size() != axes.size()) c.error(ErrorCode::kShapeError, "scales has ", scales->size(), " entries for ", axes.size(), " axes");
      for (size_t i = 0; i < axes.size(); ++i) {
        double s = (*scales)[i];
        if (!(s > 0) || !std::isfinite(s)) c.error(ErrorCode::kInvalidModel, "scales must be positive and finite; entry ", i, " is ", s);
        const Dim& d = x[size_t(axes[i])];
        if (s == 1.0) continue;
        if (!d.is_constant()) {
          out[size_t(axes[i])] = c.fresh();
          continue;
        }
        out[size_t(axes[i])] = resized_dim(c, double(d.constant()) * s, std::floor);
      }
    }
  } else {
    c.error(ErrorCode::kInvalidModel, "either scales or sizes must be given");
  }
  c.set(0, c.dtype(0), out);
}

void infer_depth_space(Ctx& c, bool to_space) {
  c.require_rank(0, 4, 4);
  const Shape& x = c.shape(0);
  int64_t b = c.attrs().get_int("blocksize", 0);
  if (b < 1) c.error(ErrorCode::kInvalidModel, "blocksize must be >= 1");
  std::string mode = c.attrs().get_string("mode", "DCR");
  if (mode != "DCR" && mode != "CRD") c.error(ErrorCode::kInvalidModel, "mode '", mode, "' is not DCR or CRD");
  if (to_space) {
    if (x[1].is_constant() && x[1].constant() % (b * b) != 0)
      c.error(ErrorCode::kShapeError, "channels ", x[1].constant(), " not divisible by blocksize^2");
    c.set(0, c.dtype(0), {x[0], floor_div(x[1], b * b), x[2] * b, x[3] * b});
  } else {
    for (int i = 2; i < 4; ++i)
      if (x[size_t(i)].is_constant() && x[size_t(i)].constant() % b != 0)
        c.error(ErrorCode::kShapeError, "spatial dim ", x[size_t(i)].constant(), " not divisible by blocksize");
    c.set(0, c.dtype(0), {x[0], x[1] * (b * b), floor_div(x[2], b), floor_div(x[3], b)});
  }
}

void infer_onehot(Ctx& c) {
  Shape out = c.shape(0);
  int64_t axis = c.attrs().get_int("axis", -1);
  int64_t r = int64_t(out.size()) + 1;
  axis = c.axis(axis, r);
  if (c.shape(2).size() != 1 || !(c.shape(2)[0] == Dim(2))) c.error(ErrorCode::kShapeError, "values must have 2 elements");
  auto depth = c.doubles(1);
  Dim d = c.fresh();
  if (depth) {
    if (depth->size() != 1) c.error(ErrorCode::kShapeError, "depth must have one element");
    if (!((*depth)[0] >= 1 && (*depth)[0] < 1e9)) c.error(ErrorCode::kInvalidModel, "depth ", (*depth)[0], " is not valid");
    d = Dim(int64_t((*depth)[0]));
  }
  out.insert(out.begin() + axis, d);
  c.set(0, c.dtype(2), out);
}

void infer_cast(Ctx& c, OpKind op) {
  DType to;
  if (op == OpKind::kCastLike) {
    to = c.dtype(1);
  } else {
    int64_t code = c.attrs().get_int("to", -1);
    if (code < 0 || code >= int64_t(std::size(kAllDTypes))) c.error(ErrorCode::kInvalidModel, "'to' is not a dtype");
    to = DType(code);
  }
  bool int_to_int = is_integer(c.dtype(0)) && is_integer(to);
  c.set(0, to, c.shape(0), int_to_int ? c.ints(0) : std::nullopt);
}

}  // namespace

EinsumEquation parse_einsum(std::string equation) {
  EinsumEquation e;
  equation.erase(std::remove(equation.begin(), equation.end(), ' '), equation.end());
  e.text = equation;
  size_t arrow = equation.find("->");
  e.has_output = arrow != std::string::npos;
  if (e.has_output) e.output = equation.substr(arrow + 2);
  std::string lhs = equation.substr(0, arrow);
  for (size_t start = 0;;) {
    size_t comma = lhs.find(',', start);
    e.terms.push_back(lhs.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return e;
}

std::vector<int64_t> to_channels_last_perm(size_t rank) {
  std::vector<int64_t> perm{0};
  for (size_t i = 2; i < rank; ++i) perm.push_back(int64_t(i));
  perm.push_back(1);
  return perm;
}

std::vector<int64_t> to_channels_first_perm(size_t rank) {
  std::vector<int64_t> perm{0, int64_t(rank) - 1};
  for (size_t i = 1; i + 1 < rank; ++i) perm.push_back(int64_t(i));
  return perm;
}

bool has_symmetric_explicit_pads(const Node& node) {
  std::string auto_pad = node.attrs.get_string("auto_pad", "NOTSET");
  if (auto_pad == "VALID") return true;
  if (auto_pad != "NOTSET") return false;  // SAME_*: the split of an odd total is decided per shape
  auto pads = node.attrs.get_ints("pads");
  for (size_t i = 0; i < pads.size() / 2; ++i)
    if (pads[i] != pads[i + pads.size() / 2]) return false;
  return true;
}

bool is_plain_pool_window(const Node& node) {
  auto dilations = node.attrs.get_ints("dilations");
  return has_symmetric_explicit_pads(node) && node.attrs.get_int("ceil_mode", 0) == 0 &&
         std::all_of(dilations.begin(), dilations.end(), [](int64_t d) { return d == 1; });
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const Dim* x = i < r - a.size() ? nullptr : &a[i - (r - a.size())];
    const Dim* y = i < r - b.size() ? nullptr : &b[i - (r - b.size())];
    if (!x) out[i] = *y;
    else if (!y) out[i] = *x;
    else if (*x == *y || *y == Dim(1)) out[i] = *x;
    else if (*x == Dim(1)) out[i] = *y;
    else if (x->is_constant() && y->is_constant())
      fail(ErrorCode::kShapeError, "shapes ", shape_to_string(a), " and ", shape_to_string(b), " do not broadcast");
    else if (x->is_constant()) out[i] = *x;  // a symbol broadcast against a constant must equal it
    else if (y->is_constant()) out[i] = *y;
    else out[i] = dim_max(*x, *y);
  }
  return out;
}

std::vector<int64_t> read_ints(const TensorData& d) {
  switch (d.dtype) {
    case DType::kInt64: return ints_of<int64_t>(d);
    case DType::kInt32: return ints_of<int32_t>(d);
    case DType::kInt8: return ints_of<int8_t>(d);
    case DType::kUInt8: return ints_of<uint8_t>(d);
    case DType::kBool: return ints_of<bool>(d);
    default: fail(ErrorCode::kTypeError, "expected integer data, got ", dtype_name(d.dtype));
  }
}

std::vector<double> read_doubles(const TensorData& d) {
  std::vector<double> out(size_t(d.numel()));
  visit_dtype(d.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* p = d.data.as<T>();
    for (size_t i = 0; i < out.size(); ++i) {
      if constexpr (std::is_same_v<T, Float16>) out[i] = half_to_float(p[i].bits);
      else if constexpr (std::is_same_v<T, BFloat16>) out[i] = bfloat16_to_float(p[i].bits);
      else out[i] = double(p[i]);
    }
  });
  return out;
}

WindowGeometry window_geometry(const Node& node, const std::vector<int64_t>& input_spatial,
                               const std::vector<int64_t>& kernel_spatial) {
  std::vector<InferInput> none;
  std::function<Dim()> fresh = [] { return Dim(0); };
  Ctx c(node, none, fresh);
  size_t n = kernel_spatial.size();
  bool transpose = node.op == OpKind::kConvTranspose;
  Shape explicit_out;
  auto os = node.attrs.get_ints("output_shape");
  if (transpose && !os.empty()) {
    if (os.size() == n + 2) os.erase(os.begin(), os.begin() + 2);
    explicit_out = shape_of(os);
  }
  WindowDims w = window_dims(c, shape_of(input_spatial), kernel_spatial, transpose,
                             explicit_out.empty() ? nullptr : &explicit_out);
  WindowGeometry g;
  g.kernel = kernel_spatial;
  g.strides = node.attrs.get_ints("strides", std::vector<int64_t>(n, 1));
  g.dilations = node.attrs.get_ints("dilations", std::vector<int64_t>(n, 1));
  g.pads_begin = shape_constants(w.pads_begin);
  g.pads_end = shape_constants(w.pads_end);
  g.output = shape_constants(w.output);
  return g;
}

namespace {

void infer_any(Ctx& c) {
  const Node& node = c.node();
  switch (node.op) {
    case OpKind::kAbs: case OpKind::kNeg: case OpKind::kSign: case OpKind::kRelu: case OpKind::kIdentity:
      infer_unary(c, false);
      break;
    case OpKind::kSqrt: case OpKind::kReciprocal: case OpKind::kExp: case OpKind::kLog: case OpKind::kFloor:
    case OpKind::kCeil: case OpKind::kRound: case OpKind::kSigmoid: case OpKind::kTanh: case OpKind::kErf:
    case OpKind::kSoftplus: case OpKind::kSoftsign: case OpKind::kSin: case OpKind::kCos: case OpKind::kTan:
    case OpKind::kAsin: case OpKind::kAcos: case OpKind::kAtan: case OpKind::kSinh: case OpKind::kCosh:
    case OpKind::kAsinh: case OpKind::kAcosh: case OpKind::kAtanh: case OpKind::kLeakyRelu: case OpKind::kElu:
    case OpKind::kSelu: case OpKind::kCelu: case OpKind::kHardSigmoid: case OpKind::kHardSwish: case OpKind::kGelu:
    case OpKind::kThresholdedRelu: case OpKind::kShrink: case OpKind::kSoftmax: case OpKind::kLogSoftmax:
    case OpKind::kHardmax:
      infer_unary(c, node.op != OpKind::kShrink);
      if (node.op == OpKind::kGelu) {
        std::string approximate = node.attrs.get_string("approximate", "none");
        if (approximate != "none" && approximate != "tanh")
          c.error(ErrorCode::kInvalidModel, "approximate '", approximate, "' is not none or tanh");
      }
      if (node.op == OpKind::kSoftmax || node.op == OpKind::kLogSoftmax || node.op == OpKind::kHardmax)
        c.axis(node.attrs.get_int("axis", -1), c.rank(0));
      break;
    case OpKind::kClip:
      for (size_t i = 1; i < 3; ++i)
        if (c.has(i)) {
          c.require_same_dtype(0, i);
          if (c.rank(i) != 0 && !(c.rank(i) == 1 && c.shape(i)[0] == Dim(1)))
            c.error(ErrorCode::kShapeError, "min and max must be scalars");
        }
      c.set(0, c.dtype(0), c.shape(0));
      break;
    case OpKind::kDropout:
      c.set(0, c.dtype(0), c.shape(0));
      c.set(1, DType::kBool, c.shape(0));
      break;
    case OpKind::kNot:
      c.require_dtype(0, {DType::kBool});
      c.set(0, DType::kBool, c.shape(0));
      break;
    case OpKind::kIsNaN: case OpKind::kIsInf:
      c.require_float(0);
      c.set(0, DType::kBool, c.shape(0));
      break;
    case OpKind::kCast: case OpKind::kCastLike: infer_cast(c, node.op); break;
    case OpKind::kAdd: case OpKind::kSub: case OpKind::kMul: case OpKind::kDiv: case OpKind::kPow:
    case OpKind::kMod: case OpKind::kPRelu: case OpKind::kEqual: case OpKind::kLess: case OpKind::kLessOrEqual:
    case OpKind::kGreater: case OpKind::kGreaterOrEqual: case OpKind::kAnd: case OpKind::kOr: case OpKind::kXor:
      infer_binary(c, node.op);
      break;
    case OpKind::kMin: case OpKind::kMax: case OpKind::kMean: case OpKind::kSum: infer_variadic(c, node.op); break;
    case OpKind::kWhere: {
      c.require_dtype(0, {DType::kBool});
      c.require_same_dtype(1, 2);
      c.set(0, c.dtype(1), c.broadcast(c.broadcast(c.shape(0), c.shape(1)), c.shape(2)));
      break;
    }
    case OpKind::kMatMul: infer_matmul(c); break;
    case OpKind::kGemm: infer_gemm(c); break;
    case OpKind::kEinsum: infer_einsum(c); break;
    case OpKind::kConv: infer_conv(c, false); break;
    case OpKind::kConvTranspose: infer_conv(c, true); break;
    case OpKind::kConvChannelsLast: infer_conv(c, false, true); break;
    case OpKind::kMaxPool: case OpKind::kAveragePool: case OpKind::kMaxPoolChannelsLast: infer_pool(c); break;
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: {
      c.require_float(0);
      c.require_rank(0, 3);
      Shape out = c.shape(0);
      for (size_t i = 2; i < out.size(); ++i) out[i] = Dim(1);
      c.set(0, c.dtype(0), out);
      break;
    }
    case OpKind::kBatchNormalization: case OpKind::kInstanceNormalization: case OpKind::kLayerNormalization:
    case OpKind::kGroupNormalization:
      infer_norm(c, node.op);
      break;
    case OpKind::kReduceMean: case OpKind::kReduceSum: case OpKind::kReduceMax: case OpKind::kReduceMin:
    case OpKind::kReduceProd: case OpKind::kReduceL1: case OpKind::kReduceL2: case OpKind::kReduceLogSum:
    case OpKind::kReduceLogSumExp: case OpKind::kReduceSumSquare:
      infer_reduce(c);
      break;
    case OpKind::kArgMax: case OpKind::kArgMin: infer_arg(c); break;
    case OpKind::kCumSum:
      c.require_scalar(1);
      c.axis(c.const_ints(1) ? c.const_ints(1)->at(0) : 0, c.rank(0));
      c.set(0, c.dtype(0), c.shape(0));
      break;
    case OpKind::kTopK: infer_topk(c); break;
    case OpKind::kReshape: infer_reshape(c); break;
    case OpKind::kFlatten: infer_flatten(c); break;
    case OpKind::kSqueeze: infer_squeeze(c); break;
    case OpKind::kUnsqueeze: infer_unsqueeze(c); break;
    case OpKind::kTranspose: infer_transpose(c); break;
    case OpKind::kConcat: infer_concat(c); break;
    case OpKind::kSplit: infer_split(c); break;
    case OpKind::kSlice: infer_slice(c); break;
    case OpKind::kGather: infer_gather(c); break;
    case OpKind::kGatherElements: infer_gather_elements(c); break;
    case OpKind::kExpand: infer_expand(c); break;
    case OpKind::kTile: infer_tile(c); break;
    case OpKind::kPad: infer_pad(c); break;
    case OpKind::kShape: infer_shape(c); break;
    case OpKind::kSize: c.set(0, DType::kInt64, {}, std::vector<Dim>{shape_numel(c.shape(0))}); break;
    case OpKind::kConstantOfShape: infer_constant_of_shape(c); break;
    case OpKind::kRange: infer_range(c); break;
    case OpKind::kTrilu:
      c.require_rank(0, 2);
      if (c.has(1)) c.require_scalar(1);
      c.set(0, c.dtype(0), c.shape(0));
      break;
    case OpKind::kResize: infer_resize(c); break;
    case OpKind::kDepthToSpace: infer_depth_space(c, true); break;
    case OpKind::kSpaceToDepth: infer_depth_space(c, false); break;
    case OpKind::kOneHot: infer_onehot(c); break;
    case OpKind::kFusedMatMul: infer_fused_matmul(c); break;
    case OpKind::kFusedElementwise: infer_fused_elementwise(c); break;
    case OpKind::kAttention: infer_attention(c); break;
  }
}

}  // namespace

std::vector<InferOutput> infer_node(const Node& node, const std::vector<InferInput>& inputs,
                                    const std::function<Dim()>& fresh_dim) {
  Ctx c(node, inputs, fresh_dim);
  try {
    infer_any(c);
    if (!c.inferred()) c.error(ErrorCode::kInternal, "kiln has no shape inference for this op (src/ir/shape_inference.cpp)");
  } catch (const Error& e) {  // dim arithmetic and size checks do not know the node; name it
    std::string_view what = e.what();
    if (what.rfind("node '", 0) == 0) throw;
    c.error(e.code(), what);
  }
  return c.take();
}

}  // namespace kiln::ir
