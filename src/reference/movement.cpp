// The movement family: shape changes and data movement. Most are an index
// remapping: each output element copies one input element, whatever the dtype.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>

#include "kernels.h"

namespace kiln::reference {

using ir::OpKind;

namespace {

int64_t offset_of(const std::vector<int64_t>& idx, const std::vector<int64_t>& strides) {
  int64_t off = 0;
  for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides[d];
  return off;
}

Tensor run_transpose(const KernelContext& c) {
  const Tensor& x = c.in(0);
  std::vector<int64_t> perm(x.dims.size());
  std::iota(perm.rbegin(), perm.rend(), 0);
  perm = c.attrs().get_ints("perm", perm);
  for (auto& p : perm)
    if (p < 0) p += int64_t(perm.size());
  return permute(x, perm);
}

Tensor run_concat(const KernelContext& c) {
  std::vector<int64_t> dims = c.out_dims(0);
  int64_t axis = normalize_axis(c, c.attrs().get_int("axis", 0), dims.size());
  int64_t outer = ir::checked_numel({dims.begin(), dims.begin() + axis});
  int64_t inner = ir::checked_numel({dims.begin() + axis + 1, dims.end()});
  if (is_string(c.in(0).dtype)) {
    Tensor out;
    out.dtype = DType::kString;
    out.dims = dims;
    for (int64_t o = 0; o < outer; ++o)
      for (const Tensor* t : c.inputs) {
        size_t row = size_t(t->dims[size_t(axis)] * inner);
        auto first = t->strings.begin() + std::ptrdiff_t(size_t(o) * row);
        out.strings.insert(out.strings.end(), first, first + std::ptrdiff_t(row));
      }
    return out;
  }
  size_t elem = dtype_size(c.in(0).dtype);
  std::vector<std::byte> bytes(size_t(ir::checked_numel(dims)) * elem);
  int64_t out_row = dims[size_t(axis)] * inner, at = 0;
  for (const Tensor* t : c.inputs) {
    int64_t row = t->dims[size_t(axis)] * inner;
    if (row == 0) continue;  // empty inputs contribute nothing (and may have no storage)
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(bytes.data() + size_t(o * out_row + at) * elem, t->data.data() + size_t(o * row) * elem, size_t(row) * elem);
    at += row;
  }
  Tensor out;
  out.dtype = c.in(0).dtype;
  out.dims = dims;
  out.data = Buffer::from_bytes(std::move(bytes));
  return out;
}

Outputs run_split(const KernelContext& c) {
  const Tensor& x = c.in(0);
  int64_t axis = normalize_axis(c, c.attrs().get_int("axis", 0), x.dims.size());
  auto st = strides_of(x.dims);
  Outputs out;
  int64_t start = 0;
  for (size_t i = 0; i < c.outputs.size(); ++i) {
    std::vector<int64_t> dims = c.out_dims(i);
    out.push_back(remap(x, dims, [&](const std::vector<int64_t>& idx) {
      return offset_of(idx, st) + start * st[size_t(axis)];
    }));
    start += dims[size_t(axis)];
  }
  return out;
}

Tensor run_slice(const KernelContext& c) {
  const Tensor& x = c.in(0);
  size_t r = x.dims.size();
  std::vector<int64_t> starts = to_ints(c.in(1)), ends = to_ints(c.in(2));
  std::vector<int64_t> axes(starts.size()), steps(starts.size(), 1);
  std::iota(axes.begin(), axes.end(), 0);
  if (c.has(3)) axes = to_ints(c.in(3));
  if (c.has(4)) steps = to_ints(c.in(4));
  std::vector<int64_t> begin(r, 0), step(r, 1);
  for (size_t i = 0; i < axes.size(); ++i) {
    size_t a = size_t(normalize_axis(c, axes[i], r));
    int64_t n = x.dims[a], s = starts[i];
    step[a] = steps[i];
    if (s < 0) s += n;
    begin[a] = steps[i] > 0 ? std::clamp<int64_t>(s, 0, n) : std::clamp<int64_t>(s, 0, n - 1);
  }
  auto st = strides_of(x.dims);
  return remap(x, c.out_dims(0), [&](const std::vector<int64_t>& idx) {
    int64_t off = 0;
    for (size_t d = 0; d < r; ++d) off += (begin[d] + idx[d] * step[d]) * st[d];
    return off;
  });
}

Tensor run_gather(const KernelContext& c) {
  const Tensor &x = c.in(0), &ti = c.in(1);
  int64_t axis = normalize_axis(c, c.attrs().get_int("axis", 0), x.dims.size());
  std::vector<int64_t> indices = to_ints(ti);
  int64_t n = x.dims[size_t(axis)];
  for (auto& i : indices) {
    if (i < -n || i >= n) c.error(ErrorCode::kShapeError, "index ", i, " is out of range for axis size ", n);
    if (i < 0) i += n;
  }
  auto st = strides_of(x.dims);
  size_t ir_ = ti.dims.size();
  auto ist = strides_of(ti.dims);
  return remap(x, c.out_dims(0), [&](const std::vector<int64_t>& idx) {
    int64_t off = 0;
    for (int64_t d = 0; d < axis; ++d) off += idx[size_t(d)] * st[size_t(d)];
    int64_t flat = 0;
    for (size_t d = 0; d < ir_; ++d) flat += idx[size_t(axis) + d] * ist[d];
    off += indices[size_t(flat)] * st[size_t(axis)];
    for (size_t d = size_t(axis) + 1; d < x.dims.size(); ++d) off += idx[d + ir_ - 1] * st[d];
    return off;
  });
}

Tensor run_gather_elements(const KernelContext& c) {
  const Tensor &x = c.in(0), &ti = c.in(1);
  int64_t axis = normalize_axis(c, c.attrs().get_int("axis", 0), x.dims.size());
  std::vector<int64_t> indices = to_ints(ti);
  int64_t n = x.dims[size_t(axis)];
  auto st = strides_of(x.dims);
  size_t i = 0;
  return remap(x, ti.dims, [&](const std::vector<int64_t>& idx) {
    int64_t v = indices[i++];
    if (v < -n || v >= n) c.error(ErrorCode::kShapeError, "index ", v, " is out of range for axis size ", n);
    if (v < 0) v += n;
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d) off += (int64_t(d) == axis ? v : idx[d]) * st[d];
    return off;
  });
}

// An index into a dim of size n: negative ones count from the end; out of range is an error.
int64_t wrap_index(const KernelContext& c, int64_t i, int64_t n, size_t dim) {
  if (i < -n || i >= n) c.error(ErrorCode::kShapeError, "index ", i, " is out of range for dim ", dim, " of size ", n);
  return i < 0 ? i + n : i;
}

// The data offsets of ScatterND's and GatherND's index tuples: tuple r of the
// last dim of `indices` names dims [first, first + k) of `dims`.
std::vector<int64_t> tuple_offsets(const KernelContext& c, const Tensor& indices, const std::vector<int64_t>& dims, size_t first) {
  std::vector<int64_t> idx = to_ints(indices), offsets;
  size_t k = size_t(indices.dims.back());
  auto st = strides_of(dims);
  for (size_t r = 0; r * k < idx.size(); ++r) {
    int64_t off = 0;
    for (size_t t = 0; t < k; ++t) off += wrap_index(c, idx[r * k + t], dims[first + t], first + t) * st[first + t];
    offsets.push_back(off);
  }
  return offsets;
}

// A copy of data with update i combined into element targets[i], in order:
// reduction none replaces (the last of duplicate targets wins), the others
// reduce in float64.
Tensor scatter(const KernelContext& c, const std::vector<int64_t>& targets) {
  const Tensor &data = c.in(0), &updates = c.in(2);
  std::string reduction = c.attrs().get_string("reduction", "none");
  if (reduction == "none") {
    size_t elem = dtype_size(data.dtype);
    std::vector<std::byte> bytes(size_t(data.numel()) * elem);
    if (!bytes.empty()) std::memcpy(bytes.data(), data.data.data(), bytes.size());
    for (size_t i = 0; i < targets.size(); ++i)
      std::memcpy(bytes.data() + size_t(targets[i]) * elem, updates.data.data() + i * elem, elem);
    Tensor out;
    out.dtype = data.dtype;
    out.dims = data.dims;
    out.data = Buffer::from_bytes(std::move(bytes));
    return out;
  }
  std::vector<double> out = to_doubles(data), u = to_doubles(updates);
  for (size_t i = 0; i < targets.size(); ++i) {
    double& o = out[size_t(targets[i])];
    if (reduction == "add") o += u[i];
    else if (reduction == "mul") o *= u[i];
    else if (reduction == "max") o = std::max(o, u[i]);
    else o = std::min(o, u[i]);
  }
  return from_doubles(data.dtype, data.dims, out);
}

// Dims shape inference could not compare (symbols) must agree at run time:
// the updates' shape, and ScatterElements' indices within the data off the axis.
void check_scatter_dims(const KernelContext& c) {
  const Tensor &data = c.in(0), &ti = c.in(1), &updates = c.in(2);
  std::vector<int64_t> want = ti.dims;
  if (c.node.op == OpKind::kScatterND) {
    want.pop_back();
    want.insert(want.end(), data.dims.begin() + ti.dims.back(), data.dims.end());
  } else {
    int64_t axis = normalize_axis(c, c.attrs().get_int("axis", 0), data.dims.size());
    for (size_t d = 0; d < data.dims.size(); ++d)
      if (int64_t(d) != axis && ti.dims[d] > data.dims[d])
        c.error(ErrorCode::kShapeError, "indices ", ir::shape_to_string(ir::shape_of(ti.dims)), " are larger than data ",
                ir::shape_to_string(ir::shape_of(data.dims)), " in dim ", d);
  }
  if (updates.dims != want)
    c.error(ErrorCode::kShapeError, "updates ", ir::shape_to_string(ir::shape_of(updates.dims)), " should be ",
            ir::shape_to_string(ir::shape_of(want)));
}

// ScatterND: update row r (a slice of the dims after the first k) goes to the
// data slice that index tuple r names.
Tensor run_scatter_nd(const KernelContext& c) {
  check_scatter_dims(c);
  const Tensor& data = c.in(0);
  std::vector<int64_t> rows = tuple_offsets(c, c.in(1), data.dims, 0), targets;
  int64_t slice = ir::checked_numel({data.dims.begin() + c.in(1).dims.back(), data.dims.end()});
  for (int64_t base : rows)
    for (int64_t j = 0; j < slice; ++j) targets.push_back(base + j);
  return scatter(c, targets);
}

// ScatterElements: update at position p goes to data position p with the axis coordinate indices[p].
Tensor run_scatter_elements(const KernelContext& c) {
  check_scatter_dims(c);
  const Tensor &data = c.in(0), &ti = c.in(1);
  int64_t axis = normalize_axis(c, c.attrs().get_int("axis", 0), data.dims.size());
  std::vector<int64_t> indices = to_ints(ti), targets;
  auto st = strides_of(data.dims);
  for_each_index(ti.dims, [&](const std::vector<int64_t>& idx) {
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d)
      off += (int64_t(d) == axis ? wrap_index(c, indices[targets.size()], data.dims[d], d) : idx[d]) * st[d];
    targets.push_back(off);
  });
  return scatter(c, targets);
}

