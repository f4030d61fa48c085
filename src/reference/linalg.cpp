// MatMul, Gemm, Einsum, Det, fused attention, DFT, STFT and LinearAttention's
// recurrence with float64 accumulation.
#include <algorithm>
#include <cmath>
#include <complex>
#include <numbers>
#include <limits>
#include <map>

#include "kernels.h"
#include "kiln/ir/quantization.h"
#include "kiln/ir/linear_attention.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

// C[m,n] += sum_k A[m,k] * B[k,n] on row-major doubles (i-k-j order streams rows of B).
void gemm_accumulate(const double* a, const double* b, double* c, int64_t m, int64_t k, int64_t n) {
  for (int64_t i = 0; i < m; ++i) {
    double* crow = c + i * n;
    for (int64_t p = 0; p < k; ++p) {
      double av = a[i * k + p];
      const double* brow = b + p * n;
      for (int64_t j = 0; j < n; ++j) crow[j] += av * brow[j];
    }
  }
}

std::vector<double> transposed(const std::vector<double>& v, int64_t rows, int64_t cols) {
  std::vector<double> t(v.size());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) t[size_t(j * rows + i)] = v[size_t(i * cols + j)];
  return t;
}

// The matrix pairs of numpy's matmul of operands of dims ad and bd (a vector
// operand as a matrix of one row or column), batch dims broadcast: fn(batch,
// a, b, m, k, n) for each output matrix in order, a and b the offsets of A's
// [m, k] and B's [k, n] matrix.
template <class Fn>
void for_each_matrix_pair(std::vector<int64_t> ad, std::vector<int64_t> bd, Fn&& fn) {
  if (ad.size() == 1) ad.insert(ad.begin(), 1);
  if (bd.size() == 1) bd.push_back(1);
  int64_t m = ad[ad.size() - 2], k = ad.back(), n = bd.back();
  std::vector<int64_t> a_batch(ad.begin(), ad.end() - 2), b_batch(bd.begin(), bd.end() - 2);
  std::vector<int64_t> batch = ir::shape_constants(ir::broadcast_shapes(ir::shape_of(a_batch), ir::shape_of(b_batch)));
  auto sa = broadcast_strides(a_batch, batch), sb = broadcast_strides(b_batch, batch);
  int64_t bi = 0;
  for_each_index(batch, [&](const std::vector<int64_t>& idx) {
    int64_t oa = 0, ob = 0;
    for (size_t d = 0; d < idx.size(); ++d) {
      oa += idx[d] * sa[d];
      ob += idx[d] * sb[d];
    }
    fn(bi++, oa * m * k, ob * k * n, m, k, n);
  });
}

// numpy-style matmul of doubles with broadcast batch dims.
std::vector<double> matmul(const std::vector<double>& a, const std::vector<int64_t>& ad, const std::vector<double>& b,
                           const std::vector<int64_t>& bd) {
  std::vector<double> out;
  for_each_matrix_pair(ad, bd, [&](int64_t bi, int64_t oa, int64_t ob, int64_t m, int64_t k, int64_t n) {
    out.resize(size_t((bi + 1) * m * n), 0.0);
    gemm_accumulate(a.data() + oa, b.data() + ob, out.data() + bi * m * n, m, k, n);
  });
  return out;
}

// Integer products sum exactly in 64 bits and wrap, at 64 bits and again at
// the output's width (ONNX leaves overflow to the implementation; C's wrap is what the GPU does).
Tensor run_integer_matmul(const KernelContext& c) {
  std::vector<int64_t> a = to_ints(c.in(0)), b = to_ints(c.in(1));
  std::vector<int64_t> out;
  for_each_matrix_pair(c.in(0).dims, c.in(1).dims, [&](int64_t bi, int64_t oa, int64_t ob, int64_t m, int64_t k, int64_t n) {
    out.resize(size_t((bi + 1) * m * n), 0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        uint64_t sum = 0;
        for (int64_t p = 0; p < k; ++p) sum += uint64_t(a[size_t(oa + i * k + p)]) * uint64_t(b[size_t(ob + p * n + j)]);
        out[size_t(bi * m * n + i * n + j)] = int64_t(sum);
      }
  });
  return from_ints(c.out_dtype(0), c.out_dims(0), out);
}

