// The other GPU ops: softmax family and layer norm, fused attention, reductions, data
// movement, gather, pooling and convolution, views, and shape arithmetic
// computed on the host.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "kiln/error.h"
#include "kiln/ir/fused.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

namespace {

int64_t norm_axis(int64_t axis, size_t rank) { return axis < 0 ? axis + int64_t(rank) : axis; }

// An op that launches one registered kernel with parameters a function computes.
class SimpleOp : public Op {
 public:
  using Fill = std::function<void(const ShapeEnv&, KernelLaunch&)>;
  SimpleOp(const ir::Node& node, const KernelStore& store, int kernel, Fill fill)
      : node_(node), store_(store), kernel_(kernel), fill_(std::move(fill)) {}
  void prepare(PrepareContext& ctx) const override {
    KernelLaunch k{store_.kernel(kernel_), 1, codegen::kBlock, {}, {}, &node_, kernel_};
    fill_(ctx.shapes, k);
    if (k.params.v[0] == 0) return;  // nothing to compute
    k.grid = k.grid > 1 ? k.grid : grid_for(k.params.v[0], ctx.sm_count);
    ctx.steps.push_back(std::move(k));
  }

 private:
  const ir::Node& node_;
  const KernelStore& store_;
  int kernel_;
  Fill fill_;
};

// A strided copy of a whole input view into (part of) an output.
struct RemapPiece {
  ir::ValueId src, dst;
  std::vector<int64_t> dims, src_strides, dst_strides, starts, steps, src_dims, modulus;
  int64_t src_offset = 0, dst_offset = 0;
  codegen::PadMode mode = codegen::PadMode::kNone;
  int64_t fill_bits = 0;
};

void fill_remap(const RemapPiece& r, KernelLaunch& k) {
  k.params.v[0] = ir::checked_numel(r.dims);
  k.params.v[1] = int64_t(r.dims.size());
  k.params.v[2] = r.src_offset;
  k.params.v[3] = r.dst_offset;
  k.params.v[4] = int64_t(r.mode);
  k.params.v[5] = r.fill_bits;
  for (size_t d = 0; d < r.dims.size(); ++d) {
    k.params.v[8 + d] = r.dims[d];
    k.params.v[16 + d] = r.src_strides[d];
    k.params.v[24 + d] = r.dst_strides[d];
    k.params.v[32 + d] = r.starts.empty() ? 0 : r.starts[d];
    k.params.v[40 + d] = r.steps.empty() ? 1 : r.steps[d];
    k.params.v[48 + d] = r.src_dims.empty() ? 0 : r.src_dims[d];
    k.params.v[56 + d] = r.modulus.empty() ? 0 : r.modulus[d];
  }
  k.args = {{r.dst, 0}, {r.src, 0}};
}

class RemapOp : public Op {
 public:
  using Plan = std::function<std::vector<RemapPiece>(const ShapeEnv&)>;
  RemapOp(const ir::Node& node, const KernelStore& store, int kernel, Plan plan)
      : node_(node), store_(store), kernel_(kernel), plan_(std::move(plan)) {}
  void prepare(PrepareContext& ctx) const override {
    for (const RemapPiece& piece : plan_(ctx.shapes)) {
      if (piece.dims.size() > size_t(codegen::kMaxRank))
        fail(ErrorCode::kUnsupported, "node '", node_.name, "': rank ", piece.dims.size(), " is above the GPU limit");
      KernelLaunch k{store_.kernel(kernel_), 1, codegen::kBlock, {}, {}, &node_, kernel_};
      fill_remap(piece, k);
      if (k.params.v[0] == 0) continue;
      k.grid = grid_for(k.params.v[0], ctx.sm_count);
      ctx.steps.push_back(std::move(k));
    }
  }

 private:
  const ir::Node& node_;
  const KernelStore& store_;
  int kernel_;
  Plan plan_;
};

RemapPiece plain_copy(ir::ValueId src, ir::ValueId dst, const std::vector<int64_t>& dims) {
  RemapPiece r;
  r.src = src;
  r.dst = dst;
  r.dims = {ir::checked_numel(dims)};
  r.src_strides = r.dst_strides = {1};
  return r;
}

// Known integer contents (shape arithmetic) evaluated for the current shapes, or nullopt.
std::optional<std::vector<int64_t>> known_now(const ir::Value& v, const ShapeEnv& shapes) {
  if (!v.known) return std::nullopt;
  return ir::evaluate_dims(*v.known, shapes.bindings);
}

std::vector<int64_t> ints_of(const plan::Plan& plan, ir::ValueId v, const ShapeEnv& shapes, const char* what) {
  const ir::Value& val = plan.network.value(v);
  if (val.weight) return ir::read_ints(*val.weight);
  if (auto k = known_now(val, shapes)) return *k;
  fail(ErrorCode::kUnsupported, what, " '", val.name, "' depends on tensor data, which the GPU runtime does not read back");
}

// Writes values known on the host (shape arithmetic) into device memory: the
// values travel as kernel parameters, so no host buffer must outlive a launch.
class HostValueOp : public Op {
 public:
  HostValueOp(const plan::Plan& plan, const ir::Node& node, const KernelStore& store, int kernel)
      : plan_(plan), node_(node), store_(store), kernel_(kernel) {}
  void prepare(PrepareContext& ctx) const override {
    for (ir::ValueId v : node_.outputs) {
      if (v == ir::kNoValue) continue;
      const ir::Value& val = plan_.network.value(v);
      auto values = known_now(val, ctx.shapes);
      if (!values) fail(ErrorCode::kInternal, "node '", node_.name, "': output '", val.name, "' is not known for these shapes");
      size_t elem = dtype_size(val.dtype);
      for (size_t at = 0; at < values->size(); at += codegen::kConstantsPerLaunch) {
        KernelLaunch k{store_.kernel(kernel_), 1, 64, {{v, int64_t(at * elem)}}, {}, &node_};
        k.specializable = false;
        size_t count = std::min<size_t>(codegen::kConstantsPerLaunch, values->size() - at);
        k.params.v[0] = int64_t(count);
        k.params.v[1] = int64_t(elem);
        for (size_t i = 0; i < count; ++i) {
          int64_t x = (*values)[at + i];
          visit_dtype(val.dtype, [&](auto tag) {  // the value's bits in the tensor's dtype
            using T = decltype(tag);
            if constexpr (std::is_integral_v<T>) {
              T t = static_cast<T>(x);
              int64_t bits = 0;
              std::memcpy(&bits, &t, sizeof(T));
              k.params.v[8 + i] = bits;
            } else {
              fail(ErrorCode::kInternal, "node '", node_.name, "': shape values of dtype ", dtype_name(val.dtype));
            }
          });
        }
        ctx.steps.push_back(std::move(k));
      }
    }
  }