// ReverseSequence: along the time axis, the first lengths[b] steps of batch
// entry b in reverse order, the rest as they are.
Tensor run_reverse_sequence(const KernelContext& c) {
  const Tensor& x = c.in(0);
  std::vector<int64_t> lengths = to_ints(c.in(1));
  size_t batch_axis = size_t(c.attrs().get_int("batch_axis", 1)), time_axis = size_t(c.attrs().get_int("time_axis", 0));
  int64_t time = x.dims[time_axis];
  if (int64_t(lengths.size()) != x.dims[batch_axis])
    c.error(ErrorCode::kShapeError, "sequence_lens has ", lengths.size(), " lengths for a batch of ", x.dims[batch_axis]);
  for (size_t b = 0; b < lengths.size(); ++b)
    if (lengths[b] < 0 || lengths[b] > time)
      c.error(ErrorCode::kInvalidArgument, "sequence_lens[", b, "] = ", lengths[b], " is outside [0, ", time, "], the time axis");
  auto st = strides_of(x.dims);
  return remap(x, x.dims, [&](const std::vector<int64_t>& idx) {
    int64_t t = idx[time_axis], len = lengths[size_t(idx[batch_axis])];
    std::vector<int64_t> src = idx;
    if (t < len) src[time_axis] = len - 1 - t;
    return offset_of(src, st);
  });
}

