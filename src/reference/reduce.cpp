// Reductions (Reduce*, ArgMax/ArgMin), CumSum, CumProd and TopK, accumulating
// in float64 (the scans of integers in int64).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

// Splits dims around `axis` into outer * len * inner.
struct AxisSplit {
  int64_t outer, len, inner;
};
AxisSplit split_at(const std::vector<int64_t>& dims, int64_t axis) {
  return {ir::checked_numel({dims.begin(), dims.begin() + axis}), dims[size_t(axis)],
          ir::checked_numel({dims.begin() + axis + 1, dims.end()})};
}

Tensor run_reduce_op(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  OpKind op = c.node.op;
  size_t r = tx.dims.size();
  std::vector<int64_t> axes = c.has(1) ? to_ints(c.in(1)) : std::vector<int64_t>{};
  bool noop = c.attrs().get_int("noop_with_empty_axes", 0) != 0;
  std::vector<bool> reduced(r, axes.empty() && !noop);
  for (int64_t a : axes) reduced[size_t(normalize_axis(c, a, r))] = true;
  // Map every input element to its output slot.
  std::vector<int64_t> kept_dims;
  for (size_t d = 0; d < r; ++d) kept_dims.push_back(reduced[d] ? 1 : tx.dims[d]);
  auto out_strides = strides_of(kept_dims);
  int64_t out_n = ir::checked_numel(kept_dims);
  std::vector<double> x = to_doubles(tx);
  // Max and Min of nothing: the type's lowest and highest value (bool: false and true; ReduceMax-20 takes bools).
  bool boolean = tx.dtype == DType::kBool;
  double init = op == OpKind::kReduceMax   ? (boolean ? 0.0 : -INFINITY)
                : op == OpKind::kReduceMin ? (boolean ? 1.0 : INFINITY)
                : op == OpKind::kReduceProd ? 1.0
                                            : 0.0;
  std::vector<double> acc(size_t(out_n), init), peak(size_t(out_n), -INFINITY);
  std::vector<int64_t> slot(x.size());
  size_t i = 0;
  for_each_index(tx.dims, [&](const std::vector<int64_t>& idx) {
    int64_t o = 0;
    for (size_t d = 0; d < r; ++d) o += (reduced[d] ? 0 : idx[d]) * out_strides[d];
    slot[i++] = o;
  });
  if (is_integer(tx.dtype) && (op == OpKind::kReduceMax || op == OpKind::kReduceMin)) {  // exact beyond 2^53
    IntOrder order(tx.dtype);
    std::vector<int64_t> xi = to_ints(tx), best = std::vector<int64_t>(size_t(out_n));
    std::vector<bool> seen(size_t(out_n), false);
    for (size_t j = 0; j < xi.size(); ++j) {
      size_t o = size_t(slot[j]);
      best[o] = !seen[o] ? xi[j] : op == OpKind::kReduceMax ? order.max(best[o], xi[j]) : order.min(best[o], xi[j]);
      seen[o] = true;
    }
    for (size_t o = 0; o < best.size(); ++o)  // nothing reduced: the type's lowest or highest value
      if (!seen[o]) return from_doubles(c.out_dtype(0), c.out_dims(0), acc);
    return from_ints(c.out_dtype(0), c.out_dims(0), best);
  }
  if (op == OpKind::kReduceLogSumExp)
    for (size_t j = 0; j < x.size(); ++j) peak[size_t(slot[j])] = std::max(peak[size_t(slot[j])], x[j]);
  for (size_t j = 0; j < x.size(); ++j) {
    double& a = acc[size_t(slot[j])];
    double v = x[j];
    switch (op) {
      case OpKind::kReduceMax: a = std::isnan(v) || std::isnan(a) ? NAN : std::max(a, v); break;
      case OpKind::kReduceMin: a = std::isnan(v) || std::isnan(a) ? NAN : std::min(a, v); break;
      case OpKind::kReduceProd: a *= v; break;
      case OpKind::kReduceL1: a += std::fabs(v); break;
      case OpKind::kReduceL2: case OpKind::kReduceSumSquare: a += v * v; break;
      case OpKind::kReduceLogSumExp: a += std::exp(v - peak[size_t(slot[j])]); break;
      default: a += v; break;
    }
  }
  int64_t count = out_n ? int64_t(x.size()) / out_n : 0;
  for (size_t o = 0; o < acc.size(); ++o) {
    double& a = acc[o];
    if (op == OpKind::kReduceMean) a /= double(count);
    else if (op == OpKind::kReduceL2) a = std::sqrt(a);
    else if (op == OpKind::kReduceLogSum) a = std::log(a);
    else if (op == OpKind::kReduceLogSumExp) a = std::log(a) + peak[o];
  }
  if (!is_floating(tx.dtype) && (op == OpKind::kReduceMean)) for (double& a : acc) a = std::floor(a);
  return from_doubles(c.out_dtype(0), c.out_dims(0), acc);
}

