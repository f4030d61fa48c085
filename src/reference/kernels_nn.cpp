// Neural-network layers: convolution (im2col + float64 GEMM), transposed
// convolution, pooling, normalizations and the softmax family.
#include <cmath>
#include <limits>

#include "kernels.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

std::vector<int64_t> spatial_of(const std::vector<int64_t>& dims) { return {dims.begin() + 2, dims.end()}; }

Tensor run_conv(const KernelContext& c) {
  const Tensor &tx = c.in(0), &tw = c.in(1);
  int64_t n = tx.dims[0], cin = tx.dims[1], m = tw.dims[0];
  int64_t group = c.attrs().get_int("group", 1);
  std::vector<int64_t> in_sp = spatial_of(tx.dims), k_sp = spatial_of(tw.dims);
  ir::WindowGeometry g = ir::window_geometry(c.node, in_sp, k_sp);
  size_t nd = in_sp.size();
  int64_t cg = cin / group, mg = m / group;
  int64_t kvol = ir::checked_numel(k_sp), ovol = ir::checked_numel(g.output), ivol = ir::checked_numel(in_sp);
  // The im2col buffers are kernel volume times output size: bigger than the output, so checked apart.
  ir::checked_byte_size({cg, kvol, ovol}, DType::kFloat64, str(c.where(), ": the im2col buffer"));
  ir::checked_byte_size({kvol, ovol}, DType::kInt64, str(c.where(), ": the im2col index"));
  std::vector<double> x = to_doubles(tx), w = to_doubles(tw);
  std::vector<double> bias = c.has(2) ? to_doubles(c.in(2)) : std::vector<double>(size_t(m), 0.0);
  std::vector<double> out(size_t(n * m * ovol), 0.0);
  std::vector<double> cols(size_t(cg * kvol * ovol));
  auto in_strides = strides_of(in_sp);
  // For each (kernel offset, output position) the input offset within a channel, or -1 in padding.
  std::vector<int64_t> gather(size_t(kvol * ovol));
  {
    size_t at = 0;
    for_each_index(k_sp, [&](const std::vector<int64_t>& kidx) {
      for_each_index(g.output, [&](const std::vector<int64_t>& oidx) {
        int64_t off = 0;
        for (size_t d = 0; d < nd && off >= 0; ++d) {
          int64_t pos = oidx[d] * g.strides[d] - g.pads_begin[d] + kidx[d] * g.dilations[d];
          off = (pos < 0 || pos >= in_sp[d]) ? -1 : off + pos * in_strides[d];
        }
        gather[at++] = off;
      });
    });
  }
  for (int64_t b = 0; b < n; ++b)
    for (int64_t gi = 0; gi < group; ++gi) {
      for (int64_t ci = 0; ci < cg; ++ci) {
        const double* xc = x.data() + (b * cin + gi * cg + ci) * ivol;
        double* col = cols.data() + ci * kvol * ovol;
        for (int64_t j = 0; j < kvol * ovol; ++j) col[j] = gather[size_t(j)] < 0 ? 0.0 : xc[gather[size_t(j)]];
      }
      double* o = out.data() + (b * m + gi * mg) * ovol;
      for (int64_t mi = 0; mi < mg; ++mi)
        for (int64_t j = 0; j < ovol; ++j) o[mi * ovol + j] = bias[size_t(gi * mg + mi)];
      const double* wg = w.data() + gi * mg * cg * kvol;
      for (int64_t mi = 0; mi < mg; ++mi) {
        double* orow = o + mi * ovol;
        for (int64_t p = 0; p < cg * kvol; ++p) {
          double wv = wg[mi * cg * kvol + p];
          const double* crow = cols.data() + p * ovol;
          for (int64_t j = 0; j < ovol; ++j) orow[j] += wv * crow[j];
        }
      }
    }
  return from_doubles(c.out_dtype(0), c.out_dims(0), out);
}