Tensor run_matmul(const KernelContext& c) {
  if (!is_floating(c.out_dtype(0)) && c.out_dtype(0) != DType::kBool) return run_integer_matmul(c);
  return from_doubles(c.out_dtype(0), c.out_dims(0), matmul(to_doubles(c.in(0)), c.in(0).dims, to_doubles(c.in(1)), c.in(1).dims));
}

Tensor run_fused_matmul(const KernelContext& c) {
  std::vector<double> b = to_doubles(c.in(1));
  std::vector<int64_t> bd = c.in(1).dims;
  if (c.attrs().get_int("trans_b", 0)) {  // each matrix of B's batch transposed
    int64_t rows = bd[bd.size() - 2], cols = bd.back(), matrix = rows * cols;
    std::vector<double> t(b.size());
    for (size_t at = 0; at < b.size(); at += size_t(matrix)) {
      std::vector<double> one(b.begin() + long(at), b.begin() + long(at) + matrix);
      std::vector<double> flipped = transposed(one, rows, cols);
      std::copy(flipped.begin(), flipped.end(), t.begin() + long(at));
    }
    b = std::move(t);
    std::swap(bd[bd.size() - 2], bd.back());
  }
  std::vector<double> y = matmul(to_doubles(c.in(0)), c.in(0).dims, b, bd);
  std::vector<int64_t> dims = c.out_dims(0);
  double alpha = c.attrs().get_float("alpha", 1.0);
  std::vector<double> bias = c.has(2) ? to_doubles(c.in(2)) : std::vector<double>{};
  std::string act = c.attrs().get_string("activation", "none");
  int64_t n = dims.back();
  for (size_t i = 0; i < y.size(); ++i) {
    double v = alpha * y[i] + (bias.empty() ? 0.0 : bias[i % size_t(n)]);
    if (act == "relu") v = v < 0 ? 0 : v;
    else if (act == "gelu") v = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    else if (act == "gelu_tanh") v = 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    else if (act == "sigmoid") v = 1.0 / (1.0 + std::exp(-v));
    else if (act == "tanh") v = std::tanh(v);
    y[i] = v;
  }
  if (c.has(3)) {
    const Tensor& r = c.in(3);
    std::vector<double> rv = to_doubles(r);
    auto st = broadcast_strides(r.dims, dims);
    size_t i = 0;
    for_each_index(dims, [&](const std::vector<int64_t>& idx) {
      int64_t off = 0;
      for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * st[d];
      y[i++] += rv[size_t(off)];
    });
  }
  return from_doubles(c.out_dtype(0), dims, y);
}

// Calls fn(o, a, b) for output element o of numpy's matmul of operands of
// dims ad and bd: a is the offset of A's row (k = 0, stepping by 1 through
// k), b the offset of B's column (k = 0, stepping by N).
template <class Fn>
void for_each_product(const std::vector<int64_t>& ad, const std::vector<int64_t>& bd, Fn&& fn) {
  for_each_matrix_pair(ad, bd, [&](int64_t bi, int64_t oa, int64_t ob, int64_t m, int64_t k, int64_t n) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) fn((bi * m + i) * n + j, oa + i * k, ob + j);
  });
}

// A scale or zero point (input p) of a quantized product repeated over the
// elements of its operand (input operand), row-major.
std::vector<double> param_per_element(const KernelContext& c, size_t p, size_t operand, bool of_a) {
  const Tensor &x = c.in(operand), &param = c.in(p);
  std::vector<double> values = to_doubles(param), out;
  out.reserve(size_t(x.numel()));
  auto strides = broadcast_strides(ir::matmul_param_dims(param.dims, x.dims.size(), of_a), x.dims);
  for_each_index(x.dims, [&](const std::vector<int64_t>& idx) {
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides[d];
    out.push_back(values[size_t(off)]);
  });
  return out;
}