Tensor run_arg(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  int64_t axis = normalize_axis(c, c.attrs().get_int("axis", 0), tx.dims.size());
  bool last = c.attrs().get_int("select_last_index", 0) != 0, is_max = c.node.op == OpKind::kArgMax;
  AxisSplit s = split_at(tx.dims, axis);
  std::vector<int64_t> out(size_t(s.outer * s.inner));
  // Integers compare exactly (as int64, uint64 on its bits), floats as float64
  // (NaN compares false: it neither wins nor loses).
  auto arg = [&](const auto& x, auto less, auto less_equal) {
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t i = 0; i < s.inner; ++i) {
        int64_t best = 0;
        for (int64_t k = 1; k < s.len; ++k) {
          auto v = x[size_t((o * s.len + k) * s.inner + i)], b = x[size_t((o * s.len + best) * s.inner + i)];
          bool better = is_max ? (last ? less_equal(b, v) : less(b, v)) : (last ? less_equal(v, b) : less(v, b));
          if (better) best = k;
        }
        out[size_t(o * s.inner + i)] = best;
      }
  };
  if (is_floating(tx.dtype)) {
    arg(to_doubles(tx), [](double a, double b) { return a < b; }, [](double a, double b) { return a <= b; });
  } else {
    IntOrder order(tx.dtype);
    arg(to_ints(tx), [order](int64_t a, int64_t b) { return order.less(a, b); },
        [order](int64_t a, int64_t b) { return !order.less(b, a); });
  }
  return from_ints(DType::kInt64, c.out_dims(0), out);
}

// The running sums (CumSum) or products (CumProd) along the axis; exclusive
// leaves each element out of its own result. Integers wrap as in C.
template <class T>
std::vector<T> scan(const KernelContext& c, const std::vector<T>& x, const std::vector<int64_t>& dims) {
  int64_t axis = normalize_axis(c, to_ints(c.in(1)).at(0), dims.size());
  bool exclusive = c.attrs().get_int("exclusive", 0), reverse = c.attrs().get_int("reverse", 0);
  bool product = c.node.op == OpKind::kCumProd;
  auto combine = [product](T a, T b) -> T {
    if constexpr (std::is_integral_v<T>) return T(product ? uint64_t(a) * uint64_t(b) : uint64_t(a) + uint64_t(b));
    else return product ? a * b : a + b;
  };
  AxisSplit s = split_at(dims, axis);
  std::vector<T> out(x.size());
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      T acc = product ? T(1) : T(0);
      for (int64_t step = 0; step < s.len; ++step) {
        int64_t k = reverse ? s.len - 1 - step : step;
        size_t at = size_t((o * s.len + k) * s.inner + i);
        if (exclusive) {
          out[at] = acc;
          acc = combine(acc, x[at]);
        } else {
          acc = combine(acc, x[at]);
          out[at] = acc;
        }
      }
    }
  return out;
}

Tensor run_scan(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  if (is_floating(tx.dtype)) return from_doubles(tx.dtype, tx.dims, scan(c, to_doubles(tx), tx.dims));
  return from_ints(tx.dtype, tx.dims, scan(c, to_ints(tx), tx.dims));
}

Outputs run_topk(const KernelContext& c) {
  const Tensor& tx = c.in(0);
  int64_t axis = normalize_axis(c, c.attrs().get_int("axis", -1), tx.dims.size());
  bool largest = c.attrs().get_int("largest", 1) != 0;
  int64_t k = to_ints(c.in(1)).at(0);
  AxisSplit s = split_at(tx.dims, axis);
  if (k < 0 || k > s.len) c.error(ErrorCode::kShapeError, "K=", k, " is outside [0, ", s.len, "]");
  std::vector<int64_t> dims = tx.dims;
  dims[size_t(axis)] = k;
  std::vector<int64_t> indices(size_t(ir::checked_numel(dims)));
  std::vector<int64_t> order(size_t(s.len));
  // Integers compare exactly (uint64 on its bits), floats as float64; the
  // values are then copied from the input by index, whatever the dtype.
  auto select = [&](const auto& x, auto less) {
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t i = 0; i < s.inner; ++i) {
        auto at = [&](int64_t j) { return x[size_t((o * s.len + j) * s.inner + i)]; };
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
          return largest ? less(at(b), at(a)) : less(at(a), at(b));  // stable: equal values keep the lower index first
        });
        for (int64_t j = 0; j < k; ++j) indices[size_t((o * k + j) * s.inner + i)] = order[size_t(j)];
      }
  };
  if (is_floating(tx.dtype)) {
    select(to_doubles(tx), [](double a, double b) { return a < b; });
  } else {
    IntOrder int_order(tx.dtype);
    select(to_ints(tx), [int_order](int64_t a, int64_t b) { return int_order.less(a, b); });
  }
  std::vector<int64_t> in_strides = strides_of(tx.dims);
  size_t at = 0;
  Tensor values = remap(tx, dims, [&](const std::vector<int64_t>& idx) {
    int64_t src = 0;
    for (size_t d = 0; d < idx.size(); ++d) src += (int64_t(d) == axis ? indices[at] : idx[d]) * in_strides[d];
    ++at;
    return src;
  });
  return {values, from_ints(DType::kInt64, dims, indices)};
}

}  // namespace

Kernel reduce_kernel(OpKind op) {
  switch (op) {
    case OpKind::kReduceMean: case OpKind::kReduceSum: case OpKind::kReduceMax: case OpKind::kReduceMin:
    case OpKind::kReduceProd: case OpKind::kReduceL1: case OpKind::kReduceL2: case OpKind::kReduceLogSum:
    case OpKind::kReduceLogSumExp: case OpKind::kReduceSumSquare:
      return one_output<run_reduce_op>;
    case OpKind::kArgMax: case OpKind::kArgMin: return one_output<run_arg>;
    case OpKind::kCumSum: case OpKind::kCumProd: return one_output<run_scan>;
    case OpKind::kTopK: return run_topk;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
