// The conv family: convolution (im2col + float64 GEMM), transposed
// convolution, ConvChannelsLast as Conv between permutations, the stateful
// causal depthwise convolution of CausalConvWithState, and DeformConv.

#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "kiln/ir/quantization.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

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

// The integer convolution of (x - x_zero) by (w - w_zero) (inputs ix, iw,
// ixz, iwz; absent zero points are 0; w's may be one per output channel),
// exact (int64) and wrapped to int32 as ONNX allows. Padding reads 0 after
// the shift, as ONNX's reference pads the shifted input.
std::vector<int64_t> integer_conv(const KernelContext& c, size_t ix, size_t iw, size_t ixz, size_t iwz) {
  const Tensor &tx = c.in(ix), &tw = c.in(iw);
  int64_t n = tx.dims[0], cin = tx.dims[1], m = tw.dims[0];
  int64_t group = c.attrs().get_int("group", 1), cg = cin / group, mg = m / group;
  std::vector<int64_t> in_sp = spatial_of(tx.dims), k_sp = spatial_of(tw.dims);
  ir::WindowGeometry g = ir::window_geometry(c.node, in_sp, k_sp);
  int64_t kvol = ir::checked_numel(k_sp), ovol = ir::checked_numel(g.output), ivol = ir::checked_numel(in_sp);
  std::vector<int64_t> x = to_ints(tx), w = to_ints(tw);
  int64_t x_zero = c.has(ixz) ? to_ints(c.in(ixz))[0] : 0;
  std::vector<int64_t> w_zero = c.has(iwz) ? to_ints(c.in(iwz)) : std::vector<int64_t>{0};
  auto in_strides = strides_of(in_sp);
  std::vector<int64_t> out(size_t(n * m * ovol), 0);
  std::vector<int64_t> oidx, kidx;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < m; ++ch) {
      int64_t gi = ch / mg, wz = w_zero[w_zero.size() == 1 ? 0 : size_t(ch)];
      int64_t o = 0;
      for_each_index(g.output, [&](const std::vector<int64_t>& op) {
        int64_t acc = 0;
        for (int64_t ci = 0; ci < cg; ++ci) {
          const int64_t* xc = x.data() + (b * cin + gi * cg + ci) * ivol;
          const int64_t* wc = w.data() + (ch * cg + ci) * kvol;
          int64_t k = 0;
          for_each_index(k_sp, [&](const std::vector<int64_t>& kp) {
            int64_t off = 0;
            for (size_t d = 0; d < kp.size() && off >= 0; ++d) {
              int64_t pos = op[d] * g.strides[d] - g.pads_begin[d] + kp[d] * g.dilations[d];
              off = pos < 0 || pos >= in_sp[d] ? -1 : off + pos * in_strides[d];
            }
            if (off >= 0) acc += (xc[off] - x_zero) * (wc[k] - wz);
            ++k;
          });
        }
        out[size_t((b * m + ch) * ovol + o++)] = acc;
      });
    }
  return out;
}

Tensor run_conv_integer(const KernelContext& c) {
  std::vector<int64_t> acc = integer_conv(c, 0, 1, 2, 3);
  for (int64_t& v : acc) v = int32_t(v);
  return from_ints(DType::kInt32, c.out_dims(0), acc);
}

// QLinearConv as ONNX's reference computes it: the int32 convolution plus
// bias, times x_scale * w_scale / y_scale (float32), plus y's zero point,
// saturated and rounded half to even.
Tensor run_qlinear_conv(const KernelContext& c) {
  std::vector<int64_t> acc = integer_conv(c, 0, 3, 2, 5);
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t m = dims[1], ovol = ir::checked_numel(spatial_of(dims));
  std::vector<int64_t> bias = c.has(8) ? to_ints(c.in(8)) : std::vector<int64_t>(size_t(m), 0);
  std::vector<double> w_scale = to_doubles(c.in(4));
  float x_scale = float(scalar_double(c.in(1))), y_scale = float(scalar_double(c.in(6)));
  double y_zero = scalar_double(c.in(7));
  ir::QuantRange range = ir::quant_range(c.out_dtype(0));
  std::vector<int64_t> y(acc.size());
  for (size_t i = 0; i < acc.size(); ++i) {
    int64_t ch = int64_t(i) / ovol % m;
    float scale = x_scale * float(w_scale[w_scale.size() == 1 ? 0 : size_t(ch)]) / y_scale;
    double r = std::nearbyint(double(int32_t(acc[i] + bias[size_t(ch)])) * double(scale) + y_zero);
    y[i] = std::isnan(r) ? range.lo : int64_t(std::clamp(r, double(range.lo), double(range.hi)));
  }
  return from_ints(c.out_dtype(0), dims, y);
}

