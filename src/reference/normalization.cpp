// The normalization family: batch, instance, layer and group normalization,
// local response normalization, Lp normalization and the softmax ops.
#include <algorithm>
#include <cmath>

#include "kernels.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

// Normalizes `x` in place over groups of `inner` consecutive elements; returns (mean, inv_std) per group.
std::pair<std::vector<double>, std::vector<double>> normalize_groups(std::vector<double>& x, int64_t inner, double eps) {
  int64_t groups = inner ? int64_t(x.size()) / inner : 0;
  std::vector<double> means(static_cast<size_t>(groups)), inv_stds(static_cast<size_t>(groups));
  for (int64_t gi = 0; gi < groups; ++gi) {
    double* v = x.data() + gi * inner;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < inner; ++i) mean += v[i];
    mean /= double(inner);
    for (int64_t i = 0; i < inner; ++i) var += (v[i] - mean) * (v[i] - mean);
    var /= double(inner);
    double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < inner; ++i) v[i] = (v[i] - mean) * inv;
    means[size_t(gi)] = mean;
    inv_stds[size_t(gi)] = inv;
  }
  return {means, inv_stds};
}

Outputs run_norm(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  std::vector<double> x = to_doubles(tx);
  OpKind op = c.node.op;
  double eps = c.attrs().get_float("epsilon", 1e-5);
  if (op == OpKind::kLayerNormalization) {
    int64_t r = int64_t(tx.dims.size());
    int64_t axis = c.attrs().get_int("axis", -1);
    if (axis < 0) axis += r;
    std::vector<int64_t> norm_dims(tx.dims.begin() + axis, tx.dims.end());
    int64_t inner = ir::checked_numel(norm_dims);
    auto [mean, inv] = normalize_groups(x, inner, eps);
    auto apply = [&](size_t input, bool add) {
      if (!c.has(input)) return;
      const Tensor& p = c.in(input);
      std::vector<double> pv = to_doubles(p);
      auto s = broadcast_strides(p.dims, norm_dims);
      for (size_t gi = 0; gi < mean.size(); ++gi) {
        int64_t i = 0;
        for_each_index(norm_dims, [&](const std::vector<int64_t>& idx) {
          int64_t off = 0;
          for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * s[d];
          double& v = x[gi * size_t(inner) + size_t(i++)];
          v = add ? v + pv[size_t(off)] : v * pv[size_t(off)];
        });
      }
    };
    apply(1, false);
    apply(2, true);
    Outputs out{from_doubles(c.out_dtype(0), tx.dims, x)};
    if (c.outputs.size() > 1) out.push_back(from_doubles(c.out_dtype(1), c.out_dims(1), mean));
    if (c.outputs.size() > 2) out.push_back(from_doubles(c.out_dtype(2), c.out_dims(2), inv));
    return out;
  }
  int64_t n = tx.dims[0], ch = tx.dims[1], vol = ir::checked_numel(spatial_of(tx.dims));
  std::vector<double> scale = to_doubles(c.in(1)), bias = to_doubles(c.in(2));
  if (op == OpKind::kBatchNormalization) {
    std::vector<double> mean = to_doubles(c.in(3)), var = to_doubles(c.in(4));
    for (int64_t b = 0; b < n; ++b)
      for (int64_t k = 0; k < ch; ++k) {
        double inv = 1.0 / std::sqrt(var[size_t(k)] + eps);
        double* v = x.data() + (b * ch + k) * vol;
        for (int64_t i = 0; i < vol; ++i) v[i] = (v[i] - mean[size_t(k)]) * inv * scale[size_t(k)] + bias[size_t(k)];
      }
  } else {
    int64_t groups = op == OpKind::kGroupNormalization ? c.attrs().get_int("num_groups", 1) : ch;
    normalize_groups(x, ch / groups * vol, eps);
    for (int64_t b = 0; b < n; ++b)
      for (int64_t k = 0; k < ch; ++k) {
        double* v = x.data() + (b * ch + k) * vol;
        for (int64_t i = 0; i < vol; ++i) v[i] = v[i] * scale[size_t(k)] + bias[size_t(k)];
      }
  }
  return {from_doubles(c.out_dtype(0), tx.dims, x)};
}

// LRN: each element divided by (bias + alpha / size * the sum of squares over
// the channels c - floor((size - 1) / 2) .. c + ceil((size - 1) / 2)) ^ beta.
Tensor run_lrn(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  std::vector<double> x = to_doubles(tx), y(x.size());
  double alpha = c.attrs().get_float("alpha", 1e-4), beta = c.attrs().get_float("beta", 0.75);
  double bias = c.attrs().get_float("bias", 1.0);
  int64_t size = c.attrs().get_int("size", 1);
  int64_t n = tx.dims[0], ch = tx.dims[1], vol = ir::checked_numel(spatial_of(tx.dims));
  int64_t before = (size - 1) / 2, after = size - 1 - before;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t k = 0; k < ch; ++k)
      for (int64_t i = 0; i < vol; ++i) {
        double sq = 0;
        for (int64_t j = std::max<int64_t>(0, k - before); j <= std::min(ch - 1, k + after); ++j) {
          double v = x[size_t((b * ch + j) * vol + i)];
          sq += v * v;
        }
        size_t at = size_t((b * ch + k) * vol + i);
        y[at] = x[at] / std::pow(bias + alpha / double(size) * sq, beta);
      }
  return from_doubles(tx.dtype, tx.dims, y);
}

// LpNormalization: x / ||x||_p over the axis (p 1 or 2), 0 where the norm is 0.
Tensor run_lp_normalization(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  int64_t axis = normalize_axis(c, c.attrs().get_int("axis", -1), tx.dims.size());
  bool l1 = c.attrs().get_int("p", 2) == 1;
  int64_t outer = ir::checked_numel({tx.dims.begin(), tx.dims.begin() + axis}), len = tx.dims[size_t(axis)];
  int64_t inner = ir::checked_numel({tx.dims.begin() + axis + 1, tx.dims.end()});
  std::vector<double> x = to_doubles(tx), y(x.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t k) { return size_t((o * len + k) * inner + i); };
      double norm = 0;
      for (int64_t k = 0; k < len; ++k) norm += l1 ? std::fabs(x[at(k)]) : x[at(k)] * x[at(k)];
      if (!l1) norm = std::sqrt(norm);
      for (int64_t k = 0; k < len; ++k) y[at(k)] = norm == 0 ? 0.0 : x[at(k)] / norm;
    }
  return from_doubles(tx.dtype, tx.dims, y);
}

Tensor run_softmax(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  int64_t r = int64_t(tx.dims.size());
  int64_t axis = c.attrs().get_int("axis", -1);
  if (axis < 0) axis += r;
  int64_t outer = ir::checked_numel({tx.dims.begin(), tx.dims.begin() + axis});
  int64_t len = tx.dims[size_t(axis)];
  int64_t inner = ir::checked_numel({tx.dims.begin() + axis + 1, tx.dims.end()});
  std::vector<double> x = to_doubles(tx);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      double* base = x.data() + o * len * inner + i;
      auto at = [&](int64_t k) -> double& { return base[k * inner]; };
      double mx = -INFINITY;
      int64_t arg = 0;
      for (int64_t k = 0; k < len; ++k)
        if (at(k) > mx) {
          mx = at(k);
          arg = k;
        }
      if (c.node.op == OpKind::kHardmax) {
        for (int64_t k = 0; k < len; ++k) at(k) = k == arg ? 1.0 : 0.0;
        continue;
      }
      double sum = 0;
      for (int64_t k = 0; k < len; ++k) sum += std::exp(at(k) - mx);
      for (int64_t k = 0; k < len; ++k)
        at(k) = c.node.op == OpKind::kLogSoftmax ? at(k) - mx - std::log(sum) : std::exp(at(k) - mx) / sum;
    }
  return from_doubles(tx.dtype, tx.dims, x);
}

}  // namespace

Kernel normalization_kernel(OpKind op) {
  switch (op) {
    case OpKind::kBatchNormalization: case OpKind::kInstanceNormalization: case OpKind::kLayerNormalization:
    case OpKind::kGroupNormalization:
      return run_norm;
    case OpKind::kSoftmax: case OpKind::kLogSoftmax: case OpKind::kHardmax: return one_output<run_softmax>;
    case OpKind::kLRN: return one_output<run_lrn>;
    case OpKind::kLpNormalization: return one_output<run_lp_normalization>;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
