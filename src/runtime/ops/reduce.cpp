// The reduce family on the GPU: reductions over any axes (the global pools
// among them), the line kernel (ArgMax, ArgMin, CumSum, CumProd) and TopK's row kernel.
#include <algorithm>
#include <cstdint>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

namespace {

codegen::ReduceOp reduce_kind(const ir::Node& node) {
  switch (node.op) {
    case OpKind::kGlobalLpPool: {  // the L1 and L2 norms have reductions of their own
      int64_t p = node.attrs.get_int("p", 2);
      return p == 1 ? codegen::ReduceOp::kL1 : p == 2 ? codegen::ReduceOp::kL2 : codegen::ReduceOp::kLp;
    }
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

}  // namespace

std::unique_ptr<Op> make_reduction_op(const plan::Plan& plan, const ir::Node& node, KernelStore& store) {
  DType dtype = output_dtype(plan, node);
  if (dtype == DType::kUInt64) return nullptr;  // integers reduce as long long: values past 2^63 would not
  const ir::Node* n = &node;
  const plan::Plan* p = &plan;
  codegen::ReduceOp rop = reduce_kind(node);
  int64_t power = node.attrs.get_int("p", 2);
  int kernel = store.add(node.name, [rop, dtype, power](const auto& params) { return codegen::reduce_source({rop, dtype, params, power}); });
  return std::make_unique<SimpleOp>(node, store, kernel, [n, p](const ShapeEnv& s, KernelLaunch& k) {
    const auto& x = s.of(n->inputs[0]);
    std::vector<bool> reduced(x.size(), false);
    if (n->op == OpKind::kGlobalAveragePool || n->op == OpKind::kGlobalMaxPool || n->op == OpKind::kGlobalLpPool) {
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
    codegen::ReduceParams q{};
    q.outputs = ir::checked_numel(kept);
    q.reduced = ir::checked_numel(red);
    q.kept_rank = int64_t(kept.size());
    q.reduced_rank = int64_t(red.size());
    for (size_t d = 0; d < kept.size(); ++d) q.kept_dims[d] = kept[d], q.kept_strides[d] = kept_st[d];
    for (size_t d = 0; d < red.size(); ++d) q.reduced_dims[d] = red[d], q.reduced_strides[d] = red_st[d];
    k.params = codegen::pack(q);
    k.grid = unsigned(std::clamp<int64_t>((q.outputs * 32 + codegen::kBlock - 1) / codegen::kBlock, 1, 1 << 20));
    k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
  });
}

std::unique_ptr<Op> make_reduce(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int /*arch*/) {
  auto value = [&](ir::ValueId v) -> const ir::Value& { return plan.network.value(v); };
  const ir::Node* n = &node;
  const plan::Plan* p = &plan;
  switch (node.op) {
    case OpKind::kReduceMean: case OpKind::kReduceSum: case OpKind::kReduceMax: case OpKind::kReduceMin:
    case OpKind::kReduceProd: case OpKind::kReduceL1: case OpKind::kReduceL2: case OpKind::kReduceSumSquare:
    case OpKind::kReduceLogSum: case OpKind::kReduceLogSumExp:
      return make_reduction_op(plan, node, store);

    case OpKind::kArgMax: case OpKind::kArgMin: case OpKind::kCumSum: case OpKind::kCumProd: {
      DType in = value(node.inputs[0]).dtype;
      if (in == DType::kBool) break;
      codegen::LineOp lop = node.op == OpKind::kArgMax   ? codegen::LineOp::kArgMax
                            : node.op == OpKind::kArgMin ? codegen::LineOp::kArgMin
                            : node.op == OpKind::kCumSum ? codegen::LineOp::kCumSum
                                                         : codegen::LineOp::kCumProd;
      bool scan = node.op == OpKind::kCumSum || node.op == OpKind::kCumProd;
      DType axis_dtype = scan ? value(node.inputs[1]).dtype : DType::kInt64;
      int kernel = store.add(node.name, [lop, in, axis_dtype](const auto& params) {
        return codegen::line_source(lop, in, params, axis_dtype);
      });
      return std::make_unique<SimpleOp>(node, store, kernel, [n, p, scan](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        codegen::LineParams q{};
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
        // A scan's axis that is tensor data: the kernel reads it and finds the view from the dims.
        std::optional<std::vector<int64_t>> given = scan ? host_ints(*p, n->inputs[1], s) : std::vector<int64_t>{n->attrs.get_int("axis", 0)};
        if (scan) k.args.push_back({given ? ir::kNoValue : n->inputs[1], 0});
        if (given) {
          int64_t axis = norm_axis(given->at(0), x.size());
          q.len = x[size_t(axis)];
          q.inner = ir::checked_numel({x.begin() + axis + 1, x.end()});
          q.lines = q.len == 0 ? 0 : ir::checked_numel({x.begin(), x.begin() + axis}) * q.inner;
        } else {
          if (x.size() > size_t(codegen::kMaxRank)) fail(ErrorCode::kUnsupported, "node '", n->name, "': rank above the GPU limit");
          q.lines = ir::checked_numel(x);
          q.rank = int64_t(x.size());
          std::copy(x.begin(), x.end(), q.dims);
        }
        if (scan) {
          q.exclusive = n->attrs.get_int("exclusive", 0);
          q.reverse = n->attrs.get_int("reverse", 0);
        } else {
          q.select_last_index = n->attrs.get_int("select_last_index", 0);
        }
        k.params = codegen::pack(q);
      });
    }

    case OpKind::kTopK: {
      DType in = value(node.inputs[0]).dtype;
      if (in == DType::kBool) break;
      // K sets the outputs' size: known before the launch, or read back by enqueue.
      int kernel = store.add(node.name, [in](const auto& params) { return codegen::topk_source(in, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n, p](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        int64_t axis = norm_axis(n->attrs.get_int("axis", -1), x.size());
        int64_t count = ints_of(*p, n->inputs[1], s, "TopK's K").at(0), len = x[size_t(axis)];
        if (count < 0 || count > len)
          fail(ErrorCode::kShapeError, "node '", n->name, "': K=", count, " is outside [0, ", len, "], the size of axis ", axis, " of '",
               p->network.value(n->inputs[0]).name, "'");
        if (len > int64_t(UINT32_MAX)) fail(ErrorCode::kUnsupported, "node '", n->name, "': TopK over rows of ", len, " elements");
        codegen::TopkParams q{};
        q.len = len;
        q.inner = ir::checked_numel({x.begin() + axis + 1, x.end()});
        q.rows = count == 0 ? 0 : ir::checked_numel({x.begin(), x.begin() + axis}) * q.inner;
        q.k = count;
        q.largest = n->attrs.get_int("largest", 1) != 0;
        k.params = codegen::pack(q);
        k.grid = unsigned(std::clamp<int64_t>(q.rows, 1, 1 << 20));  // a block per row
        k.args = {{n->outputs[0], 0}, {n->outputs[1], 0}, {n->inputs[0], 0}};
      });
    }

    default: break;
  }
  return nullptr;
}

GpuLowering describe_reduce(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kReduceMean: case OpKind::kReduceSum: case OpKind::kReduceMax: case OpKind::kReduceMin:
    case OpKind::kReduceProd: case OpKind::kReduceL1: case OpKind::kReduceL2: case OpKind::kReduceLogSum:
    case OpKind::kReduceLogSumExp: case OpKind::kReduceSumSquare:
      return {K::kKernel, "reduction kernel, a warp per output; any type but uint64, integers exact in 64 bits, bools as any (max) and all "
                          "(min); over an empty set the identity ONNX defines (0, 1, the type's lowest or highest, -inf)"};
    case OpKind::kArgMax: case OpKind::kArgMin:
      return {K::kKernel, "line kernel; any type but bool"};
    case OpKind::kCumSum: case OpKind::kCumProd:
      return {K::kKernel, "line kernel; any type but bool; an axis that is tensor data read by the kernel, one outside "
                          "[-rank, rank - 1] taken as its nearest bound (an error on the CPU)"};
    case OpKind::kTopK:
      return {K::kKernel, "row kernel (radix select, then a bitonic sort of the k best); any type but bool; a K that is data is read back by enqueue"};
    default: return {};
  }
}

}  // namespace kiln::runtime
