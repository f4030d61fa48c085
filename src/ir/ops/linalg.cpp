// The linear algebra family: MatMul, Gemm, Einsum, Det and the builder's
// FusedMatMul and Attention (its view programs: src/ir/attention.cpp).
#include <cctype>
#include <map>

#include "kiln/ir/fused.h"
#include "family.h"

namespace kiln::ir {

namespace {

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
    case OpKind::kDet: return OpSchema{};
    // act(alpha * A @ op(B) + bias) + residual; inputs A, B, bias?, residual?; output 1, where
    // the builder adds it, is scratch for the runtime's transposed product (contents unspecified)
    case OpKind::kFusedMatMul:
      return {2, 4, 1, 2, {{"trans_b", T::kInt}, {"activation", T::kString}, {"alpha", T::kFloat}}};
    case OpKind::kAttention:  // softmax(scale * Q K^T) V over views of its inputs (see AttentionGeometry)
      return {3, 3, 1, 1,
              {{"q_view", T::kInts}, {"k_view", T::kInts}, {"v_view", T::kInts}, {"k_transposed", T::kInt}, {"out_perm", T::kInts},
               {"scale", T::kFloat}, {"causal", T::kInt}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_linalg(Ctx& c) {
  switch (c.node().op) {
    case OpKind::kMatMul: infer_matmul(c); break;
    case OpKind::kGemm: infer_gemm(c); break;
    case OpKind::kEinsum: infer_einsum(c); break;
    case OpKind::kDet: infer_det(c); break;
    case OpKind::kFusedMatMul: infer_fused_matmul(c); break;
    case OpKind::kAttention: infer_attention(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir
