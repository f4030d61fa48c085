// The movement family on the GPU: views (BitCast among them), and one strided remap kernel for
// transpose, concat, split, slice, expand, tile, pad, depth-to-space and
// space-to-depth; gather, scatter, trilu, resize, ReverseSequence and
// TensorScatter have kernels of their own.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <optional>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

namespace {

// NonZero: one launch that writes the count into the context's readback
// scratch (enqueue reads it back to size the output) and the indices, at
// most the output's bound of them.
class NonZeroOp : public Op {
 public:
  NonZeroOp(const plan::Plan& plan, const ir::Node& node, const KernelStore& store, int kernel)
      : plan_(plan), node_(node), store_(store), kernel_(kernel) {}
  void prepare(PrepareContext& ctx) const override {
    std::vector<int64_t> x = ctx.shapes.of(node_.inputs[0]);
    if (x.empty()) x = {1};
    codegen::NonZeroParams q{};
    q.n = ir::checked_numel(x);
    q.rank = int64_t(x.size());
    q.cap = data_dependent_bound(plan_, node_.outputs[0]);
    std::copy(x.begin(), x.end(), q.dims);
    KernelLaunch k{store_.kernel(kernel_), 1, codegen::kBlock, {}, codegen::pack(q), &node_, kernel_};
    k.args = {{node_.outputs[0], 0}, {kReadbackScratch, readback_scratch_slot(plan_, node_).offset}, {node_.inputs[0], 0}};
    k.specializable = false;  // one block whatever the shape: nothing to gain
    ctx.steps.push_back(std::move(k));
  }

 private:
  const plan::Plan& plan_;
  const ir::Node& node_;
  const KernelStore& store_;
  int kernel_;
};

// An input viewed as [outer, len, inner] around the node's axis attribute
// (none: its elements flattened, [1, numel, 1]); `axis` is the output dim
// whose size the node's count sets.
struct AxisSplit {
  int64_t outer = 1, len = 1, inner = 1;
  size_t axis = 0;
};

AxisSplit split_at_axis(const ir::Node& node, const std::vector<int64_t>& x) {
  if (!node.attrs.has("axis")) return {1, ir::checked_numel(x), 1, 0};
  size_t axis = size_t(norm_axis(node.attrs.get_int("axis", 0), x.size()));
  return {ir::checked_numel({x.begin(), x.begin() + int64_t(axis)}), x[axis],
          ir::checked_numel({x.begin() + int64_t(axis) + 1, x.end()}), axis};
}

// Launches of the ops counted on the device: every one has the node's data as
// parameters, not a shape to specialize for.
KernelLaunch counted_launch(const KernelStore& store, int kernel, unsigned grid, const codegen::Params& params,
                            const ir::Node& node, std::vector<PtrRef> args) {
  KernelLaunch k{store.kernel(kernel), grid, codegen::kBlock, std::move(args), params, &node, kernel};
  k.specializable = false;
  return k;
}

// Compress: a one-block scan of the condition lists the selected positions in
// the node's work area and writes their count; a gather copies those slices.
class CompressOp : public Op {
 public:
  CompressOp(const plan::Plan& plan, const ir::Node& node, const KernelStore& store, int scan, int gather)
      : plan_(plan), node_(node), store_(store), scan_(scan), gather_(gather) {}
  void prepare(PrepareContext& ctx) const override {
    AxisSplit a = split_at_axis(node_, ctx.shapes.of(node_.inputs[0]));
    int64_t cap = output_capacity(plan_, ctx.shapes, node_.outputs[0], a.axis);
    codegen::CompressParams q{ir::checked_numel({a.outer, cap, a.inner}), a.outer, a.len, a.inner,
                              ctx.shapes.of(node_.inputs[1]).at(0), cap};
    ScratchSlot slot = readback_scratch_slot(plan_, node_);
    PtrRef count{kReadbackScratch, slot.offset}, positions{kReadbackScratch, slot.offset + int64_t(sizeof(int64_t))};
    codegen::Params params = codegen::pack(q);
    ctx.steps.push_back(counted_launch(store_, scan_, 1, params, node_, {positions, count, {node_.inputs[1], 0}}));
    if (q.n == 0) return;
    ctx.steps.push_back(counted_launch(store_, gather_, grid_for(q.n, ctx.sm_count), params, node_,
                                       {{node_.outputs[0], 0}, {node_.inputs[0], 0}, positions, count}));
  }

 private:
  const plan::Plan& plan_;
  const ir::Node& node_;
  const KernelStore& store_;
  int scan_, gather_;
};

// Unique: bitonic sort stages of the slice positions (one launch each), a
// one-block grouping pass that writes the count, then the outputs; the
// permutation and the group tables live in the node's work area.
class UniqueOp : public Op {
 public:
  UniqueOp(const plan::Plan& plan, const ir::Node& node, const KernelStore& store, int sort, int groups, int outputs)
      : plan_(plan), node_(node), store_(store), sort_(sort), groups_(groups), outputs_(outputs) {}
  void prepare(PrepareContext& ctx) const override {
    AxisSplit a = split_at_axis(node_, ctx.shapes.of(node_.inputs[0]));
    int64_t cap = output_capacity(plan_, ctx.shapes, node_.outputs[0], a.axis);
    ScratchSlot slot = readback_scratch_slot(plan_, node_);
    PtrRef count{kReadbackScratch, slot.offset}, work{kReadbackScratch, slot.offset + int64_t(sizeof(int64_t))};
    PtrRef x{node_.inputs[0], 0};
    codegen::UniqueParams q{0, a.outer, a.len, a.inner, next_pow2(a.len), 0, 0, node_.attrs.get_int("sorted", 1), cap};
    if (a.len > 0) {
      q.n = q.pow2;
      unsigned grid = grid_for(q.n, ctx.sm_count);
      ctx.steps.push_back(counted_launch(store_, sort_, grid, codegen::pack(q), node_, {work, x}));  // k = 0: the identity
      for (q.k = 2; q.k <= q.pow2; q.k <<= 1)
        for (q.j = q.k >> 1; q.j > 0; q.j >>= 1) ctx.steps.push_back(counted_launch(store_, sort_, grid, codegen::pack(q), node_, {work, x}));
    }
    q.n = a.len;
    ctx.steps.push_back(counted_launch(store_, groups_, 1, codegen::pack(q), node_, {work, count, x}));
    q.n = std::max(ir::checked_numel({a.outer, cap, a.inner}), a.len);
    if (q.n == 0) return;
    std::vector<PtrRef> args;
    for (size_t i = 0; i < 4; ++i) args.push_back({i < node_.outputs.size() ? node_.outputs[i] : ir::kNoValue, 0});
    args.insert(args.end(), {x, work, count});
    ctx.steps.push_back(counted_launch(store_, outputs_, grid_for(q.n, ctx.sm_count), codegen::pack(q), node_, std::move(args)));
  }

