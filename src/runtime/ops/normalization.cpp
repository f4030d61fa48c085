// The normalization family on the GPU: softmax, log-softmax, hardmax, layer
// norm and Lp norm on the row kernel, instance and group norm on a row kernel of
// their own (a row per (n, group)), LRN on a kernel of a thread per element.
#include <algorithm>

#include "kiln/error.h"
#include "kiln/ir/shape_inference.h"
#include "kiln/runtime.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

std::unique_ptr<Op> make_normalization(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why,
                                       int /*arch*/) {
  auto value = [&](ir::ValueId v) -> const ir::Value& { return plan.network.value(v); };
  DType dtype = output_dtype(plan, node);
  const ir::Node* n = &node;

  switch (node.op) {
    case OpKind::kSoftmax: case OpKind::kLogSoftmax: case OpKind::kLayerNormalization: case OpKind::kHardmax:
    case OpKind::kLpNormalization: {
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
                           : node.op == OpKind::kHardmax ? codegen::RowOp::kHardmax
                           : node.op == OpKind::kLpNormalization ? codegen::RowOp::kLpNorm : codegen::RowOp::kLogSoftmax;
      codegen::RowSpec spec{row, dtype, ln && node.inputs.size() > 1, ln && node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue,
                            node.attrs.get_float("epsilon", 1e-5), std::nullopt, stats, node.attrs.get_int("p", 2)};
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
      return std::make_unique<SimpleOp>(node, store, kernel, [n, ln, stats, row, dtype](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        int64_t axis = norm_axis(n->attrs.get_int("axis", -1), x.size());
        int64_t outer = ir::checked_numel({x.begin(), x.begin() + axis});
        int64_t len = ln ? ir::checked_numel({x.begin() + axis, x.end()}) : x[size_t(axis)];
        int64_t inner = ln ? 1 : ir::checked_numel({x.begin() + axis + 1, x.end()});
        codegen::RowParams params = codegen::row_params(row, dtype, outer * inner, len, inner);
        k.params = codegen::pack(params);
        k.grid = unsigned(std::clamp<int64_t>(codegen::row_blocks(params), 1, 65535));  // the kernels loop over rows past the grid
        k.args = {{n->outputs[0], 0}};
        if (stats) k.args.push_back({n->outputs[1], 0}), k.args.push_back({n->outputs[2], 0});
        for (size_t i = 0; i < n->inputs.size(); ++i)
          if (n->inputs[i] != ir::kNoValue) k.args.push_back({n->inputs[i], 0});
      });
    }

    case OpKind::kInstanceNormalization: case OpKind::kGroupNormalization: {
      if (!is_floating(dtype)) break;
      for (size_t i = 1; i < 3; ++i)
        if (value(node.inputs[i]).dtype != dtype) {
          why = str("scale or bias of dtype ", dtype_name(value(node.inputs[i]).dtype), " for X of ", dtype_name(dtype));
          return nullptr;
        }
      bool instance = node.op == OpKind::kInstanceNormalization;
      int64_t groups = instance ? 0 : node.attrs.get_int("num_groups", 1);  // 0: one per channel
      codegen::GroupNormSpec spec{dtype, node.attrs.get_float("epsilon", 1e-5), std::nullopt};
      int kernel = store.add(node.name, specializing_generator(spec, codegen::group_norm_source));
      return std::make_unique<SimpleOp>(node, store, kernel, [n, groups](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        int64_t g = groups ? groups : x[1];
        if (g > 0 && x[1] % g != 0)
          fail(ErrorCode::kShapeError, "node '", n->name, "': ", x[1], " channels are not divisible by num_groups ", g);
        int64_t spatial = ir::checked_numel({x.begin() + 2, x.end()}), len = x[1] / std::max<int64_t>(g, 1) * spatial;
        int64_t rows = x[0] * g;
        k.params = codegen::pack(codegen::GroupNormParams{len == 0 ? 0 : rows, len, g, spatial});
        k.grid = unsigned(std::clamp<int64_t>(rows, 1, 65535));
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}, {n->inputs[2], 0}};
      });
    }

    case OpKind::kLRN: {
      if (!is_floating(dtype)) break;
      codegen::LrnSpec spec{dtype, node.attrs.get_float("alpha", 1e-4), node.attrs.get_float("beta", 0.75),
                            node.attrs.get_float("bias", 1.0), node.attrs.get_int("size", 1), std::nullopt};
      int kernel = store.add(node.name, specializing_generator(spec, codegen::lrn_source));
      return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        k.params = codegen::pack(codegen::LrnParams{ir::checked_numel(x), x[1], ir::checked_numel({x.begin() + 2, x.end()})});
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
      });
    }

    default: break;
  }
  return nullptr;
}

GpuLowering describe_normalization(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kBatchNormalization:
      return {K::kByBuilder, "`kiln build` folds it into the Conv before it or lowers it to elementwise ops"};
    case OpKind::kInstanceNormalization:
      return {K::kKernel, "row kernel, a row per (n, channel); floating types; scale and bias of X's type"};
    case OpKind::kGroupNormalization:
      return {K::kKernel, "row kernel, a row per (n, group); floating types; scale and bias of X's type"};
    case OpKind::kLRN: return {K::kKernel, "a thread per element over its window of channels; floating types"};
    case OpKind::kLayerNormalization:
      return {K::kKernel, "row kernel; floating types; scale and bias cover the normalized block; Mean and InvStdDev both or neither"};
    case OpKind::kSoftmax: case OpKind::kLogSoftmax: case OpKind::kHardmax: return {K::kKernel, "row kernel; floating types"};
    case OpKind::kLpNormalization: return {K::kKernel, "row kernel; floating types; p 1 or 2"};
    default: return {};
  }
}

}  // namespace kiln::runtime