// TensorScatter: a copy of past_cache with update's steps written along the
// axis from write_indices[batch] on (0 without them), modulo the cache's
// length in circular mode; a linear write past the cache is an error.
Tensor run_tensor_scatter(const KernelContext& c) {
  const Tensor &cache = c.in(0), &update = c.in(1);
  size_t axis = size_t(normalize_axis(c, c.attrs().get_int("axis", -2), cache.dims.size()));
  bool circular = c.attrs().get_string("mode", "linear") == "circular";
  for (size_t d = 0; d < cache.dims.size(); ++d)
    if (d == axis ? update.dims[d] > cache.dims[d] : update.dims[d] != cache.dims[d])
      c.error(ErrorCode::kShapeError, "update ", ir::shape_to_string(ir::shape_of(update.dims)), " does not fit past_cache ",
              ir::shape_to_string(ir::shape_of(cache.dims)), " (axis ", axis, ")");
  std::vector<int64_t> starts(size_t(cache.dims[0]), 0);
  if (c.has(2)) {
    starts = to_ints(c.in(2));
    if (int64_t(starts.size()) != cache.dims[0])
      c.error(ErrorCode::kShapeError, "write_indices has ", starts.size(), " entries for a batch of ", cache.dims[0]);
  }
  int64_t max_seq = cache.dims[axis];
  size_t elem = dtype_size(cache.dtype);
  std::vector<std::byte> bytes(size_t(cache.numel()) * elem);
  if (!bytes.empty()) std::memcpy(bytes.data(), cache.data.data(), bytes.size());
  auto st = strides_of(cache.dims);
  const std::byte* src = update.data.data();
  for_each_index(update.dims, [&](const std::vector<int64_t>& idx) {
    int64_t pos = starts[size_t(idx[0])] + idx[axis];
    if (circular) pos = ((pos % max_seq) + max_seq) % max_seq;
    else if (pos < 0 || pos >= max_seq)
      c.error(ErrorCode::kInvalidArgument, "write_indices[", idx[0], "] = ", starts[size_t(idx[0])], " writes step ", idx[axis],
              " at ", pos, ", outside the cache's ", max_seq, " (mode linear)");
    std::vector<int64_t> at = idx;
    at[axis] = pos;
    std::memcpy(bytes.data() + size_t(offset_of(at, st)) * elem, src, elem);
    src += elem;
  });
  Tensor out;
  out.dtype = cache.dtype;
  out.dims = cache.dims;
  out.data = Buffer::from_bytes(std::move(bytes));
  return out;
}

