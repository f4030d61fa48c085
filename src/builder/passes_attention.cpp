// Attention fusion: softmax(alpha * Q @ K^T) @ V becomes one Attention node
// that reads Q, K and V where they already lie. Exported attention reaches its
// operands through chains of Reshape, Transpose, Squeeze, Unsqueeze and
// single-index Gather (the split of a packed QKV projection into heads); each
// chain is a strided view of the tensor it starts from, so the fused kernel
// reads that tensor directly and the copies disappear with the matmuls and the
// softmax. A Transpose of the result (heads back together) becomes the layout
// the kernel writes. Static shapes only: views are fixed at build time.
#include <algorithm>
#include <numeric>

#include "graph.h"
#include "kiln/ir/shape_inference.h"

namespace kiln::builder {

using ir::OpKind;

namespace {

// The runtime's attention kernel holds a row of the head dim in registers.
constexpr int64_t kMaxFusedHeadDim = 128;

// Elements of `root` (contiguous) that a value is: value[i] = root[offset + sum i_d * strides_d].
struct View {
  ir::ValueId root;
  int64_t offset = 0;
  std::vector<int64_t> dims, strides;
};

std::optional<std::vector<int64_t>> static_dims(const Graph& g, ir::ValueId v) {
  const ir::Shape& shape = g.values[size_t(v)].shape;
  if (!ir::shape_is_constant(shape)) return std::nullopt;
  return ir::shape_constants(shape);
}

std::optional<size_t> producer_of(const Graph& g, ir::ValueId v) {
  for (size_t p = 0; p < g.nodes.size(); ++p)
    if (!g.dead[p] && std::find(g.nodes[p].outputs.begin(), g.nodes[p].outputs.end(), v) != g.nodes[p].outputs.end()) return p;
  return std::nullopt;
}

// Strides for `dims` over the same elements as (old_dims, old_strides) in the
// same order, if a strided view can express them (PyTorch's view rule).
std::optional<std::vector<int64_t>> reshaped_strides(const std::vector<int64_t>& old_dims, const std::vector<int64_t>& old_strides,
                                                     const std::vector<int64_t>& dims) {
  if (old_dims.empty() || ir::checked_numel(old_dims) != ir::checked_numel(dims) || ir::checked_numel(dims) == 0) return std::nullopt;
  std::vector<int64_t> strides(dims.size(), 0);
  int64_t view_d = int64_t(dims.size()) - 1;
  int64_t chunk_stride = old_strides.back(), tensor_numel = 1, view_numel = 1;
  for (int64_t d = int64_t(old_dims.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_dims[size_t(d)];
    // A chunk of old dims that are contiguous with one another ends here.
    if (d == 0 || (old_dims[size_t(d - 1)] != 1 && old_strides[size_t(d - 1)] != tensor_numel * chunk_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || dims[size_t(view_d)] == 1)) {
        strides[size_t(view_d)] = view_numel * chunk_stride;
        view_numel *= dims[size_t(view_d)];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_stride = old_strides[size_t(d - 1)];
        tensor_numel = view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return strides;
}

// v as a view of the first tensor up its chain of view-like ops.
std::optional<View> view_of(const Graph& g, ir::ValueId v) {
  auto dims = static_dims(g, v);
  if (!dims) return std::nullopt;
  View self{v, 0, *dims, ir::strides_of(*dims)};
  auto p = producer_of(g, v);
  if (!p || g.nodes[*p].inputs.empty()) return self;
  const ir::Node& n = g.nodes[*p];
  auto in = view_of(g, n.inputs[0]);
  if (!in) return self;
  switch (n.op) {
    case OpKind::kReshape: case OpKind::kFlatten: case OpKind::kSqueeze: case OpKind::kUnsqueeze: {
      auto strides = reshaped_strides(in->dims, in->strides, *dims);
      if (!strides) return self;
      return View{in->root, in->offset, *dims, *strides};
    }
    case OpKind::kTranspose: {
      std::vector<int64_t> perm(in->dims.size());
      std::iota(perm.rbegin(), perm.rend(), 0);
      perm = n.attrs.get_ints("perm", perm);
      if (perm.size() != in->dims.size()) return self;
      View out{in->root, in->offset, {}, {}};
      for (int64_t axis : perm) {
        size_t a = size_t(axis < 0 ? axis + int64_t(perm.size()) : axis);
        out.dims.push_back(in->dims.at(a));
        out.strides.push_back(in->strides.at(a));
      }
      return out.dims == *dims ? std::optional<View>(out) : self;
    }
    case OpKind::kGather: {  // one constant index: an offset, and the axis gone (or kept as 1)
      const ir::TensorData* index = n.inputs.size() > 1 ? g.weight_of(n.inputs[1]) : nullptr;
      if (!index || index->numel() != 1) return self;
      int64_t axis = n.attrs.get_int("axis", 0);
      axis = axis < 0 ? axis + int64_t(in->dims.size()) : axis;
      if (axis < 0 || axis >= int64_t(in->dims.size())) return self;
      int64_t i = ir::read_ints(*index)[0], size = in->dims[size_t(axis)];
      i = i < 0 ? i + size : i;
      if (i < 0 || i >= size) return self;
      View out = *in;
      out.offset += i * in->strides[size_t(axis)];
      if (index->dims.empty()) {
        out.dims.erase(out.dims.begin() + axis);
        out.strides.erase(out.strides.begin() + axis);
      } else {
        out.dims[size_t(axis)] = 1;
      }
      return out.dims == *dims ? std::optional<View>(out) : self;
    }
    default: return self;
  }
}

// [offset, sb, sh, ss, sd] of a rank-3 ([H, S, D]) or rank-4 ([B, H, S, D]) view;
// swap_last for K given as [.., D, S].
std::optional<std::vector<int64_t>> attention_view(const View& v, bool swap_last) {
  if (v.dims.size() != 3 && v.dims.size() != 4) return std::nullopt;
  std::vector<int64_t> s = v.strides;
  if (s.size() == 3) s.insert(s.begin(), 0);
  if (swap_last) std::swap(s[2], s[3]);
  return std::vector<int64_t>{v.offset, s[0], s[1], s[2], s[3]};
}

bool plain_matmul(const ir::Node& n) {
  return n.op == OpKind::kFusedMatMul && n.inputs.size() == 2 && n.attrs.get_string("activation", "none") == "none";
}

std::optional<size_t> only_reader(const Graph& g, ir::ValueId v) {
  if (g.is_output(v)) return std::nullopt;
  auto users = g.consumers(v);
  if (users.size() != 1) return std::nullopt;
  return users[0];
}

// Drops nodes whose outputs nobody reads, until none is left.
void drop_unread(Graph& g) {
  for (bool again = true; again;) {
    again = false;
    for (size_t n = g.nodes.size(); n-- > 0;) {
      if (g.dead[n]) continue;
      bool read = false;
      for (ir::ValueId o : g.nodes[n].outputs)
        read = read || (o != ir::kNoValue && (g.is_output(o) || !g.consumers(o).empty()));
      if (!read) g.dead[n] = again = true;
    }
  }
}

}  // namespace

int fuse_attention(Graph& g) {
  int changed = 0;
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    if (g.dead[n] || !plain_matmul(g.nodes[n])) continue;
    const ir::Node scores = g.nodes[n];
    auto softmax = only_reader(g, scores.outputs[0]);
    if (!softmax || g.nodes[*softmax].op != OpKind::kSoftmax) continue;
    auto scores_dims = static_dims(g, scores.outputs[0]);
    int64_t axis = g.nodes[*softmax].attrs.get_int("axis", -1);
    if (!scores_dims || (axis != -1 && axis != int64_t(scores_dims->size()) - 1)) continue;
    auto product = only_reader(g, g.nodes[*softmax].outputs[0]);
    if (!product || !plain_matmul(g.nodes[*product]) || g.nodes[*product].inputs[0] != g.nodes[*softmax].outputs[0] ||
        g.nodes[*product].attrs.get_int("trans_b", 0) != 0 || g.nodes[*product].attrs.get_float("alpha", 1.0) != 1.0)
      continue;
    ir::ValueId result = g.nodes[*product].outputs[0];
    auto q = view_of(g, scores.inputs[0]), k = view_of(g, scores.inputs[1]), v = view_of(g, g.nodes[*product].inputs[1]);
    auto out_dims = static_dims(g, result);
    if (!q || !k || !v || !out_dims || q->dims.size() != k->dims.size() || q->dims.size() != v->dims.size() || q->dims.size() != out_dims->size())
      continue;
    bool trans_b = scores.attrs.get_int("trans_b", 0) != 0;
    auto qv = attention_view(*q, false), kv = attention_view(*k, !trans_b), vv = attention_view(*v, false);
    if (!qv || !kv || !vv) continue;
    size_t r = q->dims.size();
    int64_t heads = q->dims[r - 3], batch = r == 4 ? q->dims[0] : 1, q_len = q->dims[r - 2], head_dim = q->dims[r - 1];
    int64_t kv_len = v->dims[r - 2];
    // No broadcasting between the operands: every batch dim and the head dim agree.
    std::vector<int64_t> k_dims = k->dims;
    if (!trans_b) std::swap(k_dims[r - 2], k_dims[r - 1]);
    if (k_dims[r - 2] != kv_len || k_dims[r - 1] != head_dim || v->dims[r - 1] != head_dim ||
        !std::equal(q->dims.begin(), q->dims.end() - 2, k_dims.begin()) || !std::equal(q->dims.begin(), q->dims.end() - 2, v->dims.begin()) ||
        head_dim > kMaxFusedHeadDim)
      continue;
    // The result, or the Transpose alone reading it, is what the kernel writes.
    std::vector<int64_t> result_strides = ir::strides_of(*out_dims);
    size_t place = *product;
    auto reader = only_reader(g, result);
    if (reader && g.nodes[*reader].op == OpKind::kTranspose) {
      std::vector<int64_t> perm = g.nodes[*reader].attrs.get_ints("perm");
      auto final_dims = static_dims(g, g.nodes[*reader].outputs[0]);
      if (perm.size() == r && final_dims) {
        std::vector<int64_t> final_strides = ir::strides_of(*final_dims);
        for (size_t i = 0; i < r; ++i) result_strides[size_t(perm[i] < 0 ? perm[i] + int64_t(r) : perm[i])] = final_strides[i];
        g.dead[*product] = true;
        result = g.nodes[*reader].outputs[0];
        place = *reader;
        *out_dims = *final_dims;
      }
    }
    std::vector<int64_t> out_view{0, r == 4 ? result_strides[0] : 0, result_strides[r - 3], result_strides[r - 2], result_strides[r - 1]};
    ir::Node attention{scores.name, OpKind::kAttention, {q->root, k->root, v->root}, {result}, {}};
    attention.attrs.set("dims", std::vector<int64_t>{batch, heads, q_len, kv_len, head_dim});
    attention.attrs.set("q_view", *qv);
    attention.attrs.set("k_view", *kv);
    attention.attrs.set("v_view", *vv);
    attention.attrs.set("out_view", out_view);
    attention.attrs.set("out_shape", *out_dims);
    attention.attrs.set("scale", scores.attrs.get_float("alpha", 1.0));
    g.dead[n] = g.dead[*softmax] = g.dead[*product] = true;
    g.nodes[place] = std::move(attention);
    g.dead[place] = false;
    ++changed;
  }
  if (changed) drop_unread(g);
  return changed;
}

}  // namespace kiln::builder