// (A - a_zero_point) @ (B - b_zero_point) exactly (int64), wrapped to int32
// as ONNX allows ("accumulation may overflow if and only if in 32 bits").
std::vector<int64_t> integer_product(const KernelContext& c, size_t ia, size_t iaz, size_t ib, size_t ibz) {
  const Tensor &ta = c.in(ia), &tb = c.in(ib);
  std::vector<int64_t> a = to_ints(ta), b = to_ints(tb);
  if (c.has(iaz)) {
    std::vector<double> z = param_per_element(c, iaz, ia, true);
    for (size_t i = 0; i < a.size(); ++i) a[i] -= int64_t(z[i]);
  }
  if (c.has(ibz)) {
    std::vector<double> z = param_per_element(c, ibz, ib, false);
    for (size_t i = 0; i < b.size(); ++i) b[i] -= int64_t(z[i]);
  }
  int64_t k = ta.dims.back(), n = tb.dims.size() == 1 ? 1 : tb.dims.back();
  std::vector<int64_t> out(size_t(ir::checked_numel(c.out_dims(0))));
  for_each_product(ta.dims, tb.dims, [&](int64_t o, int64_t ao, int64_t bo) {
    int64_t acc = 0;
    for (int64_t p = 0; p < k; ++p) acc += a[size_t(ao + p)] * b[size_t(bo + p * n)];
    out[size_t(o)] = int64_t(int32_t(acc));
  });
  return out;
}

Tensor run_matmul_integer(const KernelContext& c) {
  return from_ints(DType::kInt32, c.out_dims(0), integer_product(c, 0, 2, 1, 3));
}

// QLinearMatMul as ONNX's reference computes it: the int32 product times
// a_scale * b_scale / y_scale (in the scales' type), plus y's zero point,
// rounded half to even and saturated.
Tensor run_qlinear_matmul(const KernelContext& c) {
  std::vector<int64_t> acc = integer_product(c, 0, 2, 3, 5);
  DType st = c.in(1).dtype;
  std::vector<double> a_scale = param_per_element(c, 1, 0, true), b_scale = param_per_element(c, 4, 3, false);
  double y_scale = scalar_double(c.in(6)), y_zero = scalar_double(c.in(7));
  ir::QuantRange range = ir::quant_range(c.out_dtype(0));
  std::vector<int64_t> y(acc.size());
  for_each_product(c.in(0).dims, c.in(3).dims, [&](int64_t o, int64_t ao, int64_t bo) {
    double scale = rounded_to(st, rounded_to(st, a_scale[size_t(ao)] * b_scale[size_t(bo)]) / y_scale);
    double r = std::nearbyint(double(acc[size_t(o)]) * scale + y_zero);
    y[size_t(o)] = std::isnan(r) ? range.lo : int64_t(std::clamp(r, double(range.lo), double(range.hi)));
  });
  return from_ints(c.out_dtype(0), c.out_dims(0), y);
}

Tensor run_gemm(const KernelContext& c) {
  const Tensor &ta = c.in(0), &tb = c.in(1);
  bool trans_a = c.attrs().get_int("transA", 0), trans_b = c.attrs().get_int("transB", 0);
  double alpha = c.attrs().get_float("alpha", 1.0), beta = c.attrs().get_float("beta", 1.0);
  std::vector<double> a = to_doubles(ta), b = to_doubles(tb);
  if (trans_a) a = transposed(a, ta.dims[0], ta.dims[1]);
  if (trans_b) b = transposed(b, tb.dims[0], tb.dims[1]);
  int64_t m = trans_a ? ta.dims[1] : ta.dims[0], k = trans_a ? ta.dims[0] : ta.dims[1];
  int64_t n = trans_b ? tb.dims[0] : tb.dims[1];
  std::vector<double> out(size_t(m * n), 0.0);
  gemm_accumulate(a.data(), b.data(), out.data(), m, k, n);
  for (double& v : out) v *= alpha;
  if (c.has(2)) {
    const Tensor& tc = c.in(2);
    std::vector<double> cv = to_doubles(tc);
    auto s = broadcast_strides(tc.dims, {m, n});
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) out[size_t(i * n + j)] += beta * cv[size_t(i * s[0] + j * s[1])];
  }
  return from_doubles(c.out_dtype(0), {m, n}, out);
}