// GatherND: output row r (over indices.shape[:-1]) copies the data slice that
// index tuple r names within its batch (the first batch_dims dims).
Tensor run_gather_nd(const KernelContext& c) {
  const Tensor &data = c.in(0), &ti = c.in(1);
  size_t b = size_t(c.attrs().get_int("batch_dims", 0)), k = size_t(ti.dims.back());
  for (size_t d = 0; d < b; ++d)
    if (data.dims[d] != ti.dims[d])
      c.error(ErrorCode::kShapeError, "batch dim ", d, " of data ", ir::shape_to_string(ir::shape_of(data.dims)), " and indices ",
              ir::shape_to_string(ir::shape_of(ti.dims)), " differ");
  std::vector<int64_t> batch_dims(data.dims.begin() + int64_t(b), data.dims.end());
  std::vector<int64_t> rows = tuple_offsets(c, ti, batch_dims, 0);
  int64_t batches = ir::checked_numel({data.dims.begin(), data.dims.begin() + int64_t(b)});
  int64_t per_batch = int64_t(rows.size()) / std::max<int64_t>(batches, 1), batch_stride = ir::checked_numel(batch_dims);
  int64_t slice = ir::checked_numel({batch_dims.begin() + int64_t(k), batch_dims.end()});
  int64_t flat = 0;
  return remap(data, c.out_dims(0), [&](const std::vector<int64_t>&) {
    int64_t r = flat / slice, j = flat % slice;
    ++flat;
    return (r / per_batch) * batch_stride + rows[size_t(r)] + j;
  });
}

Tensor run_pad(const KernelContext& c) {
  const Tensor& x = c.in(0);
  size_t r = x.dims.size();
  std::vector<int64_t> pads = to_ints(c.in(1));
  std::vector<int64_t> axes(r);
  std::iota(axes.begin(), axes.end(), 0);
  if (c.has(3)) axes = to_ints(c.in(3));
  std::vector<int64_t> before(r, 0);
  for (size_t i = 0; i < axes.size(); ++i) before[size_t(normalize_axis(c, axes[i], r))] = pads[i];
  std::string mode = c.attrs().get_string("mode", "constant");
  Tensor fill = from_doubles(x.dtype, {}, {c.has(2) ? scalar_double(c.in(2)) : 0.0});
  auto st = strides_of(x.dims);
  for (size_t d = 0; d < r; ++d)
    if (x.dims[d] == 0 && mode != "constant") c.error(ErrorCode::kShapeError, "cannot ", mode, "-pad an empty axis");
  return remap(
      x, c.out_dims(0),
      [&](const std::vector<int64_t>& idx) -> int64_t {
        int64_t off = 0;
        for (size_t d = 0; d < r; ++d) {
          int64_t n = x.dims[d], j = idx[d] - before[d];
          if (j < 0 || j >= n) {
            if (mode == "constant") return -1;
            if (mode == "edge") j = std::clamp<int64_t>(j, 0, n - 1);
            else if (mode == "wrap") j = ((j % n) + n) % n;
            else {  // reflect without repeating the edge
              int64_t period = 2 * (n - 1);
              if (period == 0) j = 0;
              else {
                j = ((j % period) + period) % period;
                if (j >= n) j = period - j;
              }
            }
          }
          off += j * st[d];
        }
        return off;
      },
      fill.data.data());
}

// Row r of the output holds dim r of each nonzero element's index, the
// elements in row-major order.
Tensor run_nonzero(const KernelContext& c) {
  const Tensor& x = c.in(0);
  std::vector<double> v = ir::read_doubles(x);
  std::vector<int64_t> dims = x.dims.empty() ? std::vector<int64_t>{1} : x.dims;
  std::vector<int64_t> hits;
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] != 0) hits.push_back(int64_t(i));
  int64_t n = int64_t(hits.size()), rank = int64_t(dims.size());
  std::vector<int64_t> out(size_t(rank * n));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t r = rank - 1, rest = hits[size_t(j)]; r >= 0; --r) {
      out[size_t(r * n + j)] = rest % dims[size_t(r)];
      rest /= dims[size_t(r)];
    }
  Tensor t;
  t.dtype = DType::kInt64;
  t.dims = {rank, n};
  t.data = Buffer::copy_of(out.data(), out.size() * sizeof(int64_t));
  return t;
}

// The input as [outer, len, inner] around `axis` (no axis: [1, numel, 1]).
struct AxisView {
  int64_t outer = 1, len = 1, inner = 1, axis = 0;
  bool has_axis = false;
};

AxisView axis_view(const KernelContext& c, const std::vector<int64_t>& dims) {
  AxisView a;
  a.has_axis = c.attrs().has("axis");
  if (!a.has_axis) {
    a.len = ir::checked_numel(dims);
    return a;
  }
  a.axis = normalize_axis(c, c.attrs().get_int("axis", 0), dims.size());
  a.outer = ir::checked_numel({dims.begin(), dims.begin() + a.axis});
  a.len = dims[size_t(a.axis)];
  a.inner = ir::checked_numel({dims.begin() + a.axis + 1, dims.end()});
  return a;
}

// The slices at `picked` positions along the view's axis, in that order: an
// [outer, picked, inner] tensor shaped as `dims` (whose axis dim is picked's size).
Tensor pick_slices(const Tensor& x, const AxisView& a, const std::vector<int64_t>& picked, std::vector<int64_t> dims) {
  int64_t n = int64_t(picked.size());
  std::vector<int64_t> flat{a.outer, n, a.inner};
  Tensor t = remap(x, flat, [&](const std::vector<int64_t>& idx) { return (idx[0] * a.len + picked[size_t(idx[1])]) * a.inner + idx[2]; });
  return with_dims(t, std::move(dims));
}

Tensor run_compress(const KernelContext& c) {
  const Tensor& x = c.in(0);
  std::vector<int64_t> cond = to_ints(c.in(1));
  AxisView a = axis_view(c, x.dims);
  std::vector<int64_t> picked;
  for (size_t i = 0; i < cond.size(); ++i) {
    if (!cond[i]) continue;
    if (int64_t(i) >= a.len)
      c.error(ErrorCode::kInvalidArgument, "the condition is true at position ", i, ", past the input's length ", a.len,
              a.has_axis ? str(" along axis ", a.axis) : std::string(" flattened"));
    picked.push_back(int64_t(i));
  }
  std::vector<int64_t> dims = a.has_axis ? x.dims : std::vector<int64_t>{int64_t(picked.size())};
  dims[size_t(a.axis)] = int64_t(picked.size());
  return pick_slices(x, a, picked, dims);
}

// Unique's order of values (numpy's): NaN after every number and equal to
// every NaN, -0 equal to 0.
template <class T>
int value_order(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    bool na = std::isnan(a), nb = std::isnan(b);
    if (na || nb) return int(na) - int(nb);
  }
  return a < b ? -1 : b < a ? 1 : 0;
}

struct UniqueGroups {
  std::vector<int64_t> first, inverse, counts;  // per group, per input slice, per group
};

// Groups the slices of `v` (viewed by `a`) by value, ordered by value
// (sorted) or by first occurrence.
template <class T>
UniqueGroups unique_groups(const std::vector<T>& v, const AxisView& a, bool sorted) {
  auto compare = [&](int64_t p, int64_t q) {
    for (int64_t o = 0; o < a.outer; ++o)
      for (int64_t i = 0; i < a.inner; ++i)
        if (int r = value_order(v[size_t((o * a.len + p) * a.inner + i)], v[size_t((o * a.len + q) * a.inner + i)])) return r;
    return 0;
  };
  std::vector<int64_t> perm(size_t(a.len));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int64_t p, int64_t q) { return compare(p, q) < 0; });  // ties by position
  UniqueGroups g;
  g.inverse.resize(size_t(a.len));
  for (size_t r = 0; r < perm.size(); ++r) {
    if (r == 0 || compare(perm[r - 1], perm[r]) != 0) {
      g.first.push_back(perm[r]);
      g.counts.push_back(0);
    }
    g.inverse[size_t(perm[r])] = int64_t(g.first.size()) - 1;
    ++g.counts.back();
  }
  if (sorted) return g;
  std::vector<int64_t> order(g.first.size()), place(g.first.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t p, int64_t q) { return g.first[size_t(p)] < g.first[size_t(q)]; });
  UniqueGroups by_first;
  for (size_t k = 0; k < order.size(); ++k) {
    place[size_t(order[k])] = int64_t(k);
    by_first.first.push_back(g.first[size_t(order[k])]);
    by_first.counts.push_back(g.counts[size_t(order[k])]);
  }
  for (int64_t& i : g.inverse) i = place[size_t(i)];
  by_first.inverse = std::move(g.inverse);
  return by_first;
}

Outputs run_unique(const KernelContext& c) {
  const Tensor& x = c.in(0);
  AxisView a = axis_view(c, x.dims);
  bool sorted = c.attrs().get_int("sorted", 1) != 0;
  auto ordered_as_uint64 = [](std::vector<int64_t> v) { return std::vector<uint64_t>(v.begin(), v.end()); };
  UniqueGroups g = is_floating(x.dtype)           ? unique_groups(to_doubles(x), a, sorted)
                   : x.dtype == DType::kUInt64 ? unique_groups(ordered_as_uint64(to_ints(x)), a, sorted)
                                                : unique_groups(to_ints(x), a, sorted);
  int64_t n = int64_t(g.first.size());
  std::vector<int64_t> dims = a.has_axis ? x.dims : std::vector<int64_t>{n};
  dims[size_t(a.axis)] = n;
  return {pick_slices(x, a, g.first, dims), from_ints(DType::kInt64, {n}, g.first),
          from_ints(DType::kInt64, {a.len}, g.inverse), from_ints(DType::kInt64, {n}, g.counts)};
}

Tensor run_trilu(const KernelContext& c) {
  const Tensor& x = c.in(0);
  int64_t k = c.has(1) ? to_ints(c.in(1)).at(0) : 0;
  bool upper = c.attrs().get_int("upper", 1) != 0;
  size_t r = x.dims.size();
  Tensor zero = from_doubles(x.dtype, {}, {0.0});
  auto st = strides_of(x.dims);
  return remap(
      x, x.dims,
      [&](const std::vector<int64_t>& idx) -> int64_t {
        int64_t diff = idx[r - 1] - idx[r - 2];
        bool keep = upper ? diff >= k : diff <= k;
        return keep ? offset_of(idx, st) : -1;
      },
      zero.data.data());
}

Tensor run_depth_space(const KernelContext& c) {
  const Tensor& x = c.in(0);
  int64_t b = c.attrs().get_int("blocksize", 1);
  bool crd = c.attrs().get_string("mode", "DCR") == "CRD";
  auto st = strides_of(x.dims);
  std::vector<int64_t> dims = c.out_dims(0);
  if (c.node.op == OpKind::kDepthToSpace) {
    int64_t oc = dims[1];
    return remap(x, dims, [&](const std::vector<int64_t>& i) {
      int64_t by = i[2] % b, bx = i[3] % b;
      int64_t ch = crd ? i[1] * b * b + by * b + bx : (by * b + bx) * oc + i[1];
      return i[0] * st[0] + ch * st[1] + (i[2] / b) * st[2] + (i[3] / b) * st[3];
    });
  }
  int64_t ic = x.dims[1];
  return remap(x, dims, [&](const std::vector<int64_t>& i) {
    int64_t block = i[1] / ic, ch = i[1] % ic, by = block / b, bx = block % b;
    return i[0] * st[0] + ch * st[1] + (i[2] * b + by) * st[2] + (i[3] * b + bx) * st[3];
  });
}

// Reshape, Flatten, Squeeze, Unsqueeze: same bytes, new dims.
Tensor run_reshape(const KernelContext& c) { return with_dims(c.in(0), c.out_dims(0)); }

// The same bytes under the output's dtype; a bool is 1 wherever its byte is not 0.
Tensor run_bitcast(const KernelContext& c) {
  Tensor out = c.in(0);
  out.dtype = c.out_dtype(0);
  if (out.dtype == DType::kBool) {
    std::vector<std::byte> bytes(out.data.bytes().begin(), out.data.bytes().end());
    for (std::byte& b : bytes) b = std::byte(b != std::byte(0));
    out.data = Buffer::from_bytes(std::move(bytes));
  }
  return out;
}

Tensor run_expand(const KernelContext& c) {
  const Tensor& x = c.in(0);
  std::vector<int64_t> dims = c.out_dims(0);
  auto st = broadcast_strides(x.dims, dims);
  return remap(x, dims, [&](const std::vector<int64_t>& idx) { return offset_of(idx, st); });
}

Tensor run_tile(const KernelContext& c) {
  const Tensor& x = c.in(0);
  auto st = strides_of(x.dims);
  return remap(x, c.out_dims(0), [&](const std::vector<int64_t>& idx) {
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d) off += (idx[d] % x.dims[d]) * st[d];
    return off;
  });
}

// ---- Resize ---------------------------------------------------------------------

struct Taps {
  std::vector<int64_t> index;  // input coordinate per tap (clamped)
  std::vector<double> weight;
};

// `out` is the output length; `out_exact` is in * scale before flooring, which
// align_corners and tf_crop_and_resize divide by (as the ONNX reference does).
double original_coordinate(const std::string& mode, double x, double scale, int64_t in, int64_t out, double roi_start,
                           double roi_end) {
  double out_exact = double(in) * scale;
  if (mode == "half_pixel") return (x + 0.5) / scale - 0.5;
  if (mode == "pytorch_half_pixel") return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
  if (mode == "align_corners") return out == 1 ? 0.0 : x * double(in - 1) / (out_exact - 1);
  if (mode == "asymmetric") return x / scale;
  if (mode == "tf_half_pixel_for_nn") return (x + 0.5) / scale;
  if (mode == "half_pixel_symmetric") {
    double adjustment = double(out) / (double(in) * scale);
    double center = double(in) / 2;
    return center * (1 - adjustment) + (x + 0.5) / scale - 0.5;
  }
  if (mode == "tf_crop_and_resize")
    return out > 1 ? roi_start * double(in - 1) + x * (roi_end - roi_start) * double(in - 1) / (out_exact - 1)
                   : 0.5 * (roi_start + roi_end) * double(in - 1);
  fail(ErrorCode::kInvalidModel, "coordinate_transformation_mode '", mode, "' is unknown");
}