Tensor run_conv_transpose(const KernelContext& c) {
  const Tensor &tx = c.in(0), &tw = c.in(1);
  int64_t n = tx.dims[0], cin = tx.dims[1];
  int64_t group = c.attrs().get_int("group", 1);
  int64_t mg = tw.dims[1], m = mg * group, cg = cin / group;
  std::vector<int64_t> in_sp = spatial_of(tx.dims), k_sp = spatial_of(tw.dims);
  ir::WindowGeometry g = ir::window_geometry(c.node, in_sp, k_sp);
  std::vector<int64_t> out_dims = c.out_dims(0), out_sp = spatial_of(out_dims);
  size_t nd = in_sp.size();
  int64_t kvol = ir::checked_numel(k_sp), ovol = ir::checked_numel(out_sp), ivol = ir::checked_numel(in_sp);
  std::vector<double> x = to_doubles(tx), w = to_doubles(tw);
  ir::checked_byte_size({ivol, kvol}, DType::kInt64, str(c.where(), ": the scatter index"));
  std::vector<double> out(size_t(n * m * ovol), 0.0);
  auto out_strides = strides_of(out_sp);
  // For each (input position, kernel offset) the output offset, or -1 when cropped away.
  std::vector<int64_t> scatter(size_t(ivol * kvol));
  {
    size_t at = 0;
    for_each_index(in_sp, [&](const std::vector<int64_t>& iidx) {
      for_each_index(k_sp, [&](const std::vector<int64_t>& kidx) {
        int64_t off = 0;
        for (size_t d = 0; d < nd && off >= 0; ++d) {
          int64_t pos = iidx[d] * g.strides[d] - g.pads_begin[d] + kidx[d] * g.dilations[d];
          off = (pos < 0 || pos >= out_sp[d]) ? -1 : off + pos * out_strides[d];
        }
        scatter[at++] = off;
      });
    });
  }
  for (int64_t b = 0; b < n; ++b)
    for (int64_t gi = 0; gi < group; ++gi)
      for (int64_t ci = 0; ci < cg; ++ci) {
        int64_t ch = gi * cg + ci;
        const double* xc = x.data() + (b * cin + ch) * ivol;
        for (int64_t mi = 0; mi < mg; ++mi) {
          const double* wk = w.data() + (ch * mg + mi) * kvol;
          double* o = out.data() + (b * m + gi * mg + mi) * ovol;
          for (int64_t i = 0; i < ivol; ++i)
            for (int64_t k = 0; k < kvol; ++k) {
              int64_t off = scatter[size_t(i * kvol + k)];
              if (off >= 0) o[off] += xc[i] * wk[k];
            }
        }
      }
  if (c.has(2)) {
    std::vector<double> bias = to_doubles(c.in(2));
    for (int64_t b = 0; b < n; ++b)
      for (int64_t ch = 0; ch < m; ++ch)
        for (int64_t j = 0; j < ovol; ++j) out[size_t((b * m + ch) * ovol + j)] += bias[size_t(ch)];
  }
  return from_doubles(c.out_dtype(0), out_dims, out);
}

Outputs run_pool(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  bool is_max = c.node.op == OpKind::kMaxPool || c.node.op == OpKind::kMaxPoolChannelsLast;
  std::vector<int64_t> in_sp = spatial_of(tx.dims);
  std::vector<int64_t> kernel = c.attrs().get_ints("kernel_shape");
  ir::WindowGeometry g = ir::window_geometry(c.node, in_sp, kernel);
  bool include_pad = c.attrs().get_int("count_include_pad", 0) != 0;
  bool column_major = c.attrs().get_int("storage_order", 0) != 0;
  size_t nd = in_sp.size();
  int64_t planes = tx.dims[0] * tx.dims[1];
  int64_t ivol = ir::checked_numel(in_sp), ovol = ir::checked_numel(g.output);
  std::vector<double> x = to_doubles(tx);
  std::vector<double> out(size_t(planes * ovol));
  std::vector<int64_t> indices(size_t(planes * ovol));
  auto in_strides = strides_of(in_sp);
  std::vector<int64_t> col_strides(nd, 1);  // storage_order=1: index as if stored column-major
  for (size_t d = 1; d < nd; ++d) col_strides[d] = col_strides[d - 1] * in_sp[d - 1];
  for (int64_t p = 0; p < planes; ++p) {
    const double* xp = x.data() + p * ivol;
    int64_t o = 0;
    for_each_index(g.output, [&](const std::vector<int64_t>& oidx) {
      double best = -std::numeric_limits<double>::infinity(), sum = 0;
      int64_t best_at = -1, count = 0, padded_count = 1;
      for (size_t d = 0; d < nd; ++d) {  // window positions inside input + explicit pads
        int64_t start = oidx[d] * g.strides[d] - g.pads_begin[d], cnt = 0;
        for (int64_t k = 0; k < g.kernel[d]; ++k) {
          int64_t pos = start + k * g.dilations[d];
          if (pos >= -g.pads_begin[d] && pos < in_sp[d] + g.pads_end[d]) ++cnt;
        }
        padded_count *= cnt;
      }
      for_each_index(g.kernel, [&](const std::vector<int64_t>& kidx) {
        int64_t off = 0, col = 0;
        for (size_t d = 0; d < nd; ++d) {
          int64_t pos = oidx[d] * g.strides[d] - g.pads_begin[d] + kidx[d] * g.dilations[d];
          if (pos < 0 || pos >= in_sp[d]) return;
          off += pos * in_strides[d];
          col += pos * col_strides[d];
        }
        double v = xp[off];
        ++count;
        sum += v;
        if (v > best || best_at < 0) {
          best = v;
          best_at = column_major ? col : off;
        }
      });
      if (is_max) {
        out[size_t(p * ovol + o)] = best;
        indices[size_t(p * ovol + o)] = p * ivol + best_at;
      } else {
        out[size_t(p * ovol + o)] = sum / double(include_pad ? padded_count : count);
      }
      ++o;
    });
  }
  Outputs result{from_doubles(c.out_dtype(0), c.out_dims(0), out)};
  if (is_max && c.outputs.size() > 1) result.push_back(from_ints(DType::kInt64, c.out_dims(0), indices));
  return result;
}

