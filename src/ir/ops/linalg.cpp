// The linear algebra family: MatMul, Gemm, Einsum, Det, the Fourier transforms
// DFT and STFT, LinearAttention, and the builder's FusedMatMul and Attention
// (its view programs: src/ir/attention.cpp).
#include <cctype>
#include <cmath>
#include <map>

#include "kiln/ir/fused.h"
#include "kiln/ir/linear_attention.h"
#include "family.h"

namespace kiln::ir {

namespace {

// numpy's matmul of inputs a and b: batch dims broadcast, a vector operand
// gains a dim of 1 that the output drops.
Shape matmul_shape(Ctx& c, size_t ia, size_t ib) {
  Shape a = c.shape(ia), b = c.shape(ib);
  if (a.empty() || b.empty()) c.error(ErrorCode::kShapeError, "MatMul inputs must have rank >= 1");
  bool a_vec = a.size() == 1, b_vec = b.size() == 1;
  if (a_vec) a.insert(a.begin(), Dim(1));
  if (b_vec) b.push_back(Dim(1));
  check_equal_dims(c, a.back(), b[b.size() - 2], "inner dimensions");
  Shape batch = c.broadcast(Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2));
  if (!a_vec) batch.push_back(a[a.size() - 2]);
  if (!b_vec) batch.push_back(b.back());
  return batch;
}

void infer_matmul(Ctx& c) {
  c.require_same_dtype(0, 1);
  c.set(0, c.dtype(0), matmul_shape(c, 0, 1));
}

// A scale or zero point (input i) of operand `operand` of a quantized
// product: one value; per row of A (a vector of M for a 2-D A, else A's rank
// with a last dim of 1); per column of B (a vector of N, or B's rank with dim
// -2 of 1). Batch dims are A's or B's, or 1.
void check_matmul_param(Ctx& c, size_t i, size_t operand, bool of_a) {
  const Shape &p = c.shape(i), &x = c.shape(operand);
  if (std::all_of(p.begin(), p.end(), [](const Dim& d) { return d == Dim(1); })) return;
  const char* which = of_a ? "per row of A" : "per column of B";
  if (p.size() == 1 && (of_a ? x.size() == 2 : x.size() >= 2)) return check_equal_dims(c, p[0], of_a ? x[x.size() - 2] : x.back(), which);
  bool fits = p.size() == x.size() && x.size() >= 2 && p[p.size() - (of_a ? 1 : 2)] == Dim(1);
  for (size_t d = 0; fits && d < p.size(); ++d)
    fits = p[d] == Dim(1) || p[d] == x[d] || !p[d].is_constant() || !x[d].is_constant();
  if (!fits)
    c.error(ErrorCode::kShapeError, c.input_name(i), " has shape ", shape_to_string(p), "; for ", c.input_name(operand), " of shape ",
            shape_to_string(x), " it takes one value or one ", which);
}

// MatMulInteger: int32 (A - a_zero_point) @ (B - b_zero_point) of int8/uint8 inputs.
void infer_matmul_integer(Ctx& c) {
  c.require_dtype(0, {DType::kInt8, DType::kUInt8});
  c.require_dtype(1, {DType::kInt8, DType::kUInt8});
  for (size_t i : {size_t(2), size_t(3)})
    if (c.has(i)) {
      c.require_same_dtype(i - 2, i);
      check_matmul_param(c, i, i - 2, i == 2);
    }
  c.set(0, DType::kInt32, matmul_shape(c, 0, 1));
}

// QLinearMatMul (a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale,
// y_zero_point): the integer product requantized to y's scale and zero point,
// one value each.
void infer_qlinear_matmul(Ctx& c) {
  c.require_dtype(0, {DType::kInt8, DType::kUInt8});
  c.require_dtype(3, {DType::kInt8, DType::kUInt8});
  c.require_dtype(7, {DType::kInt8, DType::kUInt8});
  c.require_same_dtype(0, 2);
  c.require_same_dtype(3, 5);
  c.require_float(1);
  c.require_same_dtype(1, 4);
  c.require_same_dtype(1, 6);
  for (size_t i : {size_t(1), size_t(2)}) check_matmul_param(c, i, 0, true);
  for (size_t i : {size_t(4), size_t(5)}) check_matmul_param(c, i, 3, false);
  c.require_scalar(6);
  c.require_scalar(7);
  c.set(0, c.dtype(7), matmul_shape(c, 0, 3));
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
  if (c.num_outputs() > 1) {  // the scratch for the transposed product: [N, rows of Y]
    Shape rows(out.begin(), out.end() - 1);
    c.set(1, c.dtype(0), {out.back(), shape_numel(rows)});
  }
  c.set(0, c.dtype(0), out);
}

void infer_attention(Ctx& c) {
  for (size_t i = 0; i < 3; ++i) c.require_float(i);
  c.require_same_dtype(0, 1);
  c.require_same_dtype(0, 2);
  c.set(0, c.dtype(0), attention_output_shape(c.node(), c.shape(0), c.shape(1), c.shape(2)));  // throws naming the node
  if (c.has(3)) {
    if (c.dtype(3) != DType::kBool) c.require_float(3);
    c.require_broadcasts_to(3, attention_scores_shape(c.node(), c.shape(0), c.shape(1), c.shape(2)), "the scores [B, H, Sq, Sk]");
  }
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

// query [B, T, Hq * dk], key [B, T, Hkv * dk], value [B, T, Hkv * dv],
// past_state [B, Hkv, dk, dv], decay [B, T, Hkv or Hkv * dk], beta [B, T, Hkv
// or 1]: output [B, T, Hq * dv], present_state [B, Hkv, dk, dv] of
// past_state's type (the query's without one).
void infer_linear_attention(Ctx& c) {
  for (size_t i = 0; i < 3; ++i) {
    c.require_float(i);
    c.require_same_dtype(0, i);
    c.require_rank(i, 3, 3);
  }
  auto width = [&](size_t i) {
    const Dim& d = c.shape(i)[2];
    if (!d.is_constant()) c.error(ErrorCode::kUnsupported, c.input_name(i), " has a last dim (heads x head size) that is not a constant");
    return d.constant();
  };
  LinearAttentionGeometry g = linear_attention_geometry(c.node(), width(0), width(2));
  const Shape& q = c.shape(0);
  Dim batch = q[0], steps = q[1];
  for (size_t i = 1; i < 3; ++i) {
    check_equal_dims(c, c.shape(i)[0], batch, "batch sizes of query, key and value");
    check_equal_dims(c, c.shape(i)[1], steps, "sequence lengths of query, key and value");
  }
  if (width(1) != g.kv_heads * g.key_dim)
    c.error(ErrorCode::kShapeError, c.input_name(1), " has width ", width(1), "; expected kv_num_heads * d_k = ", g.kv_heads, " * ",
            g.key_dim);
  Shape state{batch, Dim(g.kv_heads), Dim(g.key_dim), Dim(g.value_dim)};
  if (c.has(3)) {
    c.require_float(3);
    c.require_rank(3, 4, 4);
    for (size_t d = 0; d < 4; ++d) check_equal_dims(c, c.shape(3)[d], state[d], "past_state and [B, kv_num_heads, d_k, d_v]");
  }
  // decay and beta: present exactly when the update rule reads them, [B, T, one of `widths`].
  auto gate = [&](size_t i, bool used, const char* name, std::initializer_list<int64_t> widths) {
    if (!c.has(i)) {
      if (used) c.error(ErrorCode::kInvalidModel, "update_rule '", c.attrs().get_string("update_rule", "gated_delta"), "' needs ", name);
      return;
    }
    if (!used)
      c.error(ErrorCode::kInvalidModel, "update_rule '", c.attrs().get_string("update_rule", "gated_delta"), "' takes no ", name);
    c.require_same_dtype(0, i);
    c.require_rank(i, 3, 3);
    check_equal_dims(c, c.shape(i)[0], batch, str(name, " and query batch sizes").c_str());
    check_equal_dims(c, c.shape(i)[1], steps, str(name, " and query sequence lengths").c_str());
    int64_t w = width(i);
    if (std::find(widths.begin(), widths.end(), w) == widths.end())
      c.error(ErrorCode::kShapeError, c.input_name(i), " has width ", w, "; expected ",
              *widths.begin(), " or ", *(widths.begin() + 1));
  };
  gate(4, g.gated, "decay", {g.kv_heads, g.kv_heads * g.key_dim});
  gate(5, g.delta, "beta", {g.kv_heads, 1});
  c.set(0, c.dtype(0), {batch, steps, Dim(g.q_heads * g.value_dim)});
  c.set(1, c.has(3) ? c.dtype(3) : c.dtype(0), state);
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


// A signal's trailing dim holds one value (real) or two (real, imaginary).
void require_complex_dim(const Ctx& c, size_t i) {
  const Dim& last = c.shape(i).back();
  if (!(last == Dim(1)) && !(last == Dim(2)))
    c.error(ErrorCode::kShapeError, c.input_name(i), " has shape ", shape_to_string(c.shape(i)),
            "; its last dim must be 1 (real) or 2 (real and imaginary parts)");
}

// A transform length that inference knows must be positive.
void require_positive(const Ctx& c, const Dim& d, const char* what) {
  if (d.is_constant() && d.constant() < 1) c.error(ErrorCode::kInvalidModel, what, " is ", d.constant(), "; it must be at least 1");
}

// DFT along `axis` (input 2, default -2; not the trailing complex dim) of
// length dft_length (input 1; by default the axis' length, or 2 (n - 1) for
// the inverse of a one-sided spectrum). Forward onesided keeps n / 2 + 1
// bins; the inverse of a one-sided spectrum is real (trailing dim 1).
void infer_dft(Ctx& c) {
  c.require_float(0);
  c.require_rank(0, 2);
  require_complex_dim(c, 0);
  const Shape& x = c.shape(0);
  int64_t r = int64_t(x.size());
  bool inverse = c.attrs().get_int("inverse", 0) != 0, onesided = c.attrs().get_int("onesided", 0) != 0;
  std::optional<int64_t> axis = int64_t(-2);
  if (c.has(2)) {
    c.require_dtype(2, {DType::kInt64});
    c.require_scalar(2);
    auto a = c.const_ints(2);
    axis = a ? std::optional<int64_t>(a->at(0)) : std::nullopt;
  }
  Shape out = x;
  out.back() = Dim(inverse && onesided ? 1 : 2);
  if (!axis) {
    // An axis that is data: any dim but the last may change, so each is a
    // size that depends on data (which also has the GPU runtime read the
    // axis back before the node runs).
    for (int64_t d = 0; d + 1 < r; ++d) out[size_t(d)] = c.fresh();
    c.set(0, c.dtype(0), out);
    return;
  }
  int64_t a = c.axis(*axis, r);
  if (a == r - 1) c.error(ErrorCode::kInvalidModel, "axis ", *axis, " is the trailing dim of real and imaginary parts");
  const Dim& len = x[size_t(a)];
  std::optional<Dim> n = c.has(1) ? scalar_size(c, 1, "dft_length") : inverse && onesided ? Dim(2) * (len - Dim(1)) : len;
  if (n) require_positive(c, *n, "the DFT length");
  out[size_t(a)] = !n ? c.fresh() : !inverse && onesided ? floor_div(*n, Dim(2)) + Dim(1) : *n;
  c.set(0, c.dtype(0), out);
}

// STFT of signal [batch, length, 1 or 2]: frames of frame_length samples
// (input 3, else the window's length, else the signal's), frame_step apart,
// each times the window (input 2, ones by default) and transformed:
// [batch, frames, bins, 2], bins frame_length / 2 + 1 when onesided (default).
void infer_stft(Ctx& c) {
  c.require_float(0);
  c.require_rank(0, 3, 3);
  require_complex_dim(c, 0);
  const Shape& x = c.shape(0);
  std::optional<Dim> step = scalar_size(c, 1, "frame_step");
  if (step) require_positive(c, *step, "frame_step");
  std::optional<Dim> length = x[1];
  if (c.has(2)) {
    c.require_same_dtype(0, 2);
    c.require_rank(2, 1, 1);
    length = c.shape(2)[0];
  }
  if (c.has(3)) {
    std::optional<Dim> given = scalar_size(c, 3, "frame_length");
    if (c.has(2) && given) check_equal_dims(c, *given, *length, "frame_length and the window's length");
    length = c.has(2) ? length : given;
  }
  if (length) {
    require_positive(c, *length, "frame_length");
    if (length->is_constant() && x[1].is_constant() && length->constant() > x[1].constant())
      c.error(ErrorCode::kShapeError, "frame_length ", length->constant(), " is longer than the signal (", x[1].constant(), " samples)");
  }
  Dim frames = step && length ? floor_div(x[1] - *length, *step) + Dim(1) : c.fresh();
  bool onesided = c.attrs().get_int("onesided", 1) != 0;
  Dim bins = !length ? c.fresh() : onesided ? floor_div(*length, Dim(2)) + Dim(1) : *length;
  c.set(0, c.dtype(0), {x[0], frames, bins, Dim(2)});
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

EinsumLabels einsum_labels(const ir::EinsumEquation& eq, const std::vector<size_t>& ranks) {
  EinsumLabels e;
  size_t ell_rank = 0;
  for (size_t t = 0; t < eq.terms.size(); ++t)
    if (eq.terms[t].find("...") != std::string::npos) ell_rank = std::max(ell_rank, ranks[t] - (eq.terms[t].size() - 3));
  auto expand = [&](const std::string& term, size_t rank) {
    size_t pos = term.find("...");
    if (pos == std::string::npos) return term;
    std::string labels;
    for (size_t i = ell_rank - rank; i < ell_rank; ++i) labels += char('0' + i);
    return term.substr(0, pos) + labels + term.substr(pos + 3);
  };
  std::map<char, int> count;
  for (size_t t = 0; t < eq.terms.size(); ++t) {
    bool ell = eq.terms[t].find("...") != std::string::npos;
    e.terms.push_back(expand(eq.terms[t], ell ? ranks[t] - (eq.terms[t].size() - 3) : 0));
    for (char l : e.terms.back()) count[l]++;
  }
  if (eq.has_output) {
    e.out = expand(eq.output, ell_rank);
  } else {
    for (size_t i = 0; i < ell_rank; ++i) e.out += char('0' + i);
    for (auto& [l, n] : count)
      if (n == 1 && !std::isdigit(static_cast<unsigned char>(l))) e.out += l;
  }
  for (auto& [l, n] : count)
    if (e.out.find(l) == std::string::npos) e.summed += l;
  return e;
}

LinearAttentionGeometry linear_attention_geometry(const Node& node, int64_t query_width, int64_t value_width) {
  auto error = [&](const auto&... args) { fail(ErrorCode::kInvalidModel, "node '", node.name, "' (LinearAttention): ", args...); };
  LinearAttentionGeometry g;
  g.q_heads = node.attrs.get_int("q_num_heads", 0);
  g.kv_heads = node.attrs.get_int("kv_num_heads", 0);
  if (g.q_heads < 1 || g.kv_heads < 1 || g.q_heads % g.kv_heads != 0)
    error("q_num_heads (", g.q_heads, ") must be a positive multiple of kv_num_heads (", g.kv_heads, ")");
  if (query_width % g.q_heads != 0 || value_width % g.kv_heads != 0)
    fail(ErrorCode::kShapeError, "node '", node.name, "' (LinearAttention): query width ", query_width, " and value width ",
         value_width, " must be multiples of q_num_heads ", g.q_heads, " and kv_num_heads ", g.kv_heads);
  g.key_dim = query_width / g.q_heads;
  g.value_dim = value_width / g.kv_heads;
  std::string rule = node.attrs.get_string("update_rule", "gated_delta");
  if (rule != "linear" && rule != "gated" && rule != "delta" && rule != "gated_delta")
    error("update_rule '", rule, "' is not one of linear, gated, delta, gated_delta");
  g.gated = rule == "gated" || rule == "gated_delta";
  g.delta = rule == "delta" || rule == "gated_delta";
  double scale = node.attrs.get_float("scale", 0.0);
  g.scale = scale != 0.0 ? scale : g.key_dim > 0 ? 1.0 / std::sqrt(double(g.key_dim)) : 1.0;
  return g;
}

// Det: the determinants of the square matrices in X's last two dims.
void infer_det(Ctx& c) {
  c.require_float(0);
  c.require_rank(0, 2);
  const Shape& x = c.shape(0);
  check_equal_dims(c, x[x.size() - 2], x.back(), "the matrices' rows and columns");
  c.set(0, c.dtype(0), Shape(x.begin(), x.end() - 2));
}

OpSchema linalg_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kMatMul: return {2, 2, 1, 1, {}};
    case OpKind::kGemm:
      return {2, 3, 1, 1, {{"alpha", T::kFloat}, {"beta", T::kFloat}, {"transA", T::kInt}, {"transB", T::kInt}}};
    case OpKind::kEinsum: return {1, -1, 1, 1, {{"equation", T::kString}}};
    case OpKind::kMatMulInteger: return {2, 4, 1, 1, {}};
    case OpKind::kQLinearMatMul: return {8, 8, 1, 1, {}};
    case OpKind::kDet: return OpSchema{};
    // act(alpha * A @ op(B) + bias) + residual; inputs A, B, bias?, residual?; output 1, where
    // the builder adds it, is scratch for the runtime's transposed product (contents unspecified)
    case OpKind::kFusedMatMul:
      return {2, 4, 1, 2, {{"trans_b", T::kInt}, {"activation", T::kString}, {"alpha", T::kFloat}}};
    case OpKind::kAttention:  // softmax(scale * Q K^T [+ mask]) V over views of Q, K, V (see AttentionGeometry); mask?
      return {3, 4, 1, 1,
              {{"q_view", T::kInts}, {"k_view", T::kInts}, {"v_view", T::kInts}, {"k_transposed", T::kInt}, {"out_perm", T::kInts},
               {"scale", T::kFloat}, {"causal", T::kInt}, {"mask_keep", T::kInt}, {"mask_fill", T::kFloat}, {"empty_rows_zero", T::kInt}}};
    case OpKind::kDFT: return {1, 3, 1, 1, {{"inverse", T::kInt}, {"onesided", T::kInt}}};
    case OpKind::kSTFT: return {2, 4, 1, 1, {{"onesided", T::kInt}}};
    case OpKind::kLinearAttention:  // query, key, value, past_state?, decay?, beta?
      return {3, 6, 1, 2,
              {{"chunk_size", T::kInt}, {"kv_num_heads", T::kInt}, {"q_num_heads", T::kInt}, {"scale", T::kFloat},
               {"update_rule", T::kString}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_linalg(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kMatMul: infer_matmul(c); break;
    case OpKind::kGemm: infer_gemm(c); break;
    case OpKind::kEinsum: infer_einsum(c); break;
    case OpKind::kMatMulInteger: infer_matmul_integer(c); break;
    case OpKind::kQLinearMatMul: infer_qlinear_matmul(c); break;
    case OpKind::kDet: infer_det(c); break;
    case OpKind::kFusedMatMul: infer_fused_matmul(c); break;
    case OpKind::kAttention: infer_attention(c); break;
    case OpKind::kDFT: infer_dft(c); break;
    case OpKind::kSTFT: infer_stft(c); break;
    case OpKind::kLinearAttention: infer_linear_attention(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir
