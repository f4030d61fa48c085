// The movement family: shape changes and data movement (outputs hold input
// elements, or a pad value; BitCast their bytes as another type).
#include <cmath>
#include <numeric>

#include "family.h"

namespace kiln::ir {

namespace {

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

// reduction of ScatterND and ScatterElements: none (opset 11), add and mul (16), max and min (18).
void check_reduction(const Ctx& c) {
  std::string r = c.attrs().get_string("reduction", "none");
  if (r != "none" && r != "add" && r != "mul" && r != "max" && r != "min")
    c.error(ErrorCode::kInvalidModel, "reduction '", r, "' is not none, add, mul, max or min");
}

// The last dim of ScatterND's and GatherND's indices: how many leading data dims an index tuple names.
int64_t index_depth(const Ctx& c, int64_t data_dims_left) {
  const Shape& idx = c.shape(1);
  const Dim& k = idx.back();
  if (!k.is_constant()) c.error(ErrorCode::kUnsupported, "the last dim of the indices ", shape_to_string(idx), " must be a constant");
  if (k.constant() < 1 || k.constant() > data_dims_left)
    c.error(ErrorCode::kShapeError, "indices ", shape_to_string(idx), " index ", k.constant(), " dims; data has ",
            data_dims_left, " to index");
  return k.constant();
}

void check_dims_equal(const Ctx& c, const Shape& got, const Shape& want, const char* what) {
  bool ok = got.size() == want.size();
  for (size_t d = 0; ok && d < got.size(); ++d)
    ok = got[d] == want[d] || !got[d].is_constant() || !want[d].is_constant();
  if (!ok) c.error(ErrorCode::kShapeError, what, " ", shape_to_string(got), " should be ", shape_to_string(want));
}

// ScatterND: updates[indices.shape[:-1] + data.shape[k:]] written into a copy of data.
void infer_scatter_nd(Ctx& c) {
  c.require_dtype(1, {DType::kInt64, DType::kInt32});
  c.require_same_dtype(0, 2);
  c.require_rank(0, 1);
  c.require_rank(1, 1);
  check_reduction(c);
  const Shape &x = c.shape(0), &idx = c.shape(1);
  int64_t k = index_depth(c, c.rank(0));
  Shape want(idx.begin(), idx.end() - 1);
  want.insert(want.end(), x.begin() + k, x.end());
  check_dims_equal(c, c.shape(2), want, "updates");
  c.set(0, c.dtype(0), x);
}

// ScatterElements: indices and updates of one shape, of the data's rank.
void infer_scatter_elements(Ctx& c) {
  c.require_dtype(1, {DType::kInt64, DType::kInt32});
  c.require_same_dtype(0, 2);
  check_reduction(c);
  const Shape &x = c.shape(0), &idx = c.shape(1);
  if (c.rank(0) < 1 || c.rank(0) != c.rank(1))
    c.error(ErrorCode::kShapeError, "data ", shape_to_string(x), " and indices ", shape_to_string(idx),
            " must have the same rank, at least 1");
  int64_t axis = c.axis(c.attrs().get_int("axis", 0), c.rank(0));
  check_dims_equal(c, c.shape(2), idx, "updates");
  for (size_t d = 0; d < x.size(); ++d)
    if (int64_t(d) != axis && x[d].is_constant() && idx[d].is_constant() && idx[d].constant() > x[d].constant())
      c.error(ErrorCode::kShapeError, "indices ", shape_to_string(idx), " are larger than data ", shape_to_string(x), " in dim ", d);
  c.set(0, c.dtype(0), x);
}

// ReverseSequence: one length per batch entry; batch_axis and time_axis are 0 and 1.
void infer_reverse_sequence(Ctx& c) {
  c.require_rank(0, 2);
  c.require_dtype(1, {DType::kInt64});
  c.require_rank(1, 1, 1);
  int64_t batch = c.attrs().get_int("batch_axis", 1), time = c.attrs().get_int("time_axis", 0);
  if (!((batch == 0 && time == 1) || (batch == 1 && time == 0)))
    c.error(ErrorCode::kInvalidModel, "batch_axis ", batch, " and time_axis ", time, " must be 0 and 1, in either order");
  check_equal_dims(c, c.shape(1)[0], c.shape(0)[size_t(batch)], "sequence_lens' length and the batch size");
  c.set(0, c.dtype(0), c.shape(0));
}

// TensorScatter: update written into a copy of past_cache along `axis` (not
// the batch dim 0), at write_indices[batch] on.
void infer_tensor_scatter(Ctx& c) {
  c.require_same_dtype(0, 1);
  c.require_rank(0, 2);
  const Shape &cache = c.shape(0), &update = c.shape(1);
  if (update.size() != cache.size())
    c.error(ErrorCode::kShapeError, "update ", shape_to_string(update), " must have the rank of past_cache ", shape_to_string(cache));
  int64_t axis = c.axis(c.attrs().get_int("axis", -2), c.rank(0));
  if (axis == 0) c.error(ErrorCode::kInvalidModel, "axis 0 is the batch dim; the sequence axis must be another");
  std::string mode = c.attrs().get_string("mode", "linear");
  if (mode != "linear" && mode != "circular") c.error(ErrorCode::kInvalidModel, "mode '", mode, "' is not linear or circular");
  for (size_t d = 0; d < cache.size(); ++d) {
    if (int64_t(d) != axis) check_equal_dims(c, update[d], cache[d], "update's and past_cache's dims off the axis");
    else if (update[d].is_constant() && cache[d].is_constant() && update[d].constant() > cache[d].constant())
      c.error(ErrorCode::kShapeError, "update ", shape_to_string(update), " is longer along axis ", axis, " than past_cache ",
              shape_to_string(cache));
  }
  if (c.has(2)) {
    c.require_dtype(2, {DType::kInt64});
    c.require_rank(2, 1, 1);
    check_equal_dims(c, c.shape(2)[0], cache[0], "write_indices' length and the batch size");
  }
  c.set(0, c.dtype(0), cache);
}

// GatherND: out[indices.shape[:-1] + data.shape[batch_dims + k:]], the first batch_dims dims shared.
// The input's bytes as dtype `to` of the same width (a kiln dtype code, as
// Cast's). A bool made of a byte other than 0 or 1 reads as true.
void infer_bitcast(Ctx& c) {
  std::optional<DType> code = numeric_dtype_from_code(c.attrs().get_int("to", -1));
  if (!code) c.error(ErrorCode::kInvalidModel, "'to' is not a dtype");
  DType from = c.dtype(0), to = *code;
  if (dtype_size(from) != dtype_size(to))
    c.error(ErrorCode::kTypeError, "input 0 of ", dtype_name(from), " (", 8 * dtype_size(from), " bits) cannot be read as ",
            dtype_name(to), " (", 8 * dtype_size(to), " bits); BitCast needs types of one width");
  c.set(0, to, c.shape(0));
}

// [rank, n]: the indices of the n nonzero elements, one row per dim; n
// depends on the data, except where inference sees it (a constant, or the
// reference interpreter's real input). A scalar counts as one dim (numpy).
void infer_nonzero(Ctx& c) {
  int64_t rank = std::max<int64_t>(c.rank(0), 1);
  const TensorData* data = c.input(0).data;
  if (!data) return c.set(0, DType::kInt64, {Dim(rank), c.fresh()});
  std::vector<double> x = read_doubles(*data);
  c.set(0, DType::kInt64, {Dim(rank), Dim(int64_t(std::count_if(x.begin(), x.end(), [](double v) { return v != 0; })))});
}

// Compress: the elements (no axis: of the input flattened) or the slices
// along `axis` where the condition is true. How many depends on the
// condition's values, known only where inference sees them (a constant, or
// the reference interpreter's real input). A true entry past the input's
// length is an error (numpy's compress); false ones there are ignored.
void infer_compress(Ctx& c) {
  c.require_dtype(1, {DType::kBool});
  c.require_rank(1, 1, 1);
  const Shape& x = c.shape(0);
  bool has_axis = c.attrs().has("axis");
  int64_t axis = has_axis ? c.axis(c.attrs().get_int("axis", 0), c.rank(0)) : 0;
  Dim length = has_axis ? x[size_t(axis)] : shape_numel(x);
  std::optional<Dim> count;
  if (auto cond = c.const_ints(1)) {
    int64_t n = 0;
    for (size_t i = 0; i < cond->size(); ++i) {
      if (!(*cond)[i]) continue;
      if (length.is_constant() && int64_t(i) >= length.constant())
        c.error(ErrorCode::kInvalidArgument, "the condition, ", c.input_name(1), ", is true at position ", i,
                ", past the input's length ", length.constant(), has_axis ? str(" along axis ", axis) : std::string(" flattened"));
      ++n;
    }
    count = Dim(n);
  }
  if (!count) count = c.fresh();
  Shape out = has_axis ? x : Shape{*count};
  if (has_axis) out[size_t(axis)] = *count;
  c.set(0, c.dtype(0), out);
}

// Unique: Y (the distinct elements, or slices along `axis`), the index of
// each one's first occurrence, each input element's (slice's) place in Y,
// and each one's count. All but the inverse indices are as long as the
// number of distinct values, which depends on the data.
void infer_unique(Ctx& c) {
  const Shape& x = c.shape(0);
  int64_t sorted = c.attrs().get_int("sorted", 1);
  if (sorted != 0 && sorted != 1) c.error(ErrorCode::kInvalidModel, "sorted ", sorted, " is not 0 or 1");
  Dim distinct = c.fresh();
  Shape y{distinct};
  Dim length = shape_numel(x);
  if (c.attrs().has("axis")) {
    int64_t axis = c.axis(c.attrs().get_int("axis", 0), c.rank(0));
    y = x;
    y[size_t(axis)] = distinct;
    length = x[size_t(axis)];
  }
  c.set(0, c.dtype(0), y);
  c.set(1, DType::kInt64, {distinct});
  c.set(2, DType::kInt64, {length});
  c.set(3, DType::kInt64, {distinct});
}

void infer_gather_nd(Ctx& c) {
  c.require_dtype(1, {DType::kInt64, DType::kInt32});
  c.require_rank(0, 1);
  c.require_rank(1, 1);
  const Shape &x = c.shape(0), &idx = c.shape(1);
  int64_t b = c.attrs().get_int("batch_dims", 0);
  if (b < 0 || b >= std::min(c.rank(0), c.rank(1)))
    c.error(ErrorCode::kInvalidModel, "batch_dims ", b, " must be below the ranks of data ", shape_to_string(x), " and indices ",
            shape_to_string(idx));
  for (size_t d = 0; d < size_t(b); ++d) check_equal_dims(c, x[d], idx[d], "batch dims of data and indices");
  int64_t k = index_depth(c, c.rank(0) - b);
  Shape out(idx.begin(), idx.end() - 1);
  out.insert(out.end(), x.begin() + b + k, x.end());
  c.set(0, c.dtype(0), out);
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

}  // namespace

OpSchema movement_schema(OpKind op) {
  using T = AttrType;
  switch (op) {
    case OpKind::kReshape: return {2, 2, 1, 1, {{"allowzero", T::kInt}}};
    case OpKind::kFlatten: return {1, 1, 1, 1, {{"axis", T::kInt}}};
    case OpKind::kSqueeze: return {1, 2, 1, 1, {}};
    case OpKind::kUnsqueeze: return {2, 2, 1, 1, {}};
    case OpKind::kTranspose: return {1, 1, 1, 1, {{"perm", T::kInts}}};
    case OpKind::kConcat: return {1, -1, 1, 1, {{"axis", T::kInt}}};
    case OpKind::kSplit: return {1, 2, 1, -1, {{"axis", T::kInt}, {"num_outputs", T::kInt}}};
    case OpKind::kSlice: return {3, 5, 1, 1, {}};
    case OpKind::kGather:
    case OpKind::kGatherElements: return {2, 2, 1, 1, {{"axis", T::kInt}}};
    case OpKind::kGatherND: return {2, 2, 1, 1, {{"batch_dims", T::kInt}}};
    case OpKind::kScatterND: return {3, 3, 1, 1, {{"reduction", T::kString}}};
    case OpKind::kScatterElements: return {3, 3, 1, 1, {{"axis", T::kInt}, {"reduction", T::kString}}};
    case OpKind::kExpand:
    case OpKind::kTile: return {2, 2, 1, 1, {}};
    case OpKind::kPad: return {2, 4, 1, 1, {{"mode", T::kString}}};
    case OpKind::kTrilu: return {1, 2, 1, 1, {{"upper", T::kInt}}};
    case OpKind::kResize:
      return {1, 4, 1, 1,
              {{"antialias", T::kInt}, {"axes", T::kInts}, {"coordinate_transformation_mode", T::kString},
               {"cubic_coeff_a", T::kFloat}, {"exclude_outside", T::kInt}, {"extrapolation_value", T::kFloat, true},
               {"keep_aspect_ratio_policy", T::kString}, {"mode", T::kString}, {"nearest_mode", T::kString}}};
    case OpKind::kDepthToSpace: return {1, 1, 1, 1, {{"blocksize", T::kInt}, {"mode", T::kString}}};
    case OpKind::kSpaceToDepth: return {1, 1, 1, 1, {{"blocksize", T::kInt}}};
    case OpKind::kNonZero: return OpSchema{};
    case OpKind::kCompress: return {2, 2, 1, 1, {{"axis", T::kInt}}};
    case OpKind::kUnique: return {1, 1, 1, 4, {{"axis", T::kInt}, {"sorted", T::kInt}}};
    case OpKind::kBitCast: return {1, 1, 1, 1, {{"to", T::kInt}}};
    case OpKind::kReverseSequence: return {2, 2, 1, 1, {{"batch_axis", T::kInt}, {"time_axis", T::kInt}}};
    case OpKind::kTensorScatter: return {2, 3, 1, 1, {{"axis", T::kInt}, {"mode", T::kString}}};
    default: return {0, 0, 0, 0, {}, false};
  }
}

void infer_movement(Ctx& c) {
  switch (c.node().op) {
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
    case OpKind::kGatherND: infer_gather_nd(c); break;
    case OpKind::kScatterND: infer_scatter_nd(c); break;
    case OpKind::kScatterElements: infer_scatter_elements(c); break;
    case OpKind::kExpand: infer_expand(c); break;
    case OpKind::kTile: infer_tile(c); break;
    case OpKind::kPad: infer_pad(c); break;
    case OpKind::kTrilu:
      c.require_rank(0, 2);
      if (c.has(1)) c.require_scalar(1);
      c.set(0, c.dtype(0), c.shape(0));
      break;
    case OpKind::kResize: infer_resize(c); break;
    case OpKind::kDepthToSpace: infer_depth_space(c, true); break;
    case OpKind::kSpaceToDepth: infer_depth_space(c, false); break;
    case OpKind::kNonZero: infer_nonzero(c); break;
    case OpKind::kCompress: infer_compress(c); break;
    case OpKind::kUnique: infer_unique(c); break;
    case OpKind::kBitCast: infer_bitcast(c); break;
    case OpKind::kReverseSequence: infer_reverse_sequence(c); break;
    case OpKind::kTensorScatter: infer_tensor_scatter(c); break;
    default: no_inference(c);
  }
}

}  // namespace kiln::ir