// Einsum by direct summation over every label assignment: slow, obviously right.
Tensor run_einsum(const KernelContext& c) {
  std::vector<size_t> ranks;
  for (size_t t = 0; t < c.node.inputs.size(); ++t) ranks.push_back(c.in(t).dims.size());
  ir::EinsumLabels labels = ir::einsum_labels(ir::parse_einsum(c.attrs().get_string("equation", "")), ranks);
  const std::vector<std::string>& terms = labels.terms;
  const std::string &out_term = labels.out, &summed = labels.summed;
  std::map<char, int64_t> size;
  for (size_t t = 0; t < terms.size(); ++t)
    for (size_t i = 0; i < terms[t].size(); ++i) size[terms[t][i]] = std::max(size[terms[t][i]], c.in(t).dims[i]);
  std::string all = out_term + summed;
  std::vector<int64_t> dims;
  for (char l : all) dims.push_back(size[l]);
  std::vector<std::vector<double>> vals;
  std::vector<std::vector<int64_t>> label_stride;  // per operand, stride of each label in `all`
  for (size_t t = 0; t < terms.size(); ++t) {
    vals.push_back(to_doubles(c.in(t)));
    auto st = strides_of(c.in(t).dims);
    std::vector<int64_t> ls(all.size(), 0);
    for (size_t i = 0; i < terms[t].size(); ++i)
      if (c.in(t).dims[i] != 1) ls[all.find(terms[t][i])] += st[i];
    label_stride.push_back(ls);
  }
  int64_t out_n = 1;
  for (size_t i = 0; i < out_term.size(); ++i) out_n *= dims[i];
  int64_t inner = ir::checked_numel(dims) / std::max<int64_t>(out_n, 1);
  std::vector<double> out(size_t(out_n), 0.0);
  int64_t flat = 0;
  for_each_index(dims, [&](const std::vector<int64_t>& idx) {
    double prod = 1.0;
    for (size_t t = 0; t < terms.size(); ++t) {
      int64_t off = 0;
      for (size_t i = 0; i < idx.size(); ++i) off += idx[i] * label_stride[t][i];
      prod *= vals[t][size_t(off)];
    }
    out[size_t(flat / inner)] += prod;
    ++flat;
  });
  return from_doubles(c.out_dtype(0), c.out_dims(0), out);
}

}  // namespace