std::vector<double> cubic_coefficients(double t, double a) {
  auto far = [a](double s) { return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a; };    // 1 < |s| < 2
  auto near = [a](double s) { return ((a + 2) * s - (a + 3)) * s * s + 1; };         // |s| <= 1
  return {far(t + 1), near(t), near(1 - t), far(2 - t)};
}

// Resize-18's antialiasing filter: when downscaling by `scale` < 1, the linear
// or cubic kernel stretched by 1 / scale over 2 * ceil(1 / scale) (linear) or
// twice that (cubic) taps, normalized to sum 1, as the ONNX reference computes
// them; at an integer coordinate the window is the one left of it.
Taps antialias_taps(bool cubic, double xo, double scale, int64_t in, double a, bool exclude_outside) {
  scale = std::min(scale, 1.0);
  double base = std::floor(xo), ratio = xo - base;
  if (ratio == 0) ratio = 1, base -= 1;
  auto kernel = [&](double x) {
    x = std::abs(x);
    if (!cubic) return std::max(0.0, 1 - x);
    return x <= 1 ? ((a + 2) * x - (a + 3)) * x * x + 1 : x < 2 ? ((a * x - 5 * a) * x + 8 * a) * x - 4 * a : 0.0;
  };
  int64_t start = int64_t(std::floor((cubic ? -2.0 : -1.0) / scale)) + 1, count = 2 - 2 * start;
  Taps t;
  double all = 0, inside = 0;
  for (int64_t k = 0; k < count; ++k) {
    int64_t pos = int64_t(base) + start + k;
    double w = kernel(scale * (double(start + k) - ratio));
    all += w;
    if (exclude_outside && (pos < 0 || pos >= in)) w = 0;
    inside += w;
    t.index.push_back(std::clamp<int64_t>(pos, 0, in - 1));
    t.weight.push_back(w);
  }
  double divisor = exclude_outside ? inside : all;
  if (divisor != 0)
    for (double& w : t.weight) w /= divisor;
  return t;
}

Tensor run_resize(const KernelContext& c) {
  const Tensor& x = c.in(0);
  size_t r = x.dims.size();
  std::vector<int64_t> out_dims = c.out_dims(0);
  const ir::Attributes& a = c.attrs();
  std::string mode = a.get_string("mode", "nearest");
  std::string coord = a.get_string("coordinate_transformation_mode", "half_pixel");
  std::string nearest = a.get_string("nearest_mode", "round_prefer_floor");
  double cubic_a = a.get_float("cubic_coeff_a", -0.75), extrapolation = a.get_float("extrapolation_value", 0.0);
  bool exclude_outside = a.get_int("exclude_outside", 0) != 0, antialias = a.get_int("antialias", 0) != 0;
  std::vector<int64_t> axes(r);
  std::iota(axes.begin(), axes.end(), 0);
  axes = a.get_ints("axes", axes);
  for (auto& ax : axes) ax = normalize_axis(c, ax, r);
  std::vector<double> scale(r, 1.0), roi_start(r, 0.0), roi_end(r, 1.0);
  std::vector<double> given_scales = c.has(2) && c.in(2).numel() ? to_doubles(c.in(2)) : std::vector<double>{};
  bool by_sizes = c.has(3) && c.in(3).numel();
  std::string policy = a.get_string("keep_aspect_ratio_policy", "stretch");
  for (size_t i = 0; i < axes.size(); ++i) {
    size_t d = size_t(axes[i]);
    scale[d] = by_sizes ? double(out_dims[d]) / double(x.dims[d]) : given_scales.at(i);
  }
  if (by_sizes && policy != "stretch") {
    std::vector<int64_t> sizes = to_ints(c.in(3));
    double s = policy == "not_larger" ? 1e300 : 0;
    for (size_t i = 0; i < axes.size(); ++i) {
      double v = double(sizes[i]) / double(x.dims[size_t(axes[i])]);
      s = policy == "not_larger" ? std::min(s, v) : std::max(s, v);
    }
    for (int64_t ax : axes) scale[size_t(ax)] = s;
  }
  if (coord == "tf_crop_and_resize" && c.has(1) && c.in(1).numel()) {
    std::vector<double> roi = to_doubles(c.in(1));
    size_t n = roi.size() / 2;
    for (size_t i = 0; i < n; ++i) {
      size_t d = n == r ? i : size_t(axes[i]);
      roi_start[d] = roi[i];
      roi_end[d] = roi[n + i];
    }
  }
  // Per output dim, per output coordinate: the taps to blend (empty: extrapolate).
  std::vector<std::vector<Taps>> taps(r);
  for (size_t d = 0; d < r; ++d) {
    int64_t in = x.dims[d];
    for (int64_t o = 0; o < out_dims[d]; ++o) {
      Taps t;
      double xo = original_coordinate(coord, double(o), scale[d], in, out_dims[d], roi_start[d], roi_end[d]);
      if (coord == "tf_crop_and_resize" && (xo < 0 || xo > double(in - 1))) {
        taps[d].push_back(t);
        continue;
      }
      if (antialias && mode != "nearest") {  // nearest has no filter to stretch
        t = antialias_taps(mode == "cubic", xo, scale[d], in, cubic_a, exclude_outside);
      } else if (mode == "nearest") {
        double v;
        if (nearest == "round_prefer_ceil") v = std::round(xo);
        else if (nearest == "floor") v = std::floor(xo);
        else if (nearest == "ceil") v = std::ceil(xo);
        else v = (xo - std::floor(xo) == 0.5) ? std::floor(xo) : std::round(xo);
        t.index.push_back(std::clamp<int64_t>(int64_t(v), 0, in - 1));
        t.weight.push_back(1.0);
      } else {
        double base = std::floor(xo), frac = xo - base;
        std::vector<double> w;
        int64_t first;
        if (mode == "linear") {
          w = {1 - frac, frac};
          first = int64_t(base);
        } else {
          w = cubic_coefficients(frac, cubic_a);
          first = int64_t(base) - 1;
        }
        double total = 0;
        for (size_t k = 0; k < w.size(); ++k) {
          int64_t pos = first + int64_t(k);
          if (exclude_outside && (pos < 0 || pos >= in)) w[k] = 0;
          total += w[k];
        }
        for (size_t k = 0; k < w.size(); ++k) {
          t.index.push_back(std::clamp<int64_t>(first + int64_t(k), 0, in - 1));
          t.weight.push_back(exclude_outside && total != 0 ? w[k] / total : w[k]);
        }
      }
      taps[d].push_back(t);
    }
  }
  std::vector<double> xv = to_doubles(x), out;
  out.reserve(size_t(ir::checked_numel(out_dims)));
  auto st = strides_of(x.dims);
  for_each_index(out_dims, [&](const std::vector<int64_t>& idx) {
    std::vector<const Taps*> tp(r);
    for (size_t d = 0; d < r; ++d) {
      tp[d] = &taps[d][size_t(idx[d])];
      if (tp[d]->index.empty()) {
        out.push_back(extrapolation);
        return;
      }
    }
    std::vector<int64_t> counts(r);
    for (size_t d = 0; d < r; ++d) counts[d] = int64_t(tp[d]->index.size());
    double sum = 0;
    for_each_index(counts, [&](const std::vector<int64_t>& k) {
      double w = 1;
      int64_t off = 0;
      for (size_t d = 0; d < r; ++d) {
        w *= tp[d]->weight[size_t(k[d])];
        off += tp[d]->index[size_t(k[d])] * st[d];
      }
      sum += w * xv[size_t(off)];
    });
    out.push_back(sum);
  });
  return from_doubles(x.dtype, out_dims, out);
}

}  // namespace

