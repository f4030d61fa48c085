// The ml family (ai.onnx.ml) on the GPU: TreeEnsemble, LabelEncoder of
// numbers and ArrayFeatureExtractor, each a generated kernel with the node's
// trees or key table compiled in (codegen/ml.cpp). `kiln build` lowers
// Binarizer, and ArrayFeatureExtractor of constant indices, into ops the GPU
// runs (builder/passes_ml.cpp).
#include "kiln/error.h"
#include "kiln/ir/ml.h"
#include "kiln/ir/shape_inference.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

std::unique_ptr<Op> make_ml(const plan::Plan& plan, const ir::Node& node, KernelStore& store, std::string& why, int /*arch*/) {
  const ir::Node* n = &node;
  switch (node.op) {
    case OpKind::kTreeEnsemble: {
      codegen::TreeEnsembleSpec spec{output_dtype(plan, node), ir::tree_ensemble_attrs(node), std::nullopt};
      if (!is_floating(spec.dtype)) return nullptr;
      int64_t targets = spec.trees.n_targets, max_feature = spec.trees.max_feature;
      bool softmax = spec.trees.post_transform == ir::TreePostTransform::kSoftmax ||
                     spec.trees.post_transform == ir::TreePostTransform::kSoftmaxZero;
      if (softmax && targets > codegen::kTreeTargetsPerThread) {
        why = str("SOFTMAX over ", targets, " targets; the GPU kernel holds at most ", codegen::kTreeTargetsPerThread,
                  " a row (runs on the CPU device)");
        return nullptr;
      }
      int64_t groups = (targets + codegen::kTreeTargetsPerThread - 1) / codegen::kTreeTargetsPerThread;
      int kernel = store.add(node.name, specializing_generator(std::move(spec), codegen::tree_ensemble_source));
      return std::make_unique<SimpleOp>(node, store, kernel, [n, groups, max_feature](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        if (max_feature >= x[1])
          fail(ErrorCode::kShapeError, "node '", n->name, "' (TreeEnsemble): a tree node reads feature ", max_feature, " but input 0 ",
               ir::shape_to_string(ir::shape_of(x)), " has ", x[1]);
        k.params = codegen::pack(codegen::TreeEnsembleParams{ir::checked_numel({x[0], groups}), x[1]});
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
      });
    }

    case OpKind::kLabelEncoder: {
      codegen::LabelEncoderSpec spec{ir::label_encoder_table(node), std::nullopt};
      if (is_string(spec.table.keys.dtype) || is_string(spec.table.values.dtype)) return nullptr;  // make_op names the string tensor
      int kernel = store.add(node.name, specializing_generator(std::move(spec), codegen::label_encoder_source));
      return std::make_unique<SimpleOp>(node, store, kernel, [n](const ShapeEnv& s, KernelLaunch& k) {
        k.params = codegen::pack(codegen::LabelEncoderParams{ir::checked_numel(s.of(n->outputs[0]))});
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}};
      });
    }

    case OpKind::kArrayFeatureExtractor: {
      // X [..., F] and indices Y: out [..., numel(Y)] ([1, numel(Y)] for a vector X) is an [outer, numel(Y)] gather.
      DType dtype = output_dtype(plan, node);
      const plan::Plan* p = &plan;
      int kernel = store.add(node.name, [dtype](const auto& params) { return codegen::array_feature_extractor_source(dtype, params); });
      return std::make_unique<SimpleOp>(node, store, kernel, [n, p](const ShapeEnv& s, KernelLaunch& k) {
        const auto& x = s.of(n->inputs[0]);
        int64_t features = x.back(), count = ir::checked_numel(s.of(n->inputs[1]));
        if (auto picked = host_ints(*p, n->inputs[1], s))  // indices the host has: an index out of range is an error, as on the CPU
          for (size_t i = 0; i < picked->size(); ++i)
            if ((*picked)[i] < 0 || (*picked)[i] >= features)
              fail(ErrorCode::kInvalidArgument, "node '", n->name, "' (ArrayFeatureExtractor): index ", (*picked)[i], " (element ", i,
                   " of input 1) is outside [0, ", features, ") of input 0's last dim");
        int64_t outer = ir::checked_numel({x.begin(), x.end() - 1});
        k.params = codegen::pack(codegen::GatherParams{ir::checked_numel({outer, count}), outer, count, 1, features});
        k.args = {{n->outputs[0], 0}, {n->inputs[0], 0}, {n->inputs[1], 0}};
      });
    }

    default: break;
  }
  why = describe_ml(node.op).detail;
  return nullptr;
}

GpuLowering describe_ml(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kLabelEncoder:
      return {K::kKernel, "a thread per element: a binary search of the sorted keys compiled into the kernel (a NaN key matches "
                          "NaN), the value's bits copied; number keys and values (string ones run on the host inside the GPU engine)"};
    case OpKind::kBinarizer: return {K::kByBuilder, "`kiln build` lowers it to Greater and Cast"};
    case OpKind::kArrayFeatureExtractor:
      return {K::kKernel, "a gather along the last axis, a thread per output element; any type; an index outside that dim is an "
                          "error where the host knows the indices, else writes zeros (an error on the CPU); `kiln build` lowers "
                          "constant indices to Gather"};
    case OpKind::kTreeEnsemble:
      return {K::kKernel, str("a thread per row (and group of ", codegen::kTreeTargetsPerThread, " targets) walks the trees compiled "
                              "into the kernel, in double as the reference; floating types; SOFTMAX over more than ",
                              codegen::kTreeTargetsPerThread, " targets runs on the CPU device")};
    default: return {};
  }
}

}  // namespace kiln::runtime