Tensor run_attention(const KernelContext& c) {
  ir::AttentionGeometry g = ir::attention_geometry(c.node, c.in(0).dims, c.in(1).dims, c.in(2).dims);
  std::vector<double> q = to_doubles(c.in(0)), k = to_doubles(c.in(1)), v = to_doubles(c.in(2));
  std::vector<double> out(size_t(ir::checked_numel(g.out_dims)), 0.0), scores(size_t(g.kv_len));
  double scale = c.attrs().get_float("scale", 1.0);
  bool causal = c.attrs().get_int("causal", 0) != 0;
  auto at = [](const std::array<int64_t, 5>& view, int64_t b, int64_t h, int64_t s, int64_t d) {
    return size_t(view[0] + b * view[1] + h * view[2] + s * view[3] + d * view[4]);
  };
  // The mask: added (float) or keep-or-fill (bool), before the causal rule.
  const bool has_mask = c.has(3), bool_mask = has_mask && c.in(3).dtype == DType::kBool;
  std::vector<double> mask = has_mask ? to_doubles(c.in(3)) : std::vector<double>{};
  std::array<int64_t, 4> ms = has_mask ? ir::attention_mask_strides(c.node, g, g.out_dims.size(), c.in(3).dims) : std::array<int64_t, 4>{};
  const bool keep_when = c.attrs().get_int("mask_keep", 1) != 0, empty_rows_zero = c.attrs().get_int("empty_rows_zero", 0) != 0;
  const double fill = c.attrs().get_float("mask_fill", -std::numeric_limits<double>::infinity());
  auto masked = [&](double score, int64_t b, int64_t h, int64_t i, int64_t j) {
    if (!has_mask) return score;
    double m = mask[size_t(b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3])];
    if (bool_mask) return (m != 0) == keep_when ? score : fill;
    return score + m;
  };
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t h = 0; h < g.heads; ++h)
      for (int64_t i = 0; i < g.q_len; ++i) {
        double mx = -std::numeric_limits<double>::infinity(), sum = 0;
        for (int64_t j = 0; j < g.kv_len; ++j) {
          if (causal && j > i) {
            scores[size_t(j)] = -std::numeric_limits<double>::infinity();
            continue;
          }
          double dot = 0;
          for (int64_t e = 0; e < g.head_dim; ++e) dot += q[at(g.q, b, h, i, e)] * k[at(g.k, b, h, j, e)];
          scores[size_t(j)] = masked(scale * dot, b, h, i, j);
          mx = std::max(mx, scores[size_t(j)]);
        }
        if (empty_rows_zero && mx == -std::numeric_limits<double>::infinity()) continue;  // out stays 0
        for (auto& s : scores) sum += s = std::exp(s - mx);
        for (int64_t d = 0; d < g.head_dim; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < g.kv_len; ++j) acc += scores[size_t(j)] * v[at(g.v, b, h, j, d)];
          out[at(g.out, b, h, i, d)] = acc / sum;
        }
      }
  return from_doubles(c.out_dtype(0), g.out_dims, out);
}

namespace {

// The recurrence token by token, each kv head's state [d_k, d_v] read by its
// group of query heads (query head i reads kv head i / group).
Outputs run_linear_attention(const KernelContext& c) {
  const Tensor& tq = c.in(0);
  int64_t batch = tq.dims[0], steps = tq.dims[1];
  ir::LinearAttentionGeometry g = ir::linear_attention_geometry(c.node, tq.dims[2], c.in(2).dims[2]);
  int64_t hq = g.q_heads, hk = g.kv_heads, dk = g.key_dim, dv = g.value_dim, group = hq / hk;
  std::vector<double> q = to_doubles(tq), k = to_doubles(c.in(1)), v = to_doubles(c.in(2));
  std::vector<double> state = c.has(3) ? to_doubles(c.in(3)) : std::vector<double>(size_t(batch * hk * dk * dv), 0.0);
  std::vector<double> decay = g.gated ? to_doubles(c.in(4)) : std::vector<double>{};
  std::vector<double> beta = g.delta ? to_doubles(c.in(5)) : std::vector<double>{};
  int64_t decay_width = g.gated ? c.in(4).dims[2] : 0, beta_width = g.delta ? c.in(5).dims[2] : 0;
  std::vector<double> out(size_t(batch * steps * hq * dv)), written(static_cast<size_t>(dv));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < hk; ++h) {
      double* s = state.data() + (b * hk + h) * dk * dv;
      for (int64_t t = 0; t < steps; ++t) {
        int64_t row = b * steps + t;
        const double* kt = k.data() + (row * hk + h) * dk;
        const double* vt = v.data() + (row * hk + h) * dv;
        if (g.gated)
          for (int64_t d = 0; d < dk; ++d) {
            double f = std::exp(decay[size_t(row * decay_width + (decay_width == hk ? h : h * dk + d))]);
            for (int64_t j = 0; j < dv; ++j) s[d * dv + j] *= f;
          }
        std::copy_n(vt, dv, written.begin());
        if (g.delta) {
          double rate = beta[size_t(row * beta_width + (beta_width == 1 ? 0 : h))];
          for (int64_t j = 0; j < dv; ++j) {
            double recalled = 0;
            for (int64_t d = 0; d < dk; ++d) recalled += s[d * dv + j] * kt[d];
            written[size_t(j)] = rate * (vt[j] - recalled);
          }
        }
        for (int64_t d = 0; d < dk; ++d)
          for (int64_t j = 0; j < dv; ++j) s[d * dv + j] += kt[d] * written[size_t(j)];
        for (int64_t head = h * group; head < (h + 1) * group; ++head) {
          const double* qt = q.data() + (row * hq + head) * dk;
          for (int64_t j = 0; j < dv; ++j) {
            double acc = 0;
            for (int64_t d = 0; d < dk; ++d) acc += qt[d] * s[d * dv + j];
            out[size_t((row * hq + head) * dv + j)] = g.scale * acc;
          }
        }
      }
    }
  Outputs result{from_doubles(c.out_dtype(0), c.out_dims(0), out)};
  if (c.outputs.size() > 1) result.push_back(from_doubles(c.out_dtype(1), c.out_dims(1), state));
  return result;
}