 private:
  const plan::Plan& plan_;
  const ir::Node& node_;
  const KernelStore& store_;
  int kernel_;
};

bool all_outputs_known(const plan::Plan& plan, const ir::Node& node) {
  for (ir::ValueId v : node.outputs)
    if (v != ir::kNoValue && !plan.network.value(v).known) return false;
  return !node.outputs.empty();
}

codegen::ReduceOp reduce_kind(OpKind op) {
  switch (op) {
    case OpKind::kReduceMean: case OpKind::kGlobalAveragePool: return codegen::ReduceOp::kMean;
    case OpKind::kReduceMax: case OpKind::kGlobalMaxPool: return codegen::ReduceOp::kMax;
    case OpKind::kReduceMin: return codegen::ReduceOp::kMin;
    case OpKind::kReduceProd: return codegen::ReduceOp::kProd;
    case OpKind::kReduceL1: return codegen::ReduceOp::kL1;
    case OpKind::kReduceL2: return codegen::ReduceOp::kL2;
    case OpKind::kReduceSumSquare: return codegen::ReduceOp::kSumSquare;
    case OpKind::kReduceLogSum: return codegen::ReduceOp::kLogSum;
    case OpKind::kReduceLogSumExp: return codegen::ReduceOp::kLogSumExp;
    default: return codegen::ReduceOp::kSum;
  }
}

// The Attention node's geometry at these shapes, and the parameters both
// attention kernels share ([1..28), see codegen.h) and their arguments.
ir::AttentionGeometry attention_params(const ir::Node& n, const ShapeEnv& s, KernelLaunch& k) {
  ir::AttentionGeometry g = ir::attention_geometry(n, s.of(n.inputs[0]), s.of(n.inputs[1]), s.of(n.inputs[2]));
  if (g.out_dims != s.of(n.outputs[0]))
    fail(ErrorCode::kInternal, "node '", n.name, "' (Attention): its views make ", ir::shape_to_string(ir::shape_of(g.out_dims)),
         ", the network says ", ir::shape_to_string(ir::shape_of(s.of(n.outputs[0]))));
  k.params.v[1] = g.batch;
  k.params.v[2] = g.heads;
  k.params.v[3] = g.q_len;
  k.params.v[4] = g.kv_len;
  k.params.v[5] = g.head_dim;
  double scale = n.attrs.get_float("scale", 1.0);
  std::memcpy(&k.params.v[6], &scale, sizeof(double));
  k.params.v[7] = n.attrs.get_int("causal", 0);
  const std::array<int64_t, 5>* views[] = {&g.q, &g.k, &g.v, &g.out};
  for (size_t i = 0; i < 4; ++i) std::copy(views[i]->begin(), views[i]->end(), &k.params.v[8 + 5 * i]);
  k.args = {{n.outputs[0], 0}, {n.inputs[0], 0}, {n.inputs[1], 0}, {n.inputs[2], 0}};
  return g;
}

// Whether every row of a [B, H, S, D] view starts on a multiple of `elements`
// with the head dim contiguous (strides of dims of size 1 never move the address).
bool rows_aligned(const std::array<int64_t, 5>& view, const ir::AttentionGeometry& g, int64_t len, int64_t elements) {
  auto fits = [&](int64_t stride, int64_t dim) { return dim == 1 || stride % elements == 0; };
  return view[4] == 1 && g.head_dim % elements == 0 && view[0] % elements == 0 && fits(view[1], g.batch) &&
         fits(view[2], g.heads) && fits(view[3], len);
}

// Blocks of the tensor-core attention kernel: four warps (64 query rows) share
// each key tile best; fewer where four leave fewer blocks than a large GPU has
// SMs (132 on an H100/H200). Decided from shapes alone, so warming the cache
// without a GPU specializes the kernels a device will ask for.
constexpr int64_t kAttentionMmaMinBlocks = 132;

void fill_attention_mma(const ir::Node& n, const ShapeEnv& s, KernelLaunch& k) {
  ir::AttentionGeometry g = attention_params(n, s, k);
  if (ir::checked_numel(g.out_dims) == 0) return;  // nothing to compute (params[0] stays 0)
  int64_t warps = 4;
  auto blocks = [&](int64_t w) { return g.batch * g.heads * ((g.q_len + 16 * w - 1) / (16 * w)); };
  while (warps > 1 && blocks(warps) < kAttentionMmaMinBlocks) warps /= 2;
  k.params.v[0] = blocks(warps);
  k.params.v[28] = (rows_aligned(g.q, g, g.q_len, 8) ? 1 : 0) | (rows_aligned(g.k, g, g.kv_len, 8) ? 2 : 0) |
                   (rows_aligned(g.v, g, g.kv_len, 8) ? 4 : 0) | (rows_aligned(g.out, g, g.q_len, 2) ? 8 : 0);
  k.params.v[29] = warps;
  k.block = unsigned(32 * warps);
  k.grid = unsigned(std::clamp<int64_t>(k.params.v[0], 1, 65535));
}

}  // namespace