 private:
  const plan::Plan& plan_;
  const ir::Node& node_;
  const KernelStore& store_;
  int sort_, groups_, outputs_;
};

// A plain strided copy (no pads, modulus or per-dim starts/steps left) over the
// fewest dims (codegen::merge_dims).
struct StridedCopy {
  std::vector<int64_t> dims, src_strides, dst_strides;
  int64_t src_offset = 0, dst_offset = 0;
};

std::optional<StridedCopy> as_strided_copy(const RemapPiece& r) {
  if (r.mode != codegen::PadMode::kNone) return std::nullopt;
  for (int64_t m : r.modulus)
    if (m) return std::nullopt;
  std::vector<int64_t> src(r.dims.size());
  int64_t src_offset = r.src_offset;
  for (size_t d = 0; d < r.dims.size(); ++d) {
    src[d] = (r.steps.empty() ? 1 : r.steps[d]) * r.src_strides[d];
    src_offset += (r.starts.empty() ? 0 : r.starts[d]) * r.src_strides[d];
  }
  codegen::MergedDims m = codegen::merge_dims(r.dims, {src, r.dst_strides});
  return StridedCopy{std::move(m.dims), std::move(m.strides[0]), std::move(m.strides[1]), src_offset, r.dst_offset};
}

// The widest copy unit (bytes, at most 16) that keeps every vector of the last
// dim aligned, or 0 where the last dim is not unit-stride on both sides.
int64_t vector_bytes(const StridedCopy& c, size_t esize) {
  if (c.src_strides.back() != 1 || c.dst_strides.back() != 1) return 0;
  for (int64_t bytes = 16; bytes > int64_t(esize); bytes /= 2) {
    int64_t per = bytes / int64_t(esize);
    bool fits = c.dims.back() % per == 0 && c.src_offset % per == 0 && c.dst_offset % per == 0;
    for (size_t d = 0; d + 1 < c.dims.size(); ++d) fits = fits && c.src_strides[d] % per == 0 && c.dst_strides[d] % per == 0;
    if (fits) return bytes;
  }
  return 0;
}

// Puts the dim whose source stride is 1 just before the last (the tiled
// transpose's B); false when the last dim is not the destination's unit-stride
// dim or no other dim reads contiguously. Dims of a strided copy may be
// visited in any order, so moving one changes nothing but the path.
bool arrange_for_tiles(StridedCopy& c) {
  size_t last = c.dims.size() - 1;
  if (c.dims.size() < 2 || c.dst_strides[last] != 1 || c.src_strides[last] == 1) return false;
  for (size_t d = 0; d < last; ++d) {
    if (c.src_strides[d] != 1) continue;
    for (auto* v : {&c.dims, &c.src_strides, &c.dst_strides}) {
      int64_t moved = (*v)[d];
      v->erase(v->begin() + int64_t(d));
      v->insert(v->begin() + int64_t(last - 1), moved);
    }
    return true;
  }
  return false;
}

// Fills the launch for one piece: its parameters and its grid (work items per path).
void fill_remap(const RemapPiece& r, size_t esize, int sm_count, KernelLaunch& k) {
  codegen::RemapParams q{};
  q.n = ir::checked_numel(r.dims);
  q.src_offset = r.src_offset;
  q.dst_offset = r.dst_offset;
  q.pad_mode = int64_t(r.mode);
  q.fill_bits = r.fill_bits;
  int64_t items = q.n;
  if (auto c = as_strided_copy(r)) {
    q.rank = int64_t(c->dims.size());
    q.src_offset = c->src_offset;
    q.dst_offset = c->dst_offset;
    if ((q.vec_bytes = vector_bytes(*c, esize))) {
      q.path = 1;
      items = q.n / (q.vec_bytes / int64_t(esize));
    } else if (arrange_for_tiles(*c)) {
      q.path = 2;
      int64_t a = c->dims.back(), b = c->dims[c->dims.size() - 2];
      items = q.n / (a * b) * ((a + 31) / 32) * ((b + 31) / 32) * codegen::kBlock;  // a block per tile
    }
    for (size_t d = 0; d < c->dims.size(); ++d) {
      q.dims[d] = c->dims[d];
      q.src_strides[d] = c->src_strides[d];
      q.dst_strides[d] = c->dst_strides[d];
      q.src_steps[d] = 1;
    }
  } else {
    q.rank = int64_t(r.dims.size());
    for (size_t d = 0; d < r.dims.size(); ++d) {
      q.dims[d] = r.dims[d];
      q.src_strides[d] = r.src_strides[d];
      q.dst_strides[d] = r.dst_strides[d];
      q.src_starts[d] = r.starts.empty() ? 0 : r.starts[d];
      q.src_steps[d] = r.steps.empty() ? 1 : r.steps[d];
      q.src_dims[d] = r.src_dims.empty() ? 0 : r.src_dims[d];
      q.modulus[d] = r.modulus.empty() ? 0 : r.modulus[d];
    }
  }
  k.params = codegen::pack(q);
  k.args = {{r.dst, 0}, {r.src, 0}, {r.fill_value, 0}};
  k.grid = grid_for(items, sm_count);
}

class RemapOp : public Op {
 public:
  RemapOp(const ir::Node& node, const KernelStore& store, int kernel, DType dtype, RemapPlan plan)
      : node_(node), store_(store), kernel_(kernel), element_size_(dtype_size(dtype)), plan_(std::move(plan)) {}
  void prepare(PrepareContext& ctx) const override {
    for (const RemapPiece& piece : plan_(ctx.shapes)) {
      if (piece.dims.size() > size_t(codegen::kMaxRank))
        fail(ErrorCode::kUnsupported, "node '", node_.name, "': rank ", piece.dims.size(), " is above the GPU limit");
      if (ir::checked_numel(piece.dims) == 0) continue;
      KernelLaunch k{store_.kernel(kernel_), 1, codegen::kBlock, {}, {}, &node_, kernel_};
      fill_remap(piece, element_size_, ctx.sm_count, k);
      ctx.steps.push_back(std::move(k));
    }
  }

 private:
  const ir::Node& node_;
  const KernelStore& store_;
  int kernel_;
  size_t element_size_;
  RemapPlan plan_;
};

RemapPiece plain_copy(ir::ValueId src, ir::ValueId dst, const std::vector<int64_t>& dims) {
  RemapPiece r;
  r.src = src;
  r.dst = dst;
  r.dims = {ir::checked_numel(dims)};
  r.src_strides = r.dst_strides = {1};
  return r;
}

codegen::ScatterReduction scatter_reduction(const ir::Node& node) {
  std::string r = node.attrs.get_string("reduction", "none");
  using R = codegen::ScatterReduction;
  return r == "add" ? R::kAdd : r == "mul" ? R::kMul : r == "max" ? R::kMax : r == "min" ? R::kMin : R::kNone;
}

// ScatterND, ScatterElements and GatherND at these shapes (kernel_params.h says
// what each field means). Dims shape inference saw as symbols are checked here:
// the kernels trust them for every address.
codegen::IndexedParams indexed_params(const ir::Node& n, const ShapeEnv& s) {
  const auto& x = s.of(n.inputs[0]);
  const auto& idx = s.of(n.inputs[1]);
  auto mismatch = [&](const char* what, const std::vector<int64_t>& got, const char* relation, const std::vector<int64_t>& want) {
    fail(ErrorCode::kShapeError, "node '", n.name, "' (", ir::op_name(n.op), "): ", what, " ", ir::shape_to_string(ir::shape_of(got)),
         relation, ir::shape_to_string(ir::shape_of(want)));
  };
  auto st = strides_of(x);
  codegen::IndexedParams q{};
  if (n.op == OpKind::kScatterElements) {
    q.n = ir::checked_numel(idx);
    q.rank = int64_t(idx.size());
    q.axis = norm_axis(n.attrs.get_int("axis", 0), x.size());
    q.axis_size = x[size_t(q.axis)];
    if (s.of(n.inputs[2]) != idx) mismatch("updates", s.of(n.inputs[2]), " should be ", idx);
    for (size_t d = 0; d < idx.size(); ++d) {
      if (int64_t(d) != q.axis && idx[d] > x[d]) mismatch("indices", idx, " are larger off the axis than data ", x);
      q.dims[d] = idx[d];
      q.strides[d] = st[d];
    }
    return q;
  }
  size_t b = n.op == OpKind::kGatherND ? size_t(n.attrs.get_int("batch_dims", 0)) : 0, k = size_t(idx.back());
  int64_t tuples = ir::checked_numel(idx) / int64_t(k), batches = ir::checked_numel({x.begin(), x.begin() + int64_t(b)});
  if (!std::equal(x.begin(), x.begin() + int64_t(b), idx.begin())) mismatch("indices", idx, " differ in the batch dims from data ", x);
  if (n.op == OpKind::kScatterND) {
    std::vector<int64_t> want(idx.begin(), idx.end() - 1);
    want.insert(want.end(), x.begin() + int64_t(k), x.end());
    if (s.of(n.inputs[2]) != want) mismatch("updates", s.of(n.inputs[2]), " should be ", want);
  }
  q.depth = int64_t(k);
  q.slice = ir::checked_numel({x.begin() + int64_t(b + k), x.end()});
  q.n = tuples * q.slice;
  q.rows = b && batches ? tuples / batches : std::max<int64_t>(tuples, 1);
  q.batch_stride = b ? ir::checked_numel({x.begin() + int64_t(b), x.end()}) : 0;
  for (size_t t = 0; t < k; ++t) {
    q.dims[t] = x[b + t];
    q.strides[t] = st[b + t];
  }
  return q;
}

}  // namespace

std::unique_ptr<Op> make_remap_op(const ir::Node& node, KernelStore& store, DType dtype, RemapPlan plan) {
  int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::remap_source({dtype, params}); });
  return std::make_unique<RemapOp>(node, store, kernel, dtype, std::move(plan));
}