// Det: each matrix's determinant by LU decomposition with partial pivoting
// (the product of the pivots, its sign flipped per row swap); 1 for 0 x 0.
Tensor run_det(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  int64_t n = tx.dims.back();
  if (tx.dims[tx.dims.size() - 2] != n)
    c.error(ErrorCode::kShapeError, "X ", ir::shape_to_string(ir::shape_of(tx.dims)), " does not hold square matrices");
  std::vector<double> x = to_doubles(tx);
  std::vector<int64_t> dims(tx.dims.begin(), tx.dims.end() - 2);
  std::vector<double> out(size_t(ir::checked_numel(dims)));
  for (size_t m = 0; m < out.size(); ++m) {
    double* a = x.data() + m * size_t(n * n);
    double det = 1;
    for (int64_t k = 0; k < n && det != 0; ++k) {
      int64_t pivot = k;
      for (int64_t r = k + 1; r < n; ++r)
        if (std::fabs(a[r * n + k]) > std::fabs(a[pivot * n + k])) pivot = r;
      if (pivot != k) {
        std::swap_ranges(a + k * n, a + (k + 1) * n, a + pivot * n);
        det = -det;
      }
      det *= a[k * n + k];
      if (a[k * n + k] == 0) break;
      for (int64_t r = k + 1; r < n; ++r) {
        double f = a[r * n + k] / a[k * n + k];
        for (int64_t j = k + 1; j < n; ++j) a[r * n + j] -= f * a[k * n + j];
      }
    }
    out[m] = det;
  }
  return from_doubles(c.out_dtype(0), dims, out);
}

// Y, and zeros for the scratch output the builder may add (the GPU runtime
// computes some products transposed there; nothing reads it).
Outputs fused_matmul_outputs(const KernelContext& c) {
  Outputs out{run_fused_matmul(c)};
  if (c.outputs.size() > 1) {
    std::vector<int64_t> dims = c.out_dims(1);
    out.push_back(from_doubles(c.out_dtype(1), dims, std::vector<double>(size_t(ir::checked_numel(dims)))));
  }
  return out;
}


// e^(sign 2 pi i k t / n), the angle reduced to (k t mod n) / n first so long
// transforms keep their precision (the GPU kernels reduce it the same way).
std::complex<double> twiddle(int64_t k, int64_t t, int64_t n, double sign) {
  double angle = sign * 2 * std::numbers::pi * double((k * t) % n) / double(n);
  return {std::cos(angle), std::sin(angle)};
}

// Element t of a line of a signal whose trailing dim holds 1 (real) or 2 values.
std::complex<double> signal_at(const std::vector<double>& x, int64_t at, int64_t parts) {
  return {x[size_t(at * parts)], parts == 2 ? x[size_t(at * parts + 1)] : 0.0};
}