// Each channel's taps slide over past_state (zeros without one) followed by the
// input; present_state is the last k - 1 positions of that sequence.
Outputs run_causal_conv(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  int64_t rows = tx.dims[0] * tx.dims[1], channels = tx.dims[1], len = tx.dims[2], k = c.in(1).dims[2], past = k - 1;
  std::vector<double> x = to_doubles(tx), w = to_doubles(c.in(1));
  std::vector<double> bias = c.has(2) ? to_doubles(c.in(2)) : std::vector<double>(size_t(channels), 0.0);
  std::vector<double> state = c.has(3) ? to_doubles(c.in(3)) : std::vector<double>(size_t(rows * past), 0.0);
  bool silu = c.attrs().get_string("activation", "none") != "none";
  std::vector<double> out(x.size()), present(state.size()), seq(size_t(past + len));
  for (int64_t row = 0; row < rows; ++row) {
    int64_t ch = row % channels;
    std::copy_n(state.begin() + row * past, past, seq.begin());
    std::copy_n(x.begin() + row * len, len, seq.begin() + past);
    for (int64_t t = 0; t < len; ++t) {
      double acc = bias[size_t(ch)];
      for (int64_t i = 0; i < k; ++i) acc += w[size_t(ch * k + i)] * seq[size_t(t + i)];
      out[size_t(row * len + t)] = silu ? acc / (1 + std::exp(-acc)) : acc;
    }
    std::copy_n(seq.begin() + len, past, present.begin() + row * past);
  }
  Outputs result{from_doubles(c.out_dtype(0), c.out_dims(0), out)};
  if (c.outputs.size() > 1) result.push_back(from_doubles(c.out_dtype(1), c.out_dims(1), present));
  return result;
}

// DeformConv, 2-D: each tap (ki, kj) of output (oh, ow) samples channel ic
// of X at (oh * stride - pad + ki * dilation + dy, likewise + dx), the
// offsets (dy, dx) and the mask of the tap in ic's offset group; bilinearly,
// corners outside X reading 0 (ONNX's GridSample, zeros, align_corners 1).
Tensor run_deform_conv(const KernelContext& c) {
  const Tensor &tx = c.in(0), &tw = c.in(1);
  int64_t n = tx.dims[0], cin = tx.dims[1], ih = tx.dims[2], iw = tx.dims[3];
  int64_t m = tw.dims[0], kh = tw.dims[2], kw = tw.dims[3];
  ir::WindowGeometry g = ir::window_geometry(c.node, {ih, iw}, {kh, kw});
  int64_t oh = g.output[0], ow = g.output[1];
  int64_t group = c.attrs().get_int("group", 1), offset_group = c.attrs().get_int("offset_group", 1);
  // Shape inference, run on these inputs' shapes, has checked offset and mask against the output.
  int64_t cg = cin / group, mg = m / group, per_offset_group = cin / offset_group, taps = offset_group * kh * kw;
  std::vector<double> x = to_doubles(tx), w = to_doubles(tw), offset = to_doubles(c.in(2));
  std::vector<double> bias = c.has(3) ? to_doubles(c.in(3)) : std::vector<double>(size_t(m), 0.0);
  std::vector<double> mask = c.has(4) ? to_doubles(c.in(4)) : std::vector<double>();
  auto sample = [&](const double* plane, double y, double xpos) {
    double y0 = std::floor(y), x0 = std::floor(xpos), ly = y - y0, lx = xpos - x0, v = 0;
    for (int dy = 0; dy < 2; ++dy)
      for (int dx = 0; dx < 2; ++dx) {
        double r = y0 + dy, col = x0 + dx;
        if (!(r >= 0 && r < double(ih) && col >= 0 && col < double(iw))) continue;  // NaN offsets too
        v += (dy ? ly : 1 - ly) * (dx ? lx : 1 - lx) * plane[int64_t(r) * iw + int64_t(col)];
      }
    return v;
  };
  std::vector<double> out(size_t(n * m * oh * ow));
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oc = 0; oc < m; ++oc)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double acc = bias[size_t(oc)];
          int64_t gi = oc / mg;
          for (int64_t ci = 0; ci < cg; ++ci) {
            int64_t ic = gi * cg + ci, og = ic / per_offset_group;
            const double* plane = x.data() + (b * cin + ic) * ih * iw;
            for (int64_t ki = 0; ki < kh; ++ki)
              for (int64_t kj = 0; kj < kw; ++kj) {
                int64_t tap = (og * kh + ki) * kw + kj;
                double dy = offset[size_t(((b * taps + tap) * 2 * oh + i) * ow + j)];
                double dx = offset[size_t((((b * taps + tap) * 2 + 1) * oh + i) * ow + j)];
                double y = double(i * g.strides[0] - g.pads_begin[0] + ki * g.dilations[0]) + dy;
                double xpos = double(j * g.strides[1] - g.pads_begin[1] + kj * g.dilations[1]) + dx;
                double scale = mask.empty() ? 1.0 : mask[size_t(((b * taps + tap) * oh + i) * ow + j)];
                acc += w[size_t(((oc * cg + ci) * kh + ki) * kw + kj)] * scale * sample(plane, y, xpos);
              }
          }
          out[size_t(((b * m + oc) * oh + i) * ow + j)] = acc;
        }
  return from_doubles(c.out_dtype(0), c.out_dims(0), out);
}

}  // namespace

Kernel conv_kernel(OpKind op) {
  switch (op) {
    case OpKind::kConv: return one_output<run_conv>;
    case OpKind::kConvChannelsLast:
      return [](const KernelContext& c) -> Outputs { return {run_channels_last(c, run_conv)}; };
    case OpKind::kConvTranspose: return one_output<run_conv_transpose>;
    case OpKind::kConvInteger: return one_output<run_conv_integer>;
    case OpKind::kQLinearConv: return one_output<run_qlinear_conv>;
    case OpKind::kCausalConvWithState: return run_causal_conv;
    case OpKind::kDeformConv: return one_output<run_deform_conv>;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