namespace {

// Reshape-like ops and BitCast: a view when the planner gave the output the
// input's storage; otherwise a copy of its elements as `dtype`.
std::unique_ptr<Op> make_view_or_copy_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store, DType dtype) {
  ir::ValueId in = node.inputs[0], out = node.outputs[0];
  const ir::Value& source = plan.network.value(in);
  bool view = plan.arena_offset[size_t(out)] >= 0 && plan.arena_offset[size_t(out)] == plan.arena_offset[size_t(in)] &&
              !source.weight && !source.is_input;
  const ir::Node* n = &node;
  return make_remap_op(node, store, dtype, [n, view](const ShapeEnv& s) {
    if (view) return std::vector<RemapPiece>{};
    return std::vector<RemapPiece>{plain_copy(n->inputs[0], n->outputs[0], s.of(n->outputs[0]))};
  });
}

// The integer type of `dtype`'s width, whose copies move bits without a float's rounding.
DType same_width_integer(DType dtype) {
  switch (dtype_size(dtype)) {
    case 1: return DType::kUInt8;
    case 2: return DType::kUInt16;
    case 4: return DType::kInt32;
    default: return DType::kInt64;
  }
}

}  // namespace

std::unique_ptr<Op> make_movement(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why,
                                  int /*arch*/) {
  auto value = [&](ir::ValueId v) -> const ir::Value& { return plan.network.value(v); };
  DType dtype = output_dtype(plan, node);
  const ir::Node* n = &node;
  const plan::Plan* p = &plan;
  switch (node.op) {
    case OpKind::kReshape: case OpKind::kFlatten: case OpKind::kSqueeze: case OpKind::kUnsqueeze:
      return make_view_or_copy_op(plan, node, store, dtype);

    case OpKind::kBitCast: {
      DType from = value(node.inputs[0]).dtype;
      if (dtype != DType::kBool) return make_view_or_copy_op(plan, node, store, same_width_integer(from));
      // A byte other than 0 reads as true (as the reference has it): the cast kernel's x != 0.
      int width = codegen::elementwise_vector_width({from}, dtype);
      int kernel = store.add(node.name, [from](const auto& params) { return codegen::cast_source(from, DType::kBool, true, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n, width](const ShapeEnv& s, KernelLaunch& k) {
        const auto& dims = s.of(n->outputs[0]);
        k.params = codegen::pack(codegen::elementwise_params(dims, {dims}, width));
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
      });
    }

    case OpKind::kTranspose: {
      return make_remap_op(node, store, dtype, [n](const ShapeEnv& s) {
        const auto& x = s.of(n->inputs[0]);
        std::vector<int64_t> perm(x.size());
        std::iota(perm.rbegin(), perm.rend(), 0);
        perm = n->attrs.get_ints("perm", perm);
        auto st = strides_of(x);
        RemapPiece r;
        r.src = n->inputs[0];
        r.dst = n->outputs[0];
        r.dims = s.of(n->outputs[0]);
        r.dst_strides = strides_of(r.dims);
        for (int64_t a : perm) r.src_strides.push_back(st[size_t(norm_axis(a, x.size()))]);
        return std::vector<RemapPiece>{r};
      });
    }

    case OpKind::kConcat: case OpKind::kSplit: {
      return make_remap_op(node, store, dtype, [n](const ShapeEnv& s) {
        bool concat = n->op == OpKind::kConcat;
        const auto& whole = concat ? s.of(n->outputs[0]) : s.of(n->inputs[0]);
        size_t axis = size_t(norm_axis(n->attrs.get_int("axis", 0), whole.size()));
        auto whole_st = strides_of(whole);
        std::vector<RemapPiece> pieces;
        int64_t at = 0;
        const auto& parts = concat ? n->inputs : n->outputs;
        for (ir::ValueId part : parts) {
          if (part == ir::kNoValue) continue;
          RemapPiece r;
          r.dims = s.of(part);
          r.src = concat ? part : n->inputs[0];
          r.dst = concat ? n->outputs[0] : part;
          (concat ? r.src_strides : r.dst_strides) = strides_of(r.dims);
          (concat ? r.dst_strides : r.src_strides) = whole_st;
          (concat ? r.dst_offset : r.src_offset) = at * whole_st[axis];
          at += r.dims[axis];
          pieces.push_back(r);
        }
        return pieces;
      });
    }

    case OpKind::kSlice: case OpKind::kExpand: case OpKind::kTile: case OpKind::kPad: case OpKind::kDepthToSpace:
    case OpKind::kSpaceToDepth: {
      // A constant_value that is tensor data is read by the kernel, as an element of the data's type.
      if (node.op == OpKind::kPad && node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue && !value(node.inputs[2]).weight &&
          value(node.inputs[2]).dtype != dtype) {
        why = str("a Pad constant_value of type ", dtype_name(value(node.inputs[2]).dtype), " for data of type ", dtype_name(dtype));
        return nullptr;
      }
      return make_remap_op(node, store, dtype, [n, p, dtype](const ShapeEnv& s) {
        const auto& x = s.of(n->inputs[0]);
        const auto& out = s.of(n->outputs[0]);
        auto st = strides_of(x);
        RemapPiece r;
        r.src = n->inputs[0];
        r.dst = n->outputs[0];
        r.dims = out;
        r.dst_strides = strides_of(out);
        size_t rank = x.size();
        if (n->op == OpKind::kSlice) {
          auto starts = ints_of(*p, n->inputs[1], s, "Slice starts");
          std::vector<int64_t> axes(starts.size()), steps(starts.size(), 1);
          std::iota(axes.begin(), axes.end(), 0);
          if (n->inputs.size() > 3 && n->inputs[3] != ir::kNoValue) axes = ints_of(*p, n->inputs[3], s, "Slice axes");
          if (n->inputs.size() > 4 && n->inputs[4] != ir::kNoValue) steps = ints_of(*p, n->inputs[4], s, "Slice steps");
          r.src_strides = st;
          r.starts.assign(rank, 0);
          r.steps.assign(rank, 1);
          for (size_t i = 0; i < axes.size(); ++i) {
            size_t a = size_t(norm_axis(axes[i], rank));
            int64_t dim = x[a], st0 = starts[i] < 0 ? starts[i] + dim : starts[i];
            r.starts[a] = steps[i] > 0 ? std::clamp<int64_t>(st0, 0, dim) : std::clamp<int64_t>(st0, 0, dim - 1);
            r.steps[a] = steps[i];
          }
        } else if (n->op == OpKind::kExpand) {
          size_t pad = out.size() - rank;
          r.src_strides.assign(out.size(), 0);
          for (size_t d = 0; d < rank; ++d) r.src_strides[pad + d] = x[d] == 1 ? 0 : st[d];
        } else if (n->op == OpKind::kTile) {
          r.src_strides = st;
          r.modulus = x;
        } else if (n->op == OpKind::kPad) {
          auto pads = ints_of(*p, n->inputs[1], s, "Pad pads");
          std::vector<int64_t> axes(rank);
          std::iota(axes.begin(), axes.end(), 0);
          if (n->inputs.size() > 3 && n->inputs[3] != ir::kNoValue) axes = ints_of(*p, n->inputs[3], s, "Pad axes");
          r.src_strides = st;
          r.starts.assign(rank, 0);
          for (size_t i = 0; i < axes.size(); ++i) r.starts[size_t(norm_axis(axes[i], rank))] = -pads[i];
          r.src_dims = x;
          std::string mode = n->attrs.get_string("mode", "constant");
          r.mode = mode == "edge" ? codegen::PadMode::kEdge : mode == "reflect" ? codegen::PadMode::kReflect
                   : mode == "wrap"   ? codegen::PadMode::kWrap : codegen::PadMode::kConstant;
          double fill = 0;
          if (n->inputs.size() > 2 && n->inputs[2] != ir::kNoValue) {
            const ir::Value& given = p->network.value(n->inputs[2]);
            if (given.weight) fill = ir::read_doubles(*given.weight)[0];
            else if (r.mode == codegen::PadMode::kConstant) r.fill_value = n->inputs[2];
          }
          visit_dtype(dtype, [&](auto tag) {
            using T = decltype(tag);
            if constexpr (std::is_same_v<T, Float16>) r.fill_bits = float_to_half(float(fill));
            else if constexpr (std::is_same_v<T, BFloat16>) r.fill_bits = float_to_bfloat16(float(fill));
            else if constexpr (requires { tag.bits; }) r.fill_bits = narrow_float_from_double(dtype, fill, true);
            else if constexpr (requires { tag.value; }) r.fill_bits = uint8_t(narrow_integer_wrap(dtype, int64_t(fill)));
            else {
              T v = static_cast<T>(fill);
              std::memcpy(&r.fill_bits, &v, sizeof(T));
            }
          });
        } else {  // DepthToSpace / SpaceToDepth as a 6-D transpose
          int64_t b = n->attrs.get_int("blocksize", 1);
          bool crd = n->attrs.get_string("mode", "DCR") == "CRD";
          if (n->op == OpKind::kDepthToSpace) {
            int64_t c = out[1], h = x[2], w = x[3];
            // out[N, c, h*b+by, w*b+bx]: iterate (N, c, h, by, w, bx) in output order.
            r.dims = {x[0], c, h, b, w, b};
            int64_t cs = st[1];
            // input channel = DCR: (by*b+bx)*c + ci ; CRD: ci*b*b + by*b + bx
            r.src_strides = {st[0], crd ? b * b * cs : cs, st[2], crd ? b * cs : b * c * cs, st[3], crd ? cs : c * cs};
          } else {
            int64_t c = x[1], h = out[2], w = out[3];
            // out[N, (by*b+bx)*c + ci, h, w] = x[N, ci, h*b+by, w*b+bx]; iterate (N, by, bx, ci, h, w).
            r.dims = {x[0], b, b, c, h, w};
            r.src_strides = {st[0], st[2], st[3], st[1], b * st[2], b * st[3]};
          }
          r.dst_strides = strides_of(r.dims);
        }
        return std::vector<RemapPiece>{r};
      });
    }

    case OpKind::kGather: case OpKind::kGatherElements: {
      DType index = value(node.inputs[1]).dtype;
      bool elements = node.op == OpKind::kGatherElements;
      int kernel = store.add(node.name, [dtype, index, elements](const auto& params) {
        return codegen::gather_source(dtype, index, elements, params);
      });
      return std::make_unique<SimpleOp>(node, store, kernel, [n, elements](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        const auto& idx = s.of(n->inputs[1]);
        int64_t axis = norm_axis(n->attrs.get_int("axis", 0), x.size());
        int64_t outer = ir::checked_numel({x.begin(), x.begin() + axis});
        int64_t inner = ir::checked_numel({x.begin() + axis + 1, x.end()});
        if (elements) {
          std::vector<int64_t> same = idx;
          same[size_t(axis)] = x[size_t(axis)];
          if (same != x) fail(ErrorCode::kUnsupported, "node '", n->name, "': GatherElements with indices smaller than the data");
        }
        int64_t count = elements ? idx[size_t(axis)] : ir::checked_numel(idx);
        k.params = codegen::pack(codegen::GatherParams{ir::checked_numel(s.of(n->outputs[0])), outer, count, inner, x[size_t(axis)]});
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}};
      });
    }

    case OpKind::kGatherND: case OpKind::kScatterND: case OpKind::kScatterElements: {
      size_t rank_limit = size_t(codegen::kMaxRank);
      if (value(node.inputs[0]).shape.size() > rank_limit || value(node.inputs[1]).shape.size() > rank_limit) {
        why = str("data or indices of rank above ", codegen::kMaxRank);
        return nullptr;
      }
      bool gather = node.op == OpKind::kGatherND;
      codegen::IndexedSpec spec{gather ? codegen::IndexedOp::kGatherND
                                : node.op == OpKind::kScatterND ? codegen::IndexedOp::kScatterND : codegen::IndexedOp::kScatterElements,
                                dtype, value(node.inputs[1]).dtype, scatter_reduction(node), std::nullopt};
      int kernel = store.add(node.name, specializing_generator(spec, codegen::indexed_source));
      auto indexed = std::make_unique<SimpleOp>(node, store, kernel, [n, gather](const ShapeEnv& s, KernelLaunch& k) {
        k.params = codegen::pack(indexed_params(*n, s));
        if (gather) k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}};
        else k.args = {{n->outputs[0], 0}, {n->inputs[1], 0}, {n->inputs[2], 0}};
      });
      if (gather) return indexed;
      // The output starts as a copy of the data; the updates land on it.
      std::vector<std::unique_ptr<Op>> parts;
      parts.push_back(make_remap_op(node, store, dtype, [n](const ShapeEnv& s) {
        return std::vector<RemapPiece>{plain_copy(n->inputs[0], n->outputs[0], s.of(n->outputs[0]))};
      }));
      parts.push_back(std::move(indexed));
      return std::make_unique<SequenceOp>(std::move(parts));
    }

    case OpKind::kReverseSequence: {
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::reverse_sequence_source(dtype, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        bool batch_major = n->attrs.get_int("batch_axis", 1) == 0;
        int64_t batch = x[batch_major ? 0 : 1], time = x[batch_major ? 1 : 0];
        if (s.of(n->inputs[1]) != std::vector<int64_t>{batch})
          fail(ErrorCode::kShapeError, "node '", n->name, "' (ReverseSequence): sequence_lens ",
               ir::shape_to_string(ir::shape_of(s.of(n->inputs[1]))), " should have one length per batch entry, ", batch);
        k.params = codegen::pack(codegen::ReverseSequenceParams{ir::checked_numel(x), batch, time,
                                                                ir::checked_numel({x.begin() + 2, x.end()}), batch_major});
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}};
      });
    }

    case OpKind::kTensorScatter: {
      bool has_indices = node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue;
      int kernel = store.add(node.name, [dtype, has_indices](const auto& params) {
        return codegen::tensor_scatter_source(dtype, has_indices, params);
      });
      auto scatter = std::make_unique<SimpleOp>(node, store, kernel, [n, has_indices](const ShapeEnv& s, KernelLaunch& k) {
        const auto& cache = s.of(n->inputs[0]);
        const auto& update = s.of(n->inputs[1]);
        size_t axis = size_t(norm_axis(n->attrs.get_int("axis", -2), cache.size()));
        for (size_t d = 0; d < cache.size(); ++d)
          if (d == axis ? update[d] > cache[d] : update[d] != cache[d])
            fail(ErrorCode::kShapeError, "node '", n->name, "' (TensorScatter): update ", ir::shape_to_string(ir::shape_of(update)),
                 " does not fit past_cache ", ir::shape_to_string(ir::shape_of(cache)), " (axis ", axis, ")");
        if (has_indices && s.of(n->inputs[2]) != std::vector<int64_t>{cache[0]})
          fail(ErrorCode::kShapeError, "node '", n->name, "' (TensorScatter): write_indices ",
               ir::shape_to_string(ir::shape_of(s.of(n->inputs[2]))), " should have one entry per batch entry, ", cache[0]);
        codegen::TensorScatterParams q{};
        q.n = ir::checked_numel(update);
        q.seq = update[axis];
        q.max_seq = cache[axis];
        q.inner = ir::checked_numel({cache.begin() + int64_t(axis) + 1, cache.end()});
        q.per_batch = ir::checked_numel({cache.begin() + 1, cache.begin() + int64_t(axis)});
        q.circular = n->attrs.get_string("mode", "linear") == "circular";
        k.params = codegen::pack(q);
        k.args = {{n->outputs[0], 0}, {n->inputs[1], 0}};
        if (has_indices) k.args.push_back({n->inputs[2], 0});
      });
      // The output starts as a copy of the cache; the update lands on it.
      std::vector<std::unique_ptr<Op>> parts;
      parts.push_back(make_remap_op(node, store, dtype, [n](const ShapeEnv& s) {
        return std::vector<RemapPiece>{plain_copy(n->inputs[0], n->outputs[0], s.of(n->outputs[0]))};
      }));
      parts.push_back(std::move(scatter));
      return std::make_unique<SequenceOp>(std::move(parts));
    }

    case OpKind::kNonZero: {
      DType in = value(node.inputs[0]).dtype;
      if (value(node.inputs[0]).shape.size() > size_t(codegen::kMaxRank)) {
        why = str("an input of more than ", codegen::kMaxRank, " dims");
        return nullptr;
      }
      int kernel = store.add(node.name, [in](const auto&) { return codegen::nonzero_source(in); });
      return std::make_unique<NonZeroOp>(plan, node, store, kernel);
    }

    case OpKind::kCompress: {
      int scan = store.add(node.name, [](const auto&) { return codegen::compress_scan_source(); });
      int gather = store.add(node.name, [dtype](const auto&) { return codegen::compress_gather_source(dtype); });
      return std::make_unique<CompressOp>(plan, node, store, scan, gather);
    }

    case OpKind::kUnique: {
      DType in = value(node.inputs[0]).dtype;
      auto source = [in](codegen::UniqueKernel kernel) {
        return [in, kernel](const auto&) { return codegen::unique_source(kernel, in); };
      };
      int sort = store.add(node.name, source(codegen::UniqueKernel::kSort));
      int groups = store.add(node.name, source(codegen::UniqueKernel::kGroups));
      int outputs = store.add(node.name, source(codegen::UniqueKernel::kOutputs));
      return std::make_unique<UniqueOp>(plan, node, store, sort, groups, outputs);
    }

    case OpKind::kTrilu: {
      bool has_k = node.inputs.size() > 1 && node.inputs[1] != ir::kNoValue;
      // A k that is tensor data is read by the kernel, as ONNX's int64.
      if (has_k && !value(node.inputs[1]).weight && value(node.inputs[1]).dtype != DType::kInt64) {
        why = str("a Trilu k of type ", dtype_name(value(node.inputs[1]).dtype), " (ONNX's is int64)");
        return nullptr;
      }
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::trilu_source(dtype, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n, p, has_k](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        codegen::TriluParams q{};
        q.n = ir::checked_numel(x);
        q.rows = x[x.size() - 2];
        q.cols = x.back();
        std::optional<std::vector<int64_t>> given = has_k ? host_ints(*p, n->inputs[1], s) : std::vector<int64_t>{0};
        q.k = given ? given->at(0) : 0;
        q.upper = n->attrs.get_int("upper", 1);
        k.params = codegen::pack(q);
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {given ? ir::kNoValue : n->inputs[1], 0}};
      });
    }

    case OpKind::kResize: {
      if (!is_floating(dtype)) break;
      // roi and scales that are tensor data are read by the kernel (scales also size the output: enqueue reads them back).
      auto given = [&](size_t i) { return node.inputs.size() > i && node.inputs[i] != ir::kNoValue; };
      codegen::ResizeSpec spec{dtype, given(1) ? value(node.inputs[1]).dtype : DType::kFloat32,
                               given(2) ? value(node.inputs[2]).dtype : DType::kFloat32, std::nullopt};
      int kernel = store.add(node.name, specializing_generator(spec, codegen::resize_source));
      return std::make_unique<SimpleOp>(node, store, kernel, [n, p](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        const auto& out = s.of(n->outputs[0]);
        size_t r = x.size();
        const ir::Attributes& a = n->attrs;
        std::string mode = a.get_string("mode", "nearest"), coord = a.get_string("coordinate_transformation_mode", "half_pixel");
        std::string nearest = a.get_string("nearest_mode", "round_prefer_floor");
        static const std::vector<std::string> coords = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                                                        "tf_half_pixel_for_nn", "half_pixel_symmetric", "tf_crop_and_resize"};
        static const std::vector<std::string> nearests = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
        auto index_of = [&](const std::vector<std::string>& list, const std::string& v) {
          auto it = std::find(list.begin(), list.end(), v);
          if (it == list.end()) fail(ErrorCode::kInvalidModel, "node '", n->name, "': unknown Resize setting '", v, "'");
          return int64_t(it - list.begin());
        };
        std::vector<int64_t> axes(r);
        std::iota(axes.begin(), axes.end(), 0);
        axes = a.get_ints("axes", axes);
        for (auto& ax : axes) ax = norm_axis(ax, r);
        std::vector<double> scale(r, 1.0), roi_start(r, 0.0), roi_end(r, 1.0);
        auto given = [&](size_t i) { return n->inputs.size() > i && n->inputs[i] != ir::kNoValue; };
        // A tensor of `want` entries (one of them), or a failure naming the node and the input.
        auto entries = [&](size_t i, const char* what, std::initializer_list<size_t> want) {
          size_t count = size_t(ir::checked_numel(s.of(n->inputs[i])));
          if (std::find(want.begin(), want.end(), count) == want.end())
            fail(ErrorCode::kShapeError, "node '", n->name, "' (Resize): ", what, " '", p->network.value(n->inputs[i]).name, "' has ",
                 count, " entries; expected ", *want.begin(), " (one per resized axis", want.size() > 1 ? ", or per dim)" : ")");
          return count;
        };
        bool by_sizes = given(3) && ir::checked_numel(s.of(n->inputs[3])) > 0;
        ir::ValueId scales_on_device = ir::kNoValue, roi_on_device = ir::kNoValue;
        codegen::ResizeParams q{};
        std::fill(std::begin(q.scale_index), std::end(q.scale_index), -1);
        std::fill(std::begin(q.roi_index), std::end(q.roi_index), -1);
        if (!by_sizes) {
          entries(2, "scales", {axes.size()});
          const ir::Value& scales = p->network.value(n->inputs[2]);
          if (scales.weight) {
            std::vector<double> values = ir::read_doubles(*scales.weight);
            for (size_t i = 0; i < axes.size(); ++i) scale[size_t(axes[i])] = values[i];
          } else {
            scales_on_device = n->inputs[2];
            for (size_t i = 0; i < axes.size(); ++i) q.scale_index[axes[i]] = int64_t(i);
          }
        } else {
          for (int64_t ax : axes) scale[size_t(ax)] = double(out[size_t(ax)]) / double(x[size_t(ax)]);
        }
        std::string policy = a.get_string("keep_aspect_ratio_policy", "stretch");
        if (by_sizes && policy != "stretch") {
          auto sizes = ints_of(*p, n->inputs[3], s, "Resize sizes");
          double common = policy == "not_larger" ? 1e300 : 0;
          for (size_t i = 0; i < axes.size(); ++i) {
            double v = double(sizes[i]) / double(x[size_t(axes[i])]);
            common = policy == "not_larger" ? std::min(common, v) : std::max(common, v);
          }
          for (int64_t ax : axes) scale[size_t(ax)] = common;
        }
        if (coord == "tf_crop_and_resize" && given(1) && ir::checked_numel(s.of(n->inputs[1])) > 0) {
          size_t half = entries(1, "roi", {2 * axes.size(), 2 * r}) / 2;
          const ir::Value& roi = p->network.value(n->inputs[1]);
          if (!roi.weight) roi_on_device = n->inputs[1];
          std::vector<double> v = roi.weight ? ir::read_doubles(*roi.weight) : std::vector<double>{};
          for (size_t i = 0; i < half; ++i) {
            size_t d = half == r ? i : size_t(axes[i]);
            if (roi.weight) {
              roi_start[d] = v[i];
              roi_end[d] = v[half + i];
            } else {
              q.roi_index[d] = int64_t(i);
            }
          }
          q.roi_half = int64_t(half);
        }
        using codegen::double_bits;
        q.n = ir::checked_numel(out);
        q.rank = int64_t(r);
        q.mode = mode == "nearest" ? 0 : mode == "linear" ? 1 : 2;
        q.coordinate_mode = index_of(coords, coord);
        q.nearest_mode = index_of(nearests, nearest);
        q.exclude_outside = a.get_int("exclude_outside", 0);
        q.antialias = a.get_int("antialias", 0) != 0;
        q.cubic_a_bits = double_bits(a.get_float("cubic_coeff_a", -0.75));
        q.extrapolation_bits = double_bits(a.get_float("extrapolation_value", 0.0));
        for (size_t d = 0; d < r; ++d) {
          q.in_dims[d] = x[d];
          q.out_dims[d] = out[d];
          q.scale_bits[d] = double_bits(scale[d]);
          q.roi_start_bits[d] = double_bits(roi_start[d]);
          q.roi_end_bits[d] = double_bits(roi_end[d]);
        }
        k.params = codegen::pack(q);
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {roi_on_device, 0}, {scales_on_device, 0}};
      });
    }

    default: break;
  }
  return nullptr;
}

