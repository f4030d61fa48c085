// The ml family (ai.onnx.ml) on the GPU: no kernels of its own. `kiln build`
// lowers Binarizer and ArrayFeatureExtractor (of constant indices) into ops
// the GPU runs (builder/passes_ml.cpp). LabelEncoder maps through a host table
// (of strings, often); TreeEnsemble's walk has no kernel yet: a plan holding
// them runs on the CPU device.
#include "kiln/error.h"
#include "ops.h"

namespace kiln::runtime {

using ir::OpKind;

std::unique_ptr<Op> make_ml(const plan::Plan& /*plan*/, const ir::Node& node, KernelStore& /*store*/, std::string& why,
                            int /*arch*/) {
  why = describe_ml(node.op).detail;
  return nullptr;
}

GpuLowering describe_ml(OpKind op) {
  using K = GpuLowering::Kind;
  switch (op) {
    case OpKind::kLabelEncoder:
      return {K::kNone, "no GPU kernel: its keys are looked up in a host table (strings among them); runs on the CPU device"};
    case OpKind::kBinarizer: return {K::kByBuilder, "`kiln build` lowers it to Greater and Cast"};
    case OpKind::kArrayFeatureExtractor:
      return {K::kByBuilder, "`kiln build` lowers it to Gather along the last axis where the indices are a constant inside that "
                             "dim; other indices run on the CPU device"};
    case OpKind::kTreeEnsemble: return {K::kNone, "no GPU kernel yet (the trees are walked on the host); runs on the CPU device"};
    default: return {};
  }
}

}  // namespace kiln::runtime