std::unique_ptr<Op> make_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int arch) {
  const ir::Network& net = plan.network;
  auto value = [&](ir::ValueId v) -> const ir::Value& { return net.value(v); };
  DType dtype = node.outputs.empty() || node.outputs[0] == ir::kNoValue ? DType::kFloat32 : value(node.outputs[0]).dtype;
  const ir::Node* n = &node;
  const plan::Plan* p = &plan;

  if (all_outputs_known(plan, node))
    return std::make_unique<HostValueOp>(plan, node, store, store.add("constants", [](const auto&) { return codegen::constants_source(); }));

  switch (node.op) {
    case OpKind::kFusedMatMul: return make_matmul_op(plan, node, store, why);

    case OpKind::kSoftmax: case OpKind::kLogSoftmax: case OpKind::kLayerNormalization: case OpKind::kHardmax: {
      if (!is_floating(dtype)) break;
      bool ln = node.op == OpKind::kLayerNormalization;
      bool stats = ln && node.outputs.size() > 1 &&
                   std::any_of(node.outputs.begin() + 1, node.outputs.end(), [](ir::ValueId v) { return v != ir::kNoValue; });
      if (stats && (node.outputs.size() < 3 || node.outputs[1] == ir::kNoValue || node.outputs[2] == ir::kNoValue)) {
        why = "LayerNormalization with only one of Mean and InvStdDev";
        return nullptr;
      }
      codegen::RowOp row = ln ? codegen::RowOp::kLayerNorm
                           : node.op == OpKind::kSoftmax ? codegen::RowOp::kSoftmax
                           : node.op == OpKind::kHardmax ? codegen::RowOp::kHardmax : codegen::RowOp::kLogSoftmax;
      codegen::RowSpec spec{row, dtype, ln && node.inputs.size() > 1, ln && node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue,
                            node.attrs.get_float("epsilon", 1e-5), std::nullopt, stats};
      if (ln) {  // scale and bias must cover the whole normalized block (no broadcasting inside it)
        const ir::Shape& x = value(node.inputs[0]).shape;
        int64_t axis = norm_axis(node.attrs.get_int("axis", -1), x.size());
        ir::Dim block = ir::shape_numel(ir::Shape(x.begin() + axis, x.end()));
        for (size_t i = 1; i < node.inputs.size(); ++i)
          if (node.inputs[i] != ir::kNoValue && ir::shape_numel(value(node.inputs[i]).shape) != block) {
            why = "LayerNormalization scale/bias that broadcast within the normalized block";
            return nullptr;
          }
      }
      int kernel = store.add(node.name, specializing_generator(spec, codegen::row_source));
      return std::make_unique<SimpleOp>(node, store, kernel, [n, ln, stats](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        int64_t axis = norm_axis(n->attrs.get_int("axis", -1), x.size());
        int64_t outer = ir::checked_numel({x.begin(), x.begin() + axis});
        int64_t len = ln ? ir::checked_numel({x.begin() + axis, x.end()}) : x[size_t(axis)];
        int64_t inner = ln ? 1 : ir::checked_numel({x.begin() + axis + 1, x.end()});
        k.params.v[0] = len == 0 ? 0 : outer * inner;
        k.params.v[1] = len;
        k.params.v[2] = inner;
        k.grid = unsigned(std::clamp<int64_t>(outer * inner, 1, 65535));
        k.args = {{n->outputs[0], 0}};
        if (stats) k.args.push_back({n->outputs[1], 0}), k.args.push_back({n->outputs[2], 0});
        for (size_t i = 0; i < n->inputs.size(); ++i)
          if (n->inputs[i] != ir::kNoValue) k.args.push_back({n->inputs[i], 0});
      });
    }

    case OpKind::kArgMax: case OpKind::kArgMin: case OpKind::kCumSum: {
      DType in = value(node.inputs[0]).dtype;
      if (in == DType::kBool) break;
      codegen::LineOp lop = node.op == OpKind::kArgMax ? codegen::LineOp::kArgMax
                            : node.op == OpKind::kArgMin ? codegen::LineOp::kArgMin : codegen::LineOp::kCumSum;
      int kernel = store.add(node.name, [lop, in](const auto& params) { return codegen::line_source(lop, in, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n, p](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        bool cumsum = n->op == OpKind::kCumSum;
        int64_t axis = cumsum ? ints_of(*p, n->inputs[1], s, "CumSum axis").at(0) : n->attrs.get_int("axis", 0);
        axis = norm_axis(axis, x.size());
        k.params.v[1] = x[size_t(axis)];
        k.params.v[2] = ir::checked_numel({x.begin() + axis + 1, x.end()});
        k.params.v[0] = k.params.v[1] == 0 ? 0 : ir::checked_numel({x.begin(), x.begin() + axis}) * k.params.v[2];
        k.params.v[3] = cumsum ? n->attrs.get_int("exclusive", 0) : n->attrs.get_int("select_last_index", 0);
        k.params.v[4] = cumsum ? n->attrs.get_int("reverse", 0) : 0;
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
      });
    }

    case OpKind::kTrilu: {
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::trilu_source(dtype, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n, p](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        k.params.v[0] = ir::checked_numel(x);
        k.params.v[1] = x[x.size() - 2];
        k.params.v[2] = x.back();
        k.params.v[3] = n->inputs.size() > 1 && n->inputs[1] != ir::kNoValue ? ints_of(*p, n->inputs[1], s, "Trilu k").at(0) : 0;
        k.params.v[4] = n->attrs.get_int("upper", 1);
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
      });
    }

    case OpKind::kReduceMean: case OpKind::kReduceSum: case OpKind::kReduceMax: case OpKind::kReduceMin:
    case OpKind::kReduceProd: case OpKind::kReduceL1: case OpKind::kReduceL2: case OpKind::kReduceSumSquare:
    case OpKind::kReduceLogSum: case OpKind::kReduceLogSumExp: case OpKind::kGlobalAveragePool: case OpKind::kGlobalMaxPool: {
      if (!is_floating(dtype)) break;
      codegen::ReduceOp rop = reduce_kind(node.op);
      int kernel = store.add(node.name, [rop, dtype](const auto& params) { return codegen::reduce_source({rop, dtype, params}); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n, p](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        std::vector<bool> reduced(x.size(), false);
        if (n->op == OpKind::kGlobalAveragePool || n->op == OpKind::kGlobalMaxPool) {
          for (size_t d = 2; d < x.size(); ++d) reduced[d] = true;
        } else {
          std::vector<int64_t> axes = n->inputs.size() > 1 && n->inputs[1] != ir::kNoValue
                                          ? ints_of(*p, n->inputs[1], s, "reduction axes")
                                          : std::vector<int64_t>{};
          bool noop = n->attrs.get_int("noop_with_empty_axes", 0) != 0;
          if (axes.empty() && !noop) std::fill(reduced.begin(), reduced.end(), true);
          for (int64_t a : axes) reduced[size_t(norm_axis(a, x.size()))] = true;
        }
        auto st = strides_of(x);
        std::vector<int64_t> kept, kept_st, red, red_st;
        for (size_t d = 0; d < x.size(); ++d) {
          (reduced[d] ? red : kept).push_back(x[d]);
          (reduced[d] ? red_st : kept_st).push_back(st[d]);
        }
        if (kept.size() > size_t(codegen::kMaxRank) || red.size() > size_t(codegen::kMaxRank))
          fail(ErrorCode::kUnsupported, "node '", n->name, "': rank above the GPU limit");
        k.params.v[0] = ir::checked_numel(kept);
        k.params.v[1] = ir::checked_numel(red);
        k.params.v[2] = int64_t(kept.size());
        k.params.v[3] = int64_t(red.size());
        for (size_t d = 0; d < kept.size(); ++d) k.params.v[8 + d] = kept[d], k.params.v[16 + d] = kept_st[d];
        for (size_t d = 0; d < red.size(); ++d) k.params.v[24 + d] = red[d], k.params.v[32 + d] = red_st[d];
        if (k.params.v[1] == 0) fail(ErrorCode::kUnsupported, "node '", n->name, "': reduction over an empty set");
        k.grid = unsigned(std::clamp<int64_t>((k.params.v[0] * 32 + codegen::kBlock - 1) / codegen::kBlock, 1, 1 << 20));
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
      });
    }

    case OpKind::kReshape: case OpKind::kFlatten: case OpKind::kSqueeze: case OpKind::kUnsqueeze: {
      // A view when the planner gave the output the input's storage; otherwise a copy.
      ir::ValueId in = node.inputs[0], out = node.outputs[0];
      bool view = plan.arena_offset[size_t(out)] >= 0 && plan.arena_offset[size_t(out)] == plan.arena_offset[size_t(in)] &&
                  !value(in).weight && !value(in).is_input;
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::remap_source({dtype, params}); });
      return std::make_unique<RemapOp>(node, store, kernel, [n, view](const ShapeEnv& s) {
        if (view) return std::vector<RemapPiece>{};
        return std::vector<RemapPiece>{plain_copy(n->inputs[0], n->outputs[0], s.of(n->outputs[0]))};
      });
    }

    case OpKind::kTranspose: {
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::remap_source({dtype, params}); });
      return std::make_unique<RemapOp>(node, store, kernel, [n](const ShapeEnv& s) {
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
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::remap_source({dtype, params}); });
      return std::make_unique<RemapOp>(node, store, kernel, [n](const ShapeEnv& s) {
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
      if (node.op == OpKind::kPad && node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue && !value(node.inputs[2]).weight) {
        why = "a Pad value that is not a constant";
        return nullptr;
      }
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::remap_source({dtype, params}); });
      return std::make_unique<RemapOp>(node, store, kernel, [n, p, dtype](const ShapeEnv& s) {
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
          if (n->inputs.size() > 2 && n->inputs[2] != ir::kNoValue) fill = ir::read_doubles(*p->network.value(n->inputs[2]).weight)[0];
          visit_dtype(dtype, [&](auto tag) {
            using T = decltype(tag);
            if constexpr (std::is_same_v<T, Float16>) r.fill_bits = float_to_half(float(fill));
            else if constexpr (std::is_same_v<T, BFloat16>) r.fill_bits = float_to_bfloat16(float(fill));
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
        k.params.v[0] = ir::checked_numel(s.of(n->outputs[0]));
        k.params.v[1] = outer;
        k.params.v[2] = elements ? idx[size_t(axis)] : ir::checked_numel(idx);
        k.params.v[3] = inner;
        k.params.v[4] = x[size_t(axis)];
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}};
      });
    }

    case OpKind::kMaxPoolChannelsLast:
      if (auto op = make_cudnn_max_pool_op(plan, node)) return op;
      why = "a channels-last MaxPool that cuDNN does not run (rank 4 or 5, floating types, no dilation or ceil_mode, symmetric pads)";
      return nullptr;

    case OpKind::kConvChannelsLast:
      if (auto op = make_cudnn_conv_op(plan, node, why)) return op;
      why = "a channels-last Conv that cuDNN does not run (rank 3 to 5, floating types, symmetric explicit pads)";
      return nullptr;

    case OpKind::kConv: case OpKind::kConvTranspose: case OpKind::kMaxPool: case OpKind::kAveragePool: {
      if (node.op == OpKind::kConv)
        if (auto op = make_cudnn_conv_op(plan, node, why)) return op;
      if (!is_floating(dtype) || value(node.inputs[0]).shape.size() > 5) break;
      if (node.op == OpKind::kMaxPool && node.outputs.size() > 1 && node.outputs[1] != ir::kNoValue) {
        why = "MaxPool's Indices output";
        return nullptr;
      }
      bool conv = node.op == OpKind::kConv || node.op == OpKind::kConvTranspose;
      codegen::WindowOp wop = node.op == OpKind::kConv            ? codegen::WindowOp::kConv
                              : node.op == OpKind::kConvTranspose ? codegen::WindowOp::kConvTranspose
                              : node.op == OpKind::kMaxPool       ? codegen::WindowOp::kMaxPool
                                                                  : codegen::WindowOp::kAvgPool;
      bool bias = conv && node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue;
      int kernel = store.add(node.name, [wop, dtype, bias](const auto& params) { return codegen::window_source({wop, dtype, bias, params}); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        const auto& out = s.of(n->outputs[0]);
        std::vector<int64_t> in_sp(x.begin() + 2, x.end());
        bool conv = n->op == OpKind::kConv || n->op == OpKind::kConvTranspose;
        std::vector<int64_t> kernel_sp = conv ? std::vector<int64_t>(s.of(n->inputs[1]).begin() + 2, s.of(n->inputs[1]).end())
                                              : n->attrs.get_ints("kernel_shape");
        ir::WindowGeometry g = ir::window_geometry(*n, in_sp, kernel_sp);
        size_t sr = in_sp.size();
        k.params.v[0] = ir::checked_numel(out);
        k.params.v[1] = int64_t(sr);
        k.params.v[2] = x[1];
        k.params.v[3] = out[1];
        k.params.v[4] = n->attrs.get_int("group", 1);
        k.params.v[5] = n->attrs.get_int("count_include_pad", 0);
        for (size_t d = 0; d < sr; ++d) {
          k.params.v[8 + d] = in_sp[d];
          k.params.v[11 + d] = g.output[d];
          k.params.v[14 + d] = g.kernel[d];
          k.params.v[17 + d] = g.strides[d];
          k.params.v[20 + d] = g.dilations[d];
          k.params.v[23 + d] = g.pads_begin[d];
          k.params.v[26 + d] = g.pads_end[d];
        }
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
        for (size_t i = 1; i < n->inputs.size(); ++i)
          if (n->inputs[i] != ir::kNoValue) k.args.push_back({n->inputs[i], 0});
      });
    }

    case OpKind::kResize: {
      if (!is_floating(dtype)) break;
      if (node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue && !value(node.inputs[2]).weight) {
        why = "Resize scales that are not constants";
        return nullptr;
      }
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::resize_source(dtype, params); });
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
        bool by_sizes = n->inputs.size() > 3 && n->inputs[3] != ir::kNoValue && ir::checked_numel(s.of(n->inputs[3])) > 0;
        std::vector<double> given;
        if (!by_sizes) given = ir::read_doubles(*p->network.value(n->inputs[2]).weight);
        for (size_t i = 0; i < axes.size(); ++i)
          scale[size_t(axes[i])] = by_sizes ? double(out[size_t(axes[i])]) / double(x[size_t(axes[i])]) : given.at(i);
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
        if (coord == "tf_crop_and_resize" && n->inputs.size() > 1 && n->inputs[1] != ir::kNoValue) {
          const ir::Value& roi = p->network.value(n->inputs[1]);
          if (!roi.weight) fail(ErrorCode::kUnsupported, "node '", n->name, "': a Resize roi that is not a constant");
          std::vector<double> v = ir::read_doubles(*roi.weight);
          size_t half = v.size() / 2;
          for (size_t i = 0; i < half; ++i) {
            size_t d = half == r ? i : size_t(axes[i]);
            roi_start[d] = v[i];
            roi_end[d] = v[half + i];
          }
        }
        auto bits = [](double v) {
          int64_t b;
          std::memcpy(&b, &v, 8);
          return b;
        };
        k.params.v[0] = ir::checked_numel(out);
        k.params.v[1] = int64_t(r);
        k.params.v[2] = mode == "nearest" ? 0 : mode == "linear" ? 1 : 2;
        k.params.v[3] = index_of(coords, coord);
        k.params.v[4] = index_of(nearests, nearest);
        k.params.v[5] = a.get_int("exclude_outside", 0);
        k.params.v[6] = bits(a.get_float("cubic_coeff_a", -0.75));
        k.params.v[7] = bits(a.get_float("extrapolation_value", 0.0));
        for (size_t d = 0; d < r; ++d) {
          k.params.v[8 + d] = x[d];
          k.params.v[16 + d] = out[d];
          k.params.v[24 + d] = bits(scale[d]);
          k.params.v[32 + d] = bits(roi_start[d]);
          k.params.v[40 + d] = bits(roi_end[d]);
        }
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
      });
    }

    case OpKind::kConstantOfShape: {
      const ir::TensorData* v = node.attrs.get_tensor("value");
      int64_t bits = 0;
      if (v) std::memcpy(&bits, v->data.data(), std::min<size_t>(8, v->data.size()));
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::remap_source({dtype, params}); });
      return std::make_unique<RemapOp>(node, store, kernel, [n, bits](const ShapeEnv& s) {
        RemapPiece r;  // every element lies outside a 0-sized source: all fill
        r.src = n->outputs[0];
        r.dst = n->outputs[0];
        r.dims = {ir::checked_numel(s.of(n->outputs[0]))};
        r.src_strides = r.dst_strides = {1};
        r.src_dims = {0};
        r.mode = codegen::PadMode::kConstant;
        r.fill_bits = bits;
        return std::vector<RemapPiece>{r};
      });
    }

    case OpKind::kAttention: {
      if (dtype == DType::kFloat64) break;
      const ir::Shape& q = value(node.inputs[0]).shape;
      ir::Shape head = ir::apply_view_program(node, "q_view", q);
      if (head.empty() || !head.back().is_constant() || head.back().constant() > codegen::kAttentionMaxHeadDim) {
        why = str("Attention with heads that are not a constant of at most ", codegen::kAttentionMaxHeadDim);
        return nullptr;
      }
      int64_t head_dim = head.back().constant();
      // Tensor cores for half types; float, and GPUs before sm_80, take the scalar kernel.
      if ((dtype == DType::kFloat16 || dtype == DType::kBFloat16) && arch >= codegen::kAttentionMmaMinArch) {
        int kernel = store.add(node.name + "_mma", [dtype, head_dim](const auto& params) {
          return codegen::attention_mma_source(dtype, head_dim, params);
        });
        return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) { fill_attention_mma(*n, s, k); });
      }
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::attention_source(dtype, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
        ir::AttentionGeometry g = attention_params(*n, s, k);
        if (ir::checked_numel(g.out_dims) == 0) return;  // nothing to compute (params[0] stays 0)
        int64_t tiles = (g.q_len + codegen::kAttentionRowsPerBlock - 1) / codegen::kAttentionRowsPerBlock;
        k.params.v[0] = g.batch * g.heads * tiles;
        k.block = 128;
        k.grid = unsigned(std::clamp<int64_t>(k.params.v[0], 1, 65535));
      });
    }

    case OpKind::kFusedElementwise: case OpKind::kCast: case OpKind::kCastLike: case OpKind::kIdentity: case OpKind::kDropout:
      return make_elementwise_op(plan, node, store, why);

    default: {
      if (ir::is_elementwise(node.op)) return make_elementwise_op(plan, node, store, why);
      GpuLowering lowering = gpu_lowering(node.op);
      why = lowering.kind == GpuLowering::kByBuilder                    ? str("no GPU kernel of its own; ", lowering.detail)
            : lowering.kind == GpuLowering::kNone && !lowering.detail.empty() ? lowering.detail
                                                                              : "no GPU kernel";
      return nullptr;
    }
  }
  if (why.empty()) why = str("dtype ", dtype_name(dtype));
  return nullptr;
}

}  // namespace kiln::runtime