Tensor permute(const Tensor& t, const std::vector<int64_t>& perm) {
  auto st = strides_of(t.dims);
  std::vector<int64_t> pst, dims;
  for (int64_t p : perm) {
    pst.push_back(st[size_t(p)]);
    dims.push_back(t.dims[size_t(p)]);
  }
  return remap(t, dims, [&](const std::vector<int64_t>& idx) { return offset_of(idx, pst); });
}

Kernel movement_kernel(OpKind op) {
  switch (op) {
    case OpKind::kReshape: case OpKind::kFlatten: case OpKind::kSqueeze: case OpKind::kUnsqueeze:
      return one_output<run_reshape>;
    case OpKind::kTranspose: return one_output<run_transpose>;
    case OpKind::kConcat: return one_output<run_concat>;
    case OpKind::kSplit: return run_split;
    case OpKind::kSlice: return one_output<run_slice>;
    case OpKind::kGather: return one_output<run_gather>;
    case OpKind::kGatherElements: return one_output<run_gather_elements>;
    case OpKind::kGatherND: return one_output<run_gather_nd>;
    case OpKind::kScatterND: return one_output<run_scatter_nd>;
    case OpKind::kScatterElements: return one_output<run_scatter_elements>;
    case OpKind::kExpand: return one_output<run_expand>;
    case OpKind::kTile: return one_output<run_tile>;
    case OpKind::kPad: return one_output<run_pad>;
    case OpKind::kTrilu: return one_output<run_trilu>;
    case OpKind::kNonZero: return one_output<run_nonzero>;
    case OpKind::kCompress: return one_output<run_compress>;
    case OpKind::kUnique: return run_unique;
    case OpKind::kBitCast: return one_output<run_bitcast>;
    case OpKind::kResize: return one_output<run_resize>;
    case OpKind::kDepthToSpace: case OpKind::kSpaceToDepth: return one_output<run_depth_space>;
    case OpKind::kReverseSequence: return one_output<run_reverse_sequence>;
    case OpKind::kTensorScatter: return one_output<run_tensor_scatter>;
    default: return nullptr;
  }
}

}  // namespace kiln::reference
