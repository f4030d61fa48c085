// The pool family: max, average and Lp pooling over windows, the global pools,
// MaxUnpool, and MaxPoolChannelsLast as MaxPool between permutations.
#include <cmath>
#include <limits>

#include "kernels.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

Outputs run_pool(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  bool is_max = c.node.op == OpKind::kMaxPool || c.node.op == OpKind::kMaxPoolChannelsLast;
  bool is_lp = c.node.op == OpKind::kLpPool;
  double power = double(c.attrs().get_int("p", 2));  // LpPool: the norm of the taps inside the input
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
        sum += is_lp ? std::pow(std::fabs(v), power) : v;
        if (v > best || best_at < 0) {
          best = v;
          best_at = column_major ? col : off;
        }
      });
      if (is_max) {
        out[size_t(p * ovol + o)] = best;
        indices[size_t(p * ovol + o)] = p * ivol + best_at;
      } else if (is_lp) {
        out[size_t(p * ovol + o)] = std::pow(sum, 1.0 / power);
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

Tensor run_global_pool(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  OpKind op = c.node.op;
  double power = double(c.attrs().get_int("p", 2));  // GlobalLpPool
  int64_t planes = tx.dims[0] * tx.dims[1], vol = ir::checked_numel(spatial_of(tx.dims));
  std::vector<double> x = to_doubles(tx);
  std::vector<double> out(static_cast<size_t>(planes));
  for (int64_t p = 0; p < planes; ++p) {
    double acc = op == OpKind::kGlobalMaxPool ? -INFINITY : 0.0;
    for (int64_t i = 0; i < vol; ++i) {
      double v = x[size_t(p * vol + i)];
      acc = op == OpKind::kGlobalMaxPool ? std::max(acc, v) : acc + (op == OpKind::kGlobalLpPool ? std::pow(std::fabs(v), power) : v);
    }
    out[size_t(p)] = op == OpKind::kGlobalMaxPool ? acc : op == OpKind::kGlobalLpPool ? std::pow(acc, 1.0 / power) : acc / double(vol);
  }
  return from_doubles(c.out_dtype(0), c.out_dims(0), out);
}

// MaxUnpool: zeros, then X[i] at the flat position I[i] of the unpooled size
// [N, C, (in - 1) * stride - pads + kernel], which sits at the origin of the
// output (output_shape may make it larger). An index outside that size is an error.
Tensor run_max_unpool(const KernelContext& c) {
  const Tensor &tx = c.in(0), &ti = c.in(1);
  if (ti.dims != tx.dims)
    c.error(ErrorCode::kShapeError, "indices ", ir::shape_to_string(ir::shape_of(ti.dims)), " must have X's shape ",
            ir::shape_to_string(ir::shape_of(tx.dims)));
  size_t n = tx.dims.size() - 2;
  auto kernel = c.attrs().get_ints("kernel_shape");
  auto strides = c.attrs().get_ints("strides", std::vector<int64_t>(n, 1));
  auto pads = c.attrs().get_ints("pads", std::vector<int64_t>(2 * n, 0));
  std::vector<int64_t> unpooled{tx.dims[0], tx.dims[1]}, out_dims = c.out_dims(0);
  for (size_t i = 0; i < n; ++i) unpooled.push_back((tx.dims[i + 2] - 1) * strides[i] - pads[i] - pads[n + i] + kernel[i]);
  for (size_t d = 0; d < out_dims.size(); ++d)
    if (out_dims[d] < unpooled[d])
      c.error(ErrorCode::kShapeError, "output_shape ", ir::shape_to_string(ir::shape_of(out_dims)), " is smaller than the unpooled size ",
              ir::shape_to_string(ir::shape_of(unpooled)));
  std::vector<double> x = to_doubles(tx), out(size_t(ir::checked_numel(out_dims)), 0.0);
  std::vector<int64_t> indices = to_ints(ti);
  int64_t total = ir::checked_numel(unpooled);
  auto out_strides = strides_of(out_dims);
  for (size_t i = 0; i < x.size(); ++i) {
    int64_t flat = indices[i];
    if (flat < 0 || flat >= total)
      c.error(ErrorCode::kInvalidArgument, "index ", flat, " at position ", i, " of I is outside the unpooled size ",
              ir::shape_to_string(ir::shape_of(unpooled)), " (", total, " elements)");
    int64_t off = 0;
    for (size_t d = unpooled.size(); d-- > 0;) {
      off += (flat % unpooled[d]) * out_strides[d];
      flat /= unpooled[d];
    }
    out[size_t(off)] = x[i];
  }
  return from_doubles(c.out_dtype(0), out_dims, out);
}

}  // namespace

Kernel pool_kernel(OpKind op) {
  switch (op) {
    case OpKind::kMaxPoolChannelsLast:
      return [](const KernelContext& c) -> Outputs {
        return {run_channels_last(c, [](const KernelContext& first) { return run_pool(first)[0]; })};
      };
    case OpKind::kMaxPool: case OpKind::kAveragePool: case OpKind::kLpPool: return run_pool;
    case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: case OpKind::kGlobalLpPool: return one_output<run_global_pool>;
    case OpKind::kMaxUnpool: return one_output<run_max_unpool>;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