// The DFT of each line along the axis, zero-padded or cut to the DFT length n.
Tensor run_dft(const KernelContext& c) {
  const Tensor& in = c.in(0);
  std::vector<double> x = to_doubles(in);
  std::vector<int64_t> out_dims = c.out_dims(0);
  size_t r = in.dims.size();
  int64_t axis = normalize_axis(c, c.has(2) ? to_ints(c.in(2)).at(0) : -2, r);
  bool inverse = c.attrs().get_int("inverse", 0) != 0, onesided = c.attrs().get_int("onesided", 0) != 0;
  bool real_inverse = inverse && onesided;  // the spectrum's other half is its conjugate mirror
  int64_t outer = ir::checked_numel({in.dims.begin(), in.dims.begin() + axis});
  int64_t inner = ir::checked_numel({in.dims.begin() + axis + 1, in.dims.end() - 1});
  int64_t in_len = in.dims[size_t(axis)], in_parts = in.dims.back();
  int64_t out_len = out_dims[size_t(axis)], out_parts = out_dims.back();
  int64_t n = c.has(1) ? to_ints(c.in(1)).at(0) : real_inverse ? 2 * (in_len - 1) : in_len;
  double sign = inverse ? 1.0 : -1.0, scale = inverse ? 1.0 / double(n) : 1.0;
  std::vector<double> out(size_t(ir::checked_numel(out_dims)));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < out_len; ++k)
      for (int64_t i = 0; i < inner; ++i) {
        auto at = [&](int64_t t) { return signal_at(x, (o * in_len + t) * inner + i, in_parts); };
        std::complex<double> sum = 0;
        if (real_inverse) {
          for (int64_t t = 0; t < n; ++t) {
            int64_t mirror = t <= n / 2 ? t : n - t;
            std::complex<double> v = mirror < in_len ? at(mirror) : 0.0;
            sum += (t <= n / 2 ? v : std::conj(v)) * twiddle(k, t, n, sign);
          }
        } else {
          for (int64_t t = 0; t < std::min(in_len, n); ++t) sum += at(t) * twiddle(k, t, n, sign);
        }
        size_t dst = size_t(((o * out_len + k) * inner + i) * out_parts);
        out[dst] = sum.real() * scale;
        if (out_parts == 2) out[dst + 1] = sum.imag() * scale;
      }
  return from_doubles(c.out_dtype(0), out_dims, out);
}

// The DFT of each frame of frame_length samples, frame_step apart, times the window.
Tensor run_stft(const KernelContext& c) {
  const Tensor& in = c.in(0);
  std::vector<double> x = to_doubles(in);
  std::vector<int64_t> out_dims = c.out_dims(0);
  int64_t batch = in.dims[0], length = in.dims[1], parts = in.dims[2];
  int64_t frames = out_dims[1], bins = out_dims[2];
  int64_t step = to_ints(c.in(1)).at(0);
  int64_t frame_length = c.has(3) ? to_ints(c.in(3)).at(0) : c.has(2) ? c.in(2).dims.at(0) : length;
  std::vector<double> window = c.has(2) ? to_doubles(c.in(2)) : std::vector<double>(size_t(frame_length), 1.0);
  std::vector<double> out(size_t(ir::checked_numel(out_dims)));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t f = 0; f < frames; ++f)
      for (int64_t k = 0; k < bins; ++k) {
        std::complex<double> sum = 0;
        for (int64_t t = 0; t < frame_length; ++t)
          sum += signal_at(x, b * length + f * step + t, parts) * window[size_t(t)] * twiddle(k, t, frame_length, -1.0);
        size_t dst = size_t(((b * frames + f) * bins + k) * 2);
        out[dst] = sum.real();
        out[dst + 1] = sum.imag();
      }
  return from_doubles(c.out_dtype(0), out_dims, out);
}

}  // namespace

Kernel linalg_kernel(OpKind op) {
  switch (op) {
    case OpKind::kMatMul: return one_output<run_matmul>;
    case OpKind::kGemm: return one_output<run_gemm>;
    case OpKind::kMatMulInteger: return one_output<run_matmul_integer>;
    case OpKind::kQLinearMatMul: return one_output<run_qlinear_matmul>;
    case OpKind::kEinsum: return one_output<run_einsum>;
    case OpKind::kDet: return one_output<run_det>;
    case OpKind::kFusedMatMul: return fused_matmul_outputs;
    case OpKind::kAttention: return one_output<run_attention>;
    case OpKind::kDFT: return one_output<run_dft>;
    case OpKind::kSTFT: return one_output<run_stft>;
    case OpKind::kLinearAttention: return run_linear_attention;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