GpuLowering describe_movement(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kReshape: case OpKind::kFlatten: case OpKind::kSqueeze: case OpKind::kUnsqueeze:
      return {K::kKernel, "a view of its input where the memory plan allows, else a copy; any type"};
    case OpKind::kTranspose: case OpKind::kConcat: case OpKind::kSplit: case OpKind::kSlice: case OpKind::kExpand:
    case OpKind::kTile: case OpKind::kDepthToSpace: case OpKind::kSpaceToDepth:
      return {K::kKernel, "strided copy kernel; any type"};
    case OpKind::kPad: return {K::kKernel, "strided copy kernel; any type; a constant_value that is tensor data read by the kernel"};
    case OpKind::kGather: return {K::kKernel, "gather kernel; any type"};
    case OpKind::kGatherElements:
      return {K::kKernel, "gather kernel; any type; indices the size of the data but along the axis"};
    case OpKind::kGatherND:
      return {K::kKernel, "gather kernel; any type, int32 or int64 indices; out-of-range indices are clamped (an error on the CPU)"};
    case OpKind::kScatterND: case OpKind::kScatterElements:
      return {K::kKernel, "copy, then a scatter kernel of one thread per update; any type, int32 or int64 indices; reductions "
                          "apply every duplicate by atomic compare-and-swap (float add and mul in no fixed order); without "
                          "one, which duplicate lands is unspecified; out-of-range indices are skipped (an error on the CPU)"};
    case OpKind::kTrilu: return {K::kKernel, "mask kernel; any type; a k that is tensor data read by the kernel"};
    case OpKind::kNonZero:
      return {K::kKernel, "one block: a count, read back by enqueue (which waits for it), then the indices by a block scan; "
                          "any type; at most the bound `kiln build` plans for"};
    case OpKind::kResize:
      return {K::kKernel, "resize kernel; floating types; roi and scales that are tensor data read by the kernel, scales and "
                          "sizes also read back by enqueue (which waits for them) to size the output"};
    case OpKind::kCompress:
      return {K::kKernel, "one block lists the selected positions and counts them (read back by enqueue, which waits for "
                          "it), then a gather kernel; any type; at most the bound `kiln build` plans for"};
    case OpKind::kUnique:
      return {K::kKernel, "a bitonic sort of the slices (a launch per stage), one block grouping equal neighbours and "
                          "counting them (read back by enqueue, which waits for it), then the outputs; any type, NaN equal "
                          "to NaN; at most the bound `kiln build` plans for"};
    case OpKind::kBitCast:
      return {K::kKernel, "a view of its input where the memory plan allows, else a copy; to bool, a byte other than 0 reads "
                          "as true (the cast kernel)"};
    case OpKind::kReverseSequence:
      return {K::kKernel, "a thread per element; any type; a length outside [0, time] counts as its nearest bound (an error on the CPU)"};
    case OpKind::kTensorScatter:
      return {K::kKernel, "copy, then a scatter kernel of one thread per update element; any type; linear writes past the "
                          "cache are skipped (an error on the CPU)"};
    default: return {};
  }
}

int64_t movement_count_work_bytes(const plan::Plan& plan, const ir::Node& node, const ir::SymbolBindings& largest) {
  constexpr int64_t word = sizeof(int64_t);
  switch (node.op) {
    case OpKind::kNonZero: return 0;
    case OpKind::kCompress: return word * dims_at(plan, node.inputs[1], largest).at(0);  // the selected positions
    case OpKind::kUnique: {
      // The sorted permutation, then per group its start (and one past the last), per slice its group, per group its
      // place, per place its group.
      int64_t len = split_at_axis(node, dims_at(plan, node.inputs[0], largest)).len;
      return word * (next_pow2(len) + 4 * len + 1);
    }
    default: fail(ErrorCode::kInternal, "node '", node.name, "' (", ir::op_name(node.op), ") is not counted on the device");
  }
}

}  // namespace kiln::runtime