// A channels-last op ([N, spatial..., C]; a Conv's weight [M, kernel..., C/group]):
// the channels-first op between permutations.
Tensor run_channels_last(const KernelContext& c, Tensor (*channels_first)(const KernelContext&)) {
  size_t rank = c.in(0).dims.size();
  std::vector<int64_t> to_first = ir::to_channels_first_perm(rank);
  std::vector<Tensor> permuted_inputs;
  permuted_inputs.reserve(c.inputs.size());
  KernelContext first{c.node, c.inputs, c.outputs};
  for (size_t i = 0; i < c.inputs.size(); ++i)
    if (c.has(i) && c.in(i).dims.size() == rank) first.inputs[i] = &permuted_inputs.emplace_back(permute(c.in(i), to_first));
  first.outputs.resize(1);
  first.outputs[0].shape = ir::permuted(c.outputs.at(0).shape, to_first);
  return permute(channels_first(first), ir::to_channels_last_perm(rank));
}

Tensor run_global_pool(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  int64_t planes = tx.dims[0] * tx.dims[1], vol = ir::checked_numel(spatial_of(tx.dims));
  std::vector<double> x = to_doubles(tx);
  std::vector<double> out(static_cast<size_t>(planes));
  for (int64_t p = 0; p < planes; ++p) {
    double acc = c.node.op == OpKind::kGlobalMaxPool ? -INFINITY : 0.0;
    for (int64_t i = 0; i < vol; ++i)
      acc = c.node.op == OpKind::kGlobalMaxPool ? std::max(acc, x[size_t(p * vol + i)]) : acc + x[size_t(p * vol + i)];
    out[size_t(p)] = c.node.op == OpKind::kGlobalMaxPool ? acc : acc / double(vol);
  }
  return from_doubles(c.out_dtype(0), c.out_dims(0), out);
}

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

Outputs run_nn(const KernelContext& c) {
  switch (c.node.op) {
    case OpKind::kConv: return {run_conv(c)};
    case OpKind::kConvChannelsLast: return {run_channels_last(c, run_conv)};
    case OpKind::kMaxPoolChannelsLast:
      return {run_channels_last(c, [](const KernelContext& first) { return run_pool(first)[0]; })};
    case OpKind::kConvTranspose: return {run_conv_transpose(c)};
    case OpKind::kMaxPool: case OpKind::kAveragePool: return run_pool(c);
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: return {run_global_pool(c)};
    case OpKind::kBatchNormalization: case OpKind::kInstanceNormalization: case OpKind::kLayerNormalization:
    case OpKind::kGroupNormalization:
      return run_norm(c);
    case OpKind::kSoftmax: case OpKind::kLogSoftmax: case OpKind::kHardmax: return {run_softmax(c)};
    default: c.error(ErrorCode::kInternal, "not a neural-network op");
  }
}

}  // namespace kiln::reference
