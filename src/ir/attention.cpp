// The Attention op's geometry: view programs over its inputs, evaluated
// symbolically for shape inference and concretely (with strides) for the
// runtime and the reference interpreter.
#include <algorithm>
#include <numeric>

#include "kiln/error.h"
#include "kiln/ir/attention.h"

namespace kiln::ir {

namespace {

struct Step {
  ViewStep kind;
  std::vector<int64_t> args;
};

[[noreturn]] void bad(const Node& node, std::string_view attr, const std::string& what) {
  fail(ErrorCode::kInvalidModel, "node '", node.name, "' (Attention): ", attr, ": ", what);
}

std::vector<Step> decode(const Node& node, std::string_view attr) {
  std::vector<int64_t> flat = node.attrs.get_ints(attr);
  std::vector<Step> steps;
  for (size_t i = 0; i < flat.size();) {
    if (i + 2 > flat.size() || flat[i] < 0 || flat[i] > 3 || flat[i + 1] < 0 || flat[i + 1] > 16 ||
        i + 2 + size_t(flat[i + 1]) > flat.size())
      bad(node, attr, str("step at ", i, " is malformed"));
    Step step{ViewStep(flat[i]), {flat.begin() + long(i) + 2, flat.begin() + long(i) + 2 + flat[i + 1]}};
    if (step.kind == ViewStep::kPick && step.args.size() != 3) bad(node, attr, "a pick step takes axis, index and keep");
    if (step.kind == ViewStep::kNarrow && step.args.size() != 3) bad(node, attr, "a narrow step takes axis, start and length");
    steps.push_back(std::move(step));
    i += 2 + size_t(flat[i + 1]);
  }
  return steps;
}

Dim product(const std::vector<Dim>& dims) { return shape_numel(dims); }
int64_t product(const std::vector<int64_t>& dims) { return checked_numel(dims); }
Dim quotient(const Dim& a, const Dim& b) { return floor_div(a, b); }
int64_t quotient(int64_t a, int64_t b) { return b == 0 ? 0 : a / b; }
std::optional<int64_t> known(const Dim& d) { return d.is_constant() ? std::optional<int64_t>(d.constant()) : std::nullopt; }
std::optional<int64_t> known(int64_t d) { return d; }

// The dims after one step (dims only; strides are the concrete caller's).
template <class D>
std::vector<D> step_dims(const Node& node, std::string_view attr, const Step& step, const std::vector<D>& dims) {
  switch (step.kind) {
    case ViewStep::kReshape: {
      std::vector<D> out;
      int unknown = -1;
      for (size_t i = 0; i < step.args.size(); ++i) {
        if (step.args[i] == -1 && unknown < 0) unknown = int(i);
        else if (step.args[i] < 0) bad(node, attr, "a reshape has a negative dim or more than one -1");
        out.push_back(D(step.args[i] < 0 ? 1 : step.args[i]));
      }
      if (unknown >= 0) out[size_t(unknown)] = quotient(product(dims), product(out));
      if (product(out) != product(dims)) bad(node, attr, "a reshape changes the element count");
      return out;
    }
    case ViewStep::kTranspose: {
      std::vector<int64_t> sorted = step.args;
      std::sort(sorted.begin(), sorted.end());
      for (size_t i = 0; i < sorted.size(); ++i)
        if (sorted[i] != int64_t(i) || sorted.size() != dims.size()) bad(node, attr, "a transpose perm does not fit the rank");
      return permuted(dims, step.args);
    }
    case ViewStep::kPick: {
      int64_t axis = step.args[0], index = step.args[1];
      if (axis < 0 || axis >= int64_t(dims.size()) || index < 0) bad(node, attr, "a pick's axis or index is out of range");
      if (auto n = known(dims[size_t(axis)]); n && index >= *n) bad(node, attr, str("index ", index, " is outside a dim of ", *n));
      std::vector<D> out = dims;
      if (step.args[2] != 0) out[size_t(axis)] = D(1);
      else out.erase(out.begin() + axis);
      return out;
    }
    case ViewStep::kNarrow: {
      int64_t axis = step.args[0], start = step.args[1], length = step.args[2];
      if (axis < 0 || axis >= int64_t(dims.size()) || start < 0 || length < 0) bad(node, attr, "a narrow's axis or range is out of range");
      if (auto n = known(dims[size_t(axis)]); n && (start > *n || length > *n - start))
        bad(node, attr, str("range ", start, "+", length, " is outside a dim of ", *n));
      std::vector<D> out = dims;
      out[size_t(axis)] = D(length);
      return out;
    }
  }
  bad(node, attr, "unknown step");
}

struct StridedView {
  int64_t offset = 0;
  std::vector<int64_t> dims, strides;
};

// While a program runs, a dim is a list of atoms (size, stride), outermost
// first: a reshape that merges dims no single stride steps through (heads
// merged into a transposed batch) keeps them as atoms, and a later reshape that
// splits them back at an atom boundary makes one strided dim again. An empty
// list is a dim of size 1.
struct Atom {
  int64_t size, stride;
};
using Atoms = std::vector<Atom>;

Atoms simplified(const Atoms& atoms) {
  Atoms out;
  for (const Atom& a : atoms) {
    if (a.size == 1) continue;
    if (!out.empty() && out.back().stride == a.size * a.stride) {
      out.back() = {out.back().size * a.size, a.stride};
      continue;
    }
    out.push_back(a);
  }
  return out;
}

// The atoms of `from`, in order, regrouped into dims of these sizes; an atom
// splits where a dim boundary falls inside it. False when a boundary does not
// divide an atom (no strided view can read that order).
bool regroup(const std::vector<Atoms>& from, const std::vector<int64_t>& dims, std::vector<Atoms>& out) {
  Atoms flat;
  for (const Atoms& d : from) flat.insert(flat.end(), d.begin(), d.end());
  flat = simplified(flat);
  size_t next = 0;
  out.assign(dims.size(), {});
  for (size_t i = 0; i < dims.size(); ++i) {
    for (int64_t left = dims[i]; left > 1;) {
      if (next == flat.size()) return false;
      Atom& a = flat[next];
      if (a.size <= left) {
        if (left % a.size != 0) return false;
        out[i].push_back(a);
        left /= a.size;
        ++next;
      } else {
        if (a.size % left != 0) return false;
        out[i].push_back({left, a.stride * (a.size / left)});
        a.size /= left;
        left = 1;
      }
    }
  }
  return next == flat.size();
}

StridedView apply_concrete(const Node& node, std::string_view attr, const std::vector<int64_t>& input) {
  int64_t offset = 0;
  std::vector<int64_t> dims = input, dense = strides_of(input);
  std::vector<Atoms> atoms(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) atoms[i] = simplified({{dims[i], dense[i]}});
  for (const Step& step : decode(node, attr)) {
    std::vector<int64_t> next = step_dims(node, attr, step, dims);
    switch (step.kind) {
      case ViewStep::kReshape: {
        if (checked_numel(next) == 0) {  // nothing is read: any strides do
          std::vector<int64_t> strides = strides_of(next);
          atoms.assign(next.size(), {});
          for (size_t i = 0; i < next.size(); ++i) atoms[i] = {{next[i], strides[i]}};
          break;
        }
        std::vector<Atoms> regrouped;
        if (!regroup(atoms, next, regrouped)) bad(node, attr, str("a reshape to ", shape_to_string(shape_of(next)), " is not a view of these dims"));
        atoms = std::move(regrouped);
        break;
      }
      case ViewStep::kTranspose:
        atoms = permuted(atoms, step.args);
        break;
      case ViewStep::kPick: {
        size_t axis = size_t(step.args[0]);
        if (step.args[1] >= dims[axis]) bad(node, attr, str("index ", step.args[1], " is outside a dim of ", dims[axis]));
        int64_t index = step.args[1];
        for (auto a = atoms[axis].rbegin(); a != atoms[axis].rend(); ++a) {
          offset += (index % a->size) * a->stride;
          index /= a->size;
        }
        if (step.args[2] == 0) atoms.erase(atoms.begin() + long(axis));
        else atoms[axis] = {};
        break;
      }
      case ViewStep::kNarrow: {
        size_t axis = size_t(step.args[0]);
        int64_t start = step.args[1], length = step.args[2];
        if (start + length > dims[axis]) bad(node, attr, str("range ", start, "+", length, " is outside a dim of ", dims[axis]));
        Atoms& d = atoms[axis];
        if (d.empty() || dims[axis] == 0) break;  // nothing of it is read
        // A range of the outermost atom only: whole runs of the inner ones.
        int64_t inner = dims[axis] / d[0].size;
        if (start % inner != 0 || length % inner != 0) bad(node, attr, str("range ", start, "+", length, " cuts through merged dims"));
        offset += start / inner * d[0].stride;
        d[0].size = length / inner;
        d = simplified(d);
        break;
      }
    }
    dims = next;
  }
  StridedView v{offset, dims, std::vector<int64_t>(dims.size(), 0)};
  for (size_t i = 0; i < dims.size(); ++i) {
    Atoms d = simplified(atoms[i]);
    if (d.size() > 1) bad(node, attr, str("dim ", i, " merges dims that no single stride steps through"));
    if (!d.empty()) v.strides[i] = d[0].stride;
  }
  return v;
}

// [offset, sb, sh, ss, sd] of a [H, S, D] or [B, H, S, D] view; swap: given as [.., D, S].
std::array<int64_t, 5> operand(const Node& node, std::string_view attr, const StridedView& v, bool swap) {
  if (v.dims.size() != 3 && v.dims.size() != 4) bad(node, attr, "the operand is not [H, S, D] or [B, H, S, D]");
  std::vector<int64_t> s = v.strides;
  if (s.size() == 3) s.insert(s.begin(), 0);
  if (swap) std::swap(s[2], s[3]);
  return {v.offset, s[0], s[1], s[2], s[3]};
}

std::vector<int64_t> out_perm(const Node& node, size_t rank) {
  std::vector<int64_t> perm = node.attrs.get_ints("out_perm");
  if (perm.empty()) {
    perm.resize(rank);
    std::iota(perm.begin(), perm.end(), 0);
  }
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    if (sorted[i] != int64_t(i) || sorted.size() != rank) bad(node, "out_perm", "not a permutation of the output's dims");
  return perm;
}

}  // namespace

Shape apply_view_program(const Node& node, std::string_view attr, const Shape& dims) {
  Shape out = dims;
  for (const Step& step : decode(node, attr)) out = step_dims(node, attr, step, out);
  return out;
}

namespace {

// Q, K and V through their views, checked to fit one another; K as [.., Sk, D].
struct ViewedShapes {
  Shape q, k, v;
};
ViewedShapes viewed_shapes(const Node& node, const Shape& q_in, const Shape& k_in, const Shape& v_in) {
  Shape q = apply_view_program(node, "q_view", q_in), k = apply_view_program(node, "k_view", k_in),
        v = apply_view_program(node, "v_view", v_in);
  size_t r = q.size();
  if ((r != 3 && r != 4) || k.size() != r || v.size() != r) bad(node, "q_view", "Q, K and V must all be [H, S, D] or [B, H, S, D]");
  if (node.attrs.get_int("k_transposed", 0) != 0) std::swap(k[r - 2], k[r - 1]);
  auto same = [&](const Dim& a, const Dim& b, const char* what) {
    if (a != b) bad(node, "k_view", str(what, " differ: ", a.to_string(), " and ", b.to_string()));
  };
  for (size_t i = 0; i + 2 < r; ++i) {
    same(q[i], k[i], "batch or head dims of Q and K");
    same(q[i], v[i], "batch or head dims of Q and V");
  }
  same(q[r - 1], k[r - 1], "head dims of Q and K");
  same(q[r - 1], v[r - 1], "head dims of Q and V");
  same(k[r - 2], v[r - 2], "key counts of K and V");
  return {q, k, v};
}

}  // namespace

Shape attention_output_shape(const Node& node, const Shape& q, const Shape& k, const Shape& v) {
  Shape viewed_q = viewed_shapes(node, q, k, v).q;
  return permuted(viewed_q, out_perm(node, viewed_q.size()));
}

Shape attention_scores_shape(const Node& node, const Shape& q, const Shape& k, const Shape& v) {
  ViewedShapes viewed = viewed_shapes(node, q, k, v);
  Shape scores = viewed.q;
  scores.back() = viewed.k[viewed.k.size() - 2];
  return scores;
}

std::array<int64_t, 4> attention_mask_strides(const Node& node, const AttentionGeometry& g, size_t scores_rank,
                                              const std::vector<int64_t>& mask_dims) {
  const int64_t scores[4] = {g.batch, g.heads, g.q_len, g.kv_len};
  const size_t first = 4 - scores_rank;  // rank-3 scores have no batch dim
  if (mask_dims.size() > scores_rank)
    fail(ErrorCode::kShapeError, "node '", node.name, "' (Attention): the mask ", shape_to_string(shape_of(mask_dims)),
         " has more dims than the scores (", scores_rank, ")");
  std::vector<int64_t> dense = strides_of(mask_dims);
  std::array<int64_t, 4> strides{};
  for (size_t i = 0; i < mask_dims.size(); ++i) {
    size_t axis = 4 - mask_dims.size() + i;
    int64_t want = scores[axis];
    if (mask_dims[i] != 1 && mask_dims[i] != want)
      fail(ErrorCode::kShapeError, "node '", node.name, "' (Attention): the mask ", shape_to_string(shape_of(mask_dims)),
           " does not broadcast to the scores (dim ", axis - first, " is ", want, ")");
    strides[axis] = mask_dims[i] == 1 ? 0 : dense[i];
  }
  return strides;
}

AttentionGeometry attention_geometry(const Node& node, const std::vector<int64_t>& q_dims, const std::vector<int64_t>& k_dims,
                                     const std::vector<int64_t>& v_dims) {
  Shape out_shape = attention_output_shape(node, shape_of(q_dims), shape_of(k_dims), shape_of(v_dims));  // checks the fit
  StridedView q = apply_concrete(node, "q_view", q_dims), k = apply_concrete(node, "k_view", k_dims),
              v = apply_concrete(node, "v_view", v_dims);
  size_t r = q.dims.size();
  AttentionGeometry g;
  g.batch = r == 4 ? q.dims[0] : 1;
  g.heads = q.dims[r - 3];
  g.q_len = q.dims[r - 2];
  g.head_dim = q.dims[r - 1];
  g.kv_len = v.dims[r - 2];
  g.q = operand(node, "q_view", q, false);
  g.k = operand(node, "k_view", k, node.attrs.get_int("k_transposed", 0) != 0);
  g.v = operand(node, "v_view", v, false);
  // The dense output [.., Sq, D] permuted by out_perm: strides of the unpermuted dims.
  g.out_dims = shape_constants(out_shape);
  std::vector<int64_t> perm = out_perm(node, r), dense = strides_of(g.out_dims), unpermuted(r);
  for (size_t i = 0; i < r; ++i) unpermuted[size_t(perm[i])] = dense[i];
  StridedView o{0, q.dims, unpermuted};
  g.out = operand(node, "out_perm", o, false);
  return g;
}

}  // namespace kiln::ir
