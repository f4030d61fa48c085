// The ml family (ai.onnx.ml) on the GPU: no kernels yet. LabelEncoder maps
// through a host hash table (of strings, often); Binarizer,
// ArrayFeatureExtractor and TreeEnsemble are numeric and could have kernels,
// which are not written: a plan holding them runs on the CPU device.
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
    case OpKind::kBinarizer:
    case OpKind::kArrayFeatureExtractor:
    case OpKind::kTreeEnsemble:
      return {K::kNone, "no GPU kernel yet (an ai.onnx.ml op); runs on the CPU device"};
    default: return {};
  }
}

}  // namespace kiln::runtime
